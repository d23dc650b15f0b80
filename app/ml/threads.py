"""Intra-op thread counts per calling thread.

torch's CPU ops run on an OpenMP team owned by the calling thread, sized by `torch.set_num_threads`,
which acts on the calling thread (and on threads that first touch torch afterwards). A server with a
micro-batcher gives the encoder thread all cores and runs per-request math (inner loop, head) on one
thread each: small ops gain nothing from a team, and dozens of request threads each waking a team
oversubscribe a small machine and slow the shared encoder pass down.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


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


def pin_intra_op_threads(n: int) -> None:
    """Give the calling thread `n` intra-op threads for good, e.g. an event loop that runs only small head maths
    (`intra_op_threads(n)` there is then free, where a resize per request would not be)."""
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
