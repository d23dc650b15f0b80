"""The process's intra-op thread policy, in one place: one OpenMP team, the encoder's.

torch's CPU ops run on an OpenMP team owned by the calling thread, sized by `torch.set_num_threads`,
which acts on the calling thread (and on threads that first touch torch afterwards). A server with a
micro-batcher gives the encoder thread all cores and runs per-request math (inner loop, head) on one
thread each: small ops gain nothing from a team, and dozens of request threads each waking a team
oversubscribe a small machine and slow the shared encoder pass down.

Three roles, one helper each: the process (`ThreadPolicy.before_loading`, `ThreadPolicy.after_encoders`), a
long-lived encoder thread (`own_intra_op_threads(policy.encoder)`) and request math (`intra_op_threads(policy.math)`,
which services reach through `TierContext.math()`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice (cores, or OMP_NUM_THREADS), read before any pinning


@contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` intra-op threads on this thread (None: leave as is); restored afterwards."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def own_intra_op_threads(n: int | None) -> None:
    """Give the calling thread `n` intra-op threads of its own (None: leave it). torch sizes a thread's team lazily,
    on its first use, from the latest `set_num_threads` of any thread: size it first, so that another thread's later
    setting cannot override this one's. For long-lived threads that run encoder passes."""
    if n is not None:
        torch.get_num_threads()
        torch.set_num_threads(n)


def one_thread_by_default() -> None:
    """Run this thread's ops, and those of every thread that first uses torch from now on, on one thread.

    libgomp spins at its barriers only while the process has no more OpenMP threads than cores; beyond that it
    sleeps after ~100 spins, and every op of an encoder pass pays a futex wake-up. On 2 cores a one-text pass
    took 8-11 ms instead of 4.4-5 (eight texts: 25-27 instead of 17-18; `bench.encoder_threads`) when the thread
    that loaded the model had kept an OpenMP worker of its own. A server calls this before loading its encoders
    and again once its micro-batchers have sized their own teams, so that theirs are the only workers. It always
    calls `torch.set_num_threads`: besides this thread's count, that sets the count new threads start with.
    """
    torch.set_num_threads(1)


@dataclass(frozen=True)
class ThreadPolicy:
    """How many intra-op threads each role gets: encoder passes all of `encoder`; with `batching` the passes run on
    dedicated threads (batchers or a pass runner) and every other thread, request math included, on one."""

    encoder: int  # intra-op threads of an encoder pass
    batching: bool  # encoder passes run on their own threads, not on request threads

    @classmethod
    def of(cls, torch_threads: int, batching: bool) -> ThreadPolicy:
        """`torch_threads` for the encoder passes (0: torch's default, every core)."""
        return cls(torch_threads or DEFAULT_THREADS, batching)

    @property
    def math(self) -> int | None:
        """Intra-op threads of per-request math: one beside a batcher, else the request thread's own (it encodes)."""
        return 1 if self.batching else None

    def before_loading(self) -> None:
        """At process start, before loading encoders: with batching, no OpenMP workers outside the encoder threads;
        without, request threads run the encoder themselves, on `encoder` threads."""
        if self.batching:
            one_thread_by_default()
        else:
            torch.set_num_threads(self.encoder)

    def after_encoders(self) -> None:
        """Once each encoder thread has sized its own team: the calling thread and every new one get one."""
        if self.batching:
            one_thread_by_default()
