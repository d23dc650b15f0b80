"""Noisy neighbour: a hostile tenant A next to a well-behaved tenant B, over real HTTP.

Intent: show how long B's one-text /predict and /healthz wait while A sends the expensive or abusive requests the
API allows (huge /suggest pools, big /adapt bodies, zero-width texts, 16,000 declared labels, abandoned requests,
report-cache thrashing), and whether the server keeps working for a client that has gone.

One throwaway redis-server and one `python -m app.cli serve` process (auth on, one scoped key per tenant). `--repo`
serves another checkout (cwd and PYTHONPATH = that folder, e.g. a `git worktree` of an earlier commit) with this
repository's client: that is how "before" numbers are taken. Two probes run on their own connections: B's
one-text /predict with a 50 ms pause between requests, /healthz every 20 ms. First `--idle-s` of probes alone,
then each attack with the probes on during it and `--settle-s` after (`evaluate_disconnect` runs without probes:
it measures the server's CPU time). Between attacks the script waits (at most 120 s) until B's /predict is back
under 3x its idle p95. Every attack is capped at `--max-attack-s`. Writes JSON (`--out`) and prints a table;
`--compare BEFORE.json AFTER.json` prints the markdown table for docs/performance.md.

    .venv/bin/python -m bench.noisy_neighbour --out bench/results/noisy_neighbour.json
    .venv/bin/python -m bench.noisy_neighbour --repo ../before --out bench/results/noisy_neighbour_before.json
    .venv/bin/python -m bench.noisy_neighbour --attacks suggest_600_short labels_16k evaluate_cached_cycle
    .venv/bin/python -m bench.noisy_neighbour --compare bench/results/noisy_neighbour_before.json \\
        bench/results/noisy_neighbour.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.common.results import markdown_table, print_table, write_json
from bench.common.stats import percentile
from harness.ports import free_port
from harness.redis_proc import throwaway_redis
from harness.server_proc import ServerProcess, served

REPO = Path(__file__).resolve().parent.parent
B_QUERY = {"tenant_id": "B", "texts": ["where is my card?"]}
B_PAUSE_S = 0.05  # pause after each of B's requests
HEALTHZ_PERIOD_S = 0.02  # one /healthz every 20 ms
PROBE_TIMEOUT = httpx.Timeout(300.0, connect=30.0)  # the "before" server can take 90 s to answer
RECOVERY_FACTOR = 3.0  # B is back when its /predict is under this times its idle p95 ...
RECOVERY_STREAK = 3  # ... this many times in a row
RECOVERY_MAX_S = 120.0
IDLE_CPU_RATE = 0.05  # the server is idle when it uses under 5 % of a core ...
IDLE_WINDOW_S = 0.5  # ... over this long
A_LABELS = 50
WORDS = ["card", "rate", "refund", "fee", "euro", "pin", "atm", "app", "login", "cash"]
# `python -c` launcher: serve from the checkout in argv[1] (cwd and first on sys.path), the rest is `fewshot`'s argv
LAUNCH = (
    "import os, runpy, sys; repo = sys.argv[1]; os.chdir(repo); sys.path.insert(0, repo); "
    "sys.argv = ['fewshot', *sys.argv[2:]]; runpy.run_module('app.cli', run_name='__main__', alter_sys=True)"
)


# --- synthetic data (deterministic, no dataset files) --------------------------------------------------------------

B_INTENTS = {
    "card_arrival": ["when will my {adj} card arrive", "my {adj} card has not come yet", "is my {adj} card on its way"],
    "exchange_rate": ["what rate do you use for {cur}", "how much is one {cur} today", "exchange rate for {cur}"],
    "top_up_failed": ["my top up of {amt} failed", "top up {amt} did not go through", "{amt} top up declined"],
    "refund_missing": ["refund of {amt} still missing", "where is my {amt} refund", "shop refunded {amt}, not here"],
    "pin_blocked": ["my pin is blocked after {n} tries", "pin locked, wrong {n} times", "unblock my pin please"],
}
FILLERS = {
    "adj": ["new", "replacement", "virtual", "metal", "contactless"],
    "cur": ["euros", "dollars", "yen", "pounds", "francs"],
    "amt": ["20 euros", "50 pounds", "100 dollars", "5 euros", "the"],
    "n": ["three", "two", "five", "several", "many"],
}


def b_support(seed: int, per_label: int = 5) -> list[dict[str, str]]:
    """B's support set: 5 banking-like intents x `per_label` templated examples."""
    rng = random.Random(seed)
    examples = []
    for label, templates in B_INTENTS.items():
        for i in range(per_label):
            fill = {key: rng.choice(values) for key, values in FILLERS.items()}
            examples.append({"text": templates[i % len(templates)].format(**fill), "label": label})
    return examples


def a_support(n_examples: int, run: int, seed: int = 1) -> list[dict[str, str]]:
    """A's support set: `n_examples` over 50 labels, each label a fixed pair of keywords plus noise; `run` is in
    every text so each call gives texts no encoder cache has seen."""
    rng = random.Random(seed * 1_000_003 + run)
    examples = []
    for i in range(n_examples):
        label = i % A_LABELS
        first, second = WORDS[label % len(WORDS)], WORDS[(label // len(WORDS) + 3 * label) % len(WORDS)]
        noise = " ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(3))
        text = f"{first} {second} {label} {noise} r{run}-{i}"
        examples.append({"text": text, "label": f"topic-{label:02d}"})
    return examples


def pool_texts(n: int, chars: int, seed: int) -> list[str]:
    """Unlabeled /suggest pool: `n` texts of about `chars` characters of numbered banking words."""
    rng = random.Random(seed)
    words = chars // 4 + 2
    return [" ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(words))[:chars] for _ in range(n)]


# --- the server and its tenants ------------------------------------------------------------------------------------


@contextmanager
def server_under_test(repo: Path) -> Iterator[tuple[ServerProcess, str]]:
    """A throwaway Redis and one `fewshot serve` process from `repo` with auth on; yields (server, admin key)."""
    admin_key = "fsk_" + secrets.token_urlsafe(24)
    with throwaway_redis() as redis_url:
        port = free_port()
        env = os.environ | {
            "FEWSHOT_STORE": "redis",
            "FEWSHOT_REDIS_URL": redis_url,
            "FEWSHOT_AUTH_ENABLED": "true",
            "FEWSHOT_ADMIN_KEY": admin_key,
            "FEWSHOT_LOG_LEVEL": "warning",
            "PYTHONPATH": str(repo),
        }
        command = [sys.executable, "-c", LAUNCH, str(repo), "serve", "--port", str(port)]
        with served(command, port, env) as server:
            yield server, admin_key


def create_key(url: str, admin_key: str, tenant: str) -> str:
    """A new API key scoped to `tenant`."""
    reply = httpx.post(
        f"{url}/admin/keys",
        json={"name": f"noisy-neighbour {tenant}", "tenants": [tenant]},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    reply.raise_for_status()
    return str(reply.json()["key"])


def git(repo: Path, *command: str) -> str | None:
    """The output of `git -C repo command...`, or None when git fails (e.g. not a checkout)."""
    done = subprocess.run(["git", "-C", str(repo), *command], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(repo: Path) -> dict[str, Any]:
    """HEAD of `repo` and whether its tracked files differ from it (the server serves the files, not the commit)."""
    changes = git(repo, "status", "--porcelain", "--untracked-files=no")
    return {"commit": git(repo, "rev-parse", "HEAD"), "dirty": None if changes is None else bool(changes)}


@dataclass
class Call:
    """One request of the attacker: `status` 0 = no answer (transport error or time-out), None = abandoned by us."""

    status: int | None
    error_code: str | None
    seconds: float
    timed_out: bool = False


@dataclass
class Bench:
    """What the attacks need: the server, a key per tenant, the options and a counter for fresh texts."""

    server: ServerProcess
    keys: dict[str, str]
    args: argparse.Namespace
    runs: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        return self.server.url

    def headers(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}", "Content-Type": "application/json"}

    def post(self, tenant: str, path: str, body: Any, deadline: float) -> tuple[Call, dict[str, Any] | None]:
        """POST `body` (JSON-able, or pre-serialised bytes) as `tenant`, on a connection of its own, giving up at
        `deadline` (time.monotonic()). Returns the call and the JSON reply (None when there is none)."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        remaining = max(1.0, deadline - time.monotonic())
        timeout = httpx.Timeout(remaining, connect=min(30.0, remaining))
        started = time.perf_counter()
        try:
            with httpx.Client(timeout=timeout) as client:
                reply = client.post(f"{self.url}{path}", content=content, headers=self.headers(tenant))
        except httpx.TimeoutException:
            return Call(0, None, time.perf_counter() - started, timed_out=True), None
        except httpx.HTTPError:
            return Call(0, None, time.perf_counter() - started), None
        seconds = time.perf_counter() - started
        try:
            data = reply.json()
        except ValueError:
            data = None
        return Call(reply.status_code, error_code(data), seconds), data

    def adapt_a(self, deadline: float, n_examples: int | None = None) -> tuple[Call, int | None]:
        """Re-adapt A from fresh texts (`n_examples`, default `--a-examples`, over 50 labels): the call and the new
        version."""
        examples = a_support(n_examples or self.args.a_examples, next(self.runs))
        call, data = self.post("A", "/adapt", {"tenant_id": "A", "mode": "replace", "examples": examples}, deadline)
        return call, (data or {}).get("version")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process so far (all its threads)."""
        times = psutil.Process(self.server.pid).cpu_times()
        return float(times.user + times.system)

    def wait_idle(self, deadline: float) -> float:
        """Wait until the server uses under 5 % of a core over 0.5 s (or `deadline`); its CPU seconds then."""
        before = self.cpu_s()
        while True:
            time.sleep(IDLE_WINDOW_S)
            now = self.cpu_s()
            if now - before < IDLE_CPU_RATE * IDLE_WINDOW_S or time.monotonic() > deadline:
                return now
            before = now


def error_code(data: Any) -> str | None:
    """`error.code` of the JSON error envelope, if `data` is one."""
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        code = data["error"].get("code")
        return str(code) if code is not None else None
    return None


def abandon(bench: Bench, tenant: str, path: str, body: bytes, after_s: float) -> Call:
    """Send a whole POST on a raw socket, then close the connection `after_s` later unless an answer came first
    (its status is recorded then). The close is a real FIN: the server sees the client go."""
    host, port = bench.url.removeprefix("http://").split(":")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {bench.keys[tenant]}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    started = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        answer = read_until(sock, started + after_s)
        seconds = time.perf_counter() - started
        with suppress(OSError):  # the server may have closed first
            sock.shutdown(socket.SHUT_RDWR)
    if not answer.startswith(b"HTTP/1.1 "):
        return Call(None, None, seconds)
    _, _, payload = answer.partition(b"\r\n\r\n")
    try:
        code = error_code(json.loads(payload))
    except ValueError:  # cut short by the close
        code = None
    return Call(int(answer.split(b" ", 2)[1]), code, seconds)


def read_until(sock: socket.socket, until: float) -> bytes:
    """What the server sends before it closes the connection or time.perf_counter() reaches `until`."""
    chunks = []
    while (left := until - time.perf_counter()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


# --- probes --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    sent: float  # time.perf_counter() when the request went out
    ms: float
    status: int  # 0 = transport error


class Probes:
    """B's one-text /predict (50 ms pause after each) and /healthz (every 20 ms), each on its own thread and
    connection, recording every request until `stop()` (which waits for the requests in flight)."""

    def __init__(self, bench: Bench) -> None:
        self.b: list[Sample] = []
        self.healthz: list[Sample] = []
        self._stop = threading.Event()
        body = json.dumps(B_QUERY).encode()
        headers = bench.headers("B")
        self._threads = [
            threading.Thread(
                target=self._loop,
                args=(bench.url, lambda c: c.post("/predict", content=body, headers=headers), self.b, B_PAUSE_S, False),
                daemon=True,
            ),
            threading.Thread(
                target=self._loop,
                args=(bench.url, lambda c: c.get("/healthz"), self.healthz, HEALTHZ_PERIOD_S, True),
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()

    def _loop(
        self,
        url: str,
        send: Callable[[httpx.Client], httpx.Response],
        out: list[Sample],
        gap_s: float,
        fixed_rate: bool,
    ) -> None:
        with httpx.Client(base_url=url, timeout=PROBE_TIMEOUT) as client:
            while not self._stop.is_set():
                sent = time.perf_counter()
                try:
                    status = send(client).status_code
                except httpx.HTTPError:
                    status = 0
                elapsed = time.perf_counter() - sent
                out.append(Sample(sent, elapsed * 1000, status))
                self._stop.wait(max(0.0, gap_s - elapsed) if fixed_rate else gap_s)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


@contextmanager
def probing(bench: Bench, on: bool = True) -> Iterator[Probes | None]:
    """Probes for the block (none when `on` is false)."""
    if not on:
        yield None
        return
    probes = Probes(bench)
    try:
        yield probes
    finally:
        probes.stop()


def latency(samples: Sequence[Sample], since: float | None = None) -> dict[str, Any]:
    """p50/p95/max (ms), count and non-200 answers of the samples (sent at or after `since`, if given)."""
    chosen = [s for s in samples if since is None or s.sent >= since]
    ms = [s.ms for s in chosen]
    return {
        "p50_ms": round(percentile(ms, 0.50), 2) if ms else None,
        "p95_ms": round(percentile(ms, 0.95), 2) if ms else None,
        "max_ms": round(max(ms), 2) if ms else None,
        "count": len(ms),
        "errors": sum(1 for s in chosen if s.status != 200),
    }


# --- attacks -------------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What an attack did: its requests and any numbers of its own."""

    calls: list[Call]
    extra: dict[str, Any] = field(default_factory=dict)
    window: float | None = None  # perf_counter instant from which the headline probe numbers count (None: all)


def concurrently(n: int, job: Callable[[int], Call]) -> list[Call]:
    """`job(0..n-1)` on n threads at once."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(job, range(n)))


def suggest(n: int, chars: int, seed: int) -> Callable[[Bench, float], Outcome]:
    """A's /suggest over a pool of `n` texts of `chars` characters, k=10."""

    def attack(bench: Bench, deadline: float) -> Outcome:
        body = {"texts": pool_texts(n, chars, seed), "k": 10}
        call, _ = bench.post("A", "/tenants/A/suggest", body, deadline)
        return Outcome([call])

    return attack


def adapt_fresh(bench: Bench, deadline: float) -> Outcome:
    """A 1,500-example /adapt (replace, 50 labels) of texts no cache has seen."""
    return Outcome([bench.adapt_a(deadline, n_examples=1500)[0]])


def tiny_examples_body(n: int) -> bytes:
    """An /adapt body of `n` tiny examples over 3 labels (450,000 make about 13 MB)."""
    examples = [{"text": f"t{i}", "label": f"l{i % 3}"} for i in range(n)]
    return json.dumps({"tenant_id": "A", "examples": examples}, separators=(",", ":")).encode()


def adapt_huge(copies: int) -> Callable[[Bench, float], Outcome]:
    """`copies` concurrent /adapts of 450,000 tiny examples (over FEWSHOT_MAX_EXAMPLES: a 422 is expected)."""

    def attack(bench: Bench, deadline: float) -> Outcome:
        body = tiny_examples_body(450_000)  # serialised before the clock starts
        calls = concurrently(copies, lambda _: bench.post("A", "/adapt", body, deadline)[0])
        return Outcome(calls, {"body_mib": round(len(body) / 2**20, 2)})

    return attack


def predict_zero_width(bench: Bench, deadline: float) -> Outcome:
    """Four concurrent /predicts of A, each 256 texts of 2,000 zero-width spaces (`\\u200b`-escaped: ~3 MB)."""
    body = json.dumps({"tenant_id": "A", "texts": ["\u200b" * 2000] * 256}, ensure_ascii=True).encode()
    calls = concurrently(4, lambda _: bench.post("A", "/predict", body, deadline)[0])
    return Outcome(calls, {"body_mib": round(len(body) / 2**20, 2)})


def many_labels_body(n_labels: int = 16_000) -> bytes:
    """An /adapt body declaring `n_labels` labels, each with a one-letter description, and 2 examples (each label
    declared and described: the validation path that was quadratic in the label count)."""
    labels = [f"label-{i:05d}" for i in range(1, n_labels + 1)]
    examples = [{"text": "where is my card", "label": labels[0]}, {"text": "what rate for euros", "label": labels[1]}]
    descriptions = {label: "d" for label in labels}
    return json.dumps(
        {"tenant_id": "A", "labels": labels, "label_descriptions": descriptions, "examples": examples}
    ).encode()


def labels_16k(bench: Bench, deadline: float) -> Outcome:
    """One /adapt of A declaring and describing 16,000 labels: how long until its 422."""
    call, _ = bench.post("A", "/adapt", many_labels_body(), deadline)
    return Outcome([call])


def labels_16k_disconnect(bench: Bench, deadline: float) -> Outcome:
    """Six 16k-label /adapts within 2 s, each abandoned 0.2 s after it was sent; then `--after-disconnect-s` of
    probes (the window the headline probe numbers cover)."""
    body = many_labels_body()

    def job(i: int) -> Call:
        time.sleep(0.4 * i)
        return abandon(bench, "A", "/adapt", body, 0.2)

    calls = concurrently(6, job)
    last_close = time.perf_counter()
    time.sleep(max(0.0, min(bench.args.after_disconnect_s, deadline - time.monotonic())))
    return Outcome(calls, window=last_close)


def fresh_versions(count: int) -> Callable[[Bench], dict[str, Any]]:
    """Set-up: `count` re-adapts of A from fresh texts (reports of these versions are not cached anywhere)."""

    def setup(bench: Bench) -> dict[str, Any]:
        deadline = time.monotonic() + RECOVERY_MAX_S + bench.args.max_attack_s
        adapts = [bench.adapt_a(deadline) for _ in range(count)]
        failed = [asdict(call) for call, version in adapts if version is None]
        if failed:
            raise RuntimeError(f"set-up /adapt of A failed: {failed}")
        bench.wait_idle(deadline)
        return {"versions": [version for _, version in adapts]}

    return setup


def evaluate_disconnect(bench: Bench, deadline: float, versions: list[int]) -> Outcome:
    """CPU the server spends on an /evaluate (`{}`: the current version) whose client left after 0.3 s, against one
    complete /evaluate of the version before it. Both versions are fresh (cold report cache); each starts on an
    idle server."""
    abandoned = abandon(bench, "A", "/tenants/A/evaluate", b"{}", 0.3)
    disconnect_cpu, disconnected = bench.cpu_s(), time.monotonic()
    idle_cpu = bench.wait_idle(deadline)
    extra: dict[str, Any] = {
        "cpu_s_after_disconnect": round(idle_cpu - disconnect_cpu, 3),
        "idle_s_after_disconnect": round(time.monotonic() - disconnected, 2),
        "versions": versions,
    }
    full, _ = bench.post("A", "/tenants/A/evaluate", {"version": versions[0]}, deadline)
    extra["cpu_s_full_evaluate"] = round(bench.wait_idle(deadline) - idle_cpu, 3)
    if extra["cpu_s_full_evaluate"] > 0:
        extra["cpu_ratio_after_disconnect"] = round(extra["cpu_s_after_disconnect"] / extra["cpu_s_full_evaluate"], 3)
    return Outcome([abandoned, full], extra)


def evaluate_cached_cycle(bench: Bench, deadline: float, versions: list[int]) -> Outcome:
    """/evaluate each of A's 5 retained (fresh) versions, 3 rounds: how many answers were computed again
    (`cached: false`) rather than served from the report cache."""
    calls, uncached = [], 0
    for _ in range(3):
        for version in versions:
            if time.monotonic() > deadline:
                break
            call, data = bench.post("A", "/tenants/A/evaluate", {"version": version}, deadline)
            calls.append(call)
            uncached += bool(data is not None and data.get("cached") is False)
    extra = {"versions": versions, "uncached_answers": uncached, "evaluate_answers": len(calls)}
    return Outcome(calls, extra)


@dataclass(frozen=True)
class Attack:
    """`run(bench, deadline, **setup(bench))` is the measured part; `setup` runs before it, without probes or cap."""

    name: str
    run: Callable[..., Outcome]
    probes: bool = True
    settle: str = "settle_s"  # the option giving how long probes go on after the attack ("none": no settling)
    setup: Callable[[Bench], dict[str, Any]] | None = None


ATTACKS = [
    Attack("suggest_1000x1000", suggest(1000, 1000, seed=1000)),
    Attack("suggest_600_short", suggest(600, 40, seed=600)),
    Attack("adapt_1500", adapt_fresh),
    Attack("adapt_13mb", adapt_huge(1)),
    Attack("adapt_13mb_x2", adapt_huge(2)),
    Attack("predict_zero_width_x4", predict_zero_width),
    Attack("labels_16k", labels_16k),
    Attack("labels_16k_x6_disconnect", labels_16k_disconnect, settle="none"),
    Attack("evaluate_disconnect", evaluate_disconnect, probes=False, setup=fresh_versions(2)),
    Attack("evaluate_cached_cycle", evaluate_cached_cycle, setup=fresh_versions(5)),
]


# --- running -------------------------------------------------------------------------------------------------------


def set_up_tenants(bench: Bench) -> None:
    """B: 5 labels x 5 examples; A: `--a-examples` over 50 labels (so /evaluate and /suggest have real work)."""
    deadline = time.monotonic() + 600
    call, _ = bench.post("B", "/adapt", {"tenant_id": "B", "examples": b_support(bench.args.seed)}, deadline)
    a_call, _ = bench.adapt_a(deadline)
    for tenant, done in (("B", call), ("A", a_call)):
        if done.status != 200:
            raise RuntimeError(f"/adapt of tenant {tenant} answered {done.status} {done.error_code}")
    for _ in range(3):  # B's head loaded, its one text's shapes seen: the idle numbers are warm
        bench.post("B", "/predict", B_QUERY, deadline)


def capped(attack: Attack, bench: Bench, deadline: float, prepared: dict[str, Any]) -> Outcome | None:
    """Run the attack on a thread; None when it is still running 30 s after its deadline (left behind). An attack
    that raises gives an outcome with no calls and the error."""
    box: list[Outcome] = []

    def run() -> None:
        try:
            box.append(attack.run(bench, deadline, **prepared))
        except Exception as error:  # report it with the others, and go on to the next attack
            box.append(Outcome([], {"error": repr(error)}))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=max(0.0, deadline - time.monotonic()) + 30)
    return box[0] if box else None


def wait_recovered(bench: Bench, threshold_ms: float) -> dict[str, Any]:
    """Send B's one-text /predict until it answers under `threshold_ms` 3 times in a row (at most 120 s)."""
    started = time.monotonic()
    streak = 0
    body = json.dumps(B_QUERY).encode()
    with httpx.Client(base_url=bench.url, timeout=httpx.Timeout(RECOVERY_MAX_S)) as client:
        while time.monotonic() - started < RECOVERY_MAX_S:
            sent = time.perf_counter()
            try:
                ok = client.post("/predict", content=body, headers=bench.headers("B")).status_code == 200
            except httpx.HTTPError:
                ok = False
            streak = streak + 1 if ok and (time.perf_counter() - sent) * 1000 < threshold_ms else 0
            if streak >= RECOVERY_STREAK:
                return {"recovery_s": round(time.monotonic() - started, 2), "recovered": True}
            time.sleep(B_PAUSE_S)
    return {"recovery_s": round(time.monotonic() - started, 2), "recovered": False}


def summarise_calls(calls: list[Call]) -> dict[str, Any]:
    """Status codes, error codes and the slowest answer of the attacker's requests."""
    answered = [c.seconds for c in calls if c.status]
    return {
        "calls": [asdict(c) for c in calls],
        "status_codes": dict(Counter("abandoned" if c.status is None else str(c.status) for c in calls)),
        "error_codes": dict(Counter(c.error_code for c in calls if c.error_code)),
        "answer_s": round(max(answered), 3) if answered else None,
    }


def run_attack(bench: Bench, attack: Attack, recovery_ms: float) -> dict[str, Any]:
    """One attack with the probes on (unless it says otherwise) during it and the settle time after it."""
    args = bench.args
    setup_started = time.perf_counter()
    try:
        prepared = attack.setup(bench) if attack.setup is not None else {}
    except (RuntimeError, httpx.HTTPError) as error:
        return {"error": f"set-up: {error!r}", "timed_out": False} | wait_recovered(bench, recovery_ms)
    result: dict[str, Any] = {"setup_s": round(time.perf_counter() - setup_started, 2), "probes": attack.probes}
    deadline = time.monotonic() + args.max_attack_s
    with probing(bench, attack.probes) as probes:
        started = time.perf_counter()
        outcome = capped(attack, bench, deadline, prepared)
        result["attack_s"] = round(time.perf_counter() - started, 3)
        if attack.settle != "none":
            time.sleep(getattr(args, attack.settle))
    if probes is not None:
        window = outcome.window if outcome is not None else None
        result["b"], result["healthz"] = latency(probes.b, window), latency(probes.healthz, window)
        if window is not None:
            result["b_whole"], result["healthz_whole"] = latency(probes.b), latency(probes.healthz)
    if outcome is None:
        result |= {"timed_out": True, "left_running": True}
    else:
        result |= summarise_calls(outcome.calls) | outcome.extra
        result["timed_out"] = result["attack_s"] >= args.max_attack_s or any(c.timed_out for c in outcome.calls)
    return result | wait_recovered(bench, recovery_ms)


def machine() -> dict[str, Any]:
    """Where the numbers were taken (client and server share the machine)."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, set up A and B, probe idle, then run the chosen attacks in order."""
    chosen = [a for a in ATTACKS if a.name in args.attacks]
    served_from = git_state(args.repo)
    report: dict[str, Any] = {
        "machine": machine(),
        "repo": str(args.repo),
        "repo_commit": served_from["commit"],
        "repo_dirty": served_from["dirty"],
        "client_commit": git_state(REPO)["commit"],
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "compare"},
        "attacks": {},
    }
    started = time.monotonic()
    with server_under_test(args.repo) as (server, admin_key):
        bench = Bench(server, {t: create_key(server.url, admin_key, t) for t in ("A", "B")}, args)
        set_up_tenants(bench)
        with probing(bench) as probes:
            time.sleep(args.idle_s)
        assert probes is not None
        report["idle"] = {"b": latency(probes.b), "healthz": latency(probes.healthz)}
        idle_p95 = report["idle"]["b"]["p95_ms"] or 100.0
        print(f"idle: B {report['idle']['b']}, healthz {report['idle']['healthz']}", flush=True)
        for attack in chosen:
            result = run_attack(bench, attack, RECOVERY_FACTOR * idle_p95)
            report["attacks"][attack.name] = result
            print(f"{attack.name}: {one_line(result)}", flush=True)
    report["total_s"] = round(time.monotonic() - started, 1)
    return report


# --- reporting -----------------------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def answers(result: dict[str, Any]) -> str:
    """The attacker's answers, e.g. `422 too_many_examples x2`."""
    counted = Counter(
        "abandoned" if c["status"] is None else f"{c['status']} {c['error_code'] or ''}".strip()
        for c in result.get("calls", [])
    )
    return ", ".join(f"{k} x{n}" if n > 1 else k for k, n in counted.items()) or "-"


def notes(result: dict[str, Any]) -> str:
    """The attack's own numbers worth a table cell."""
    parts = []
    if "cpu_s_after_disconnect" in result:
        parts.append(
            f"CPU after disconnect {result['cpu_s_after_disconnect']:.1f} s of a full "
            f"{result.get('cpu_s_full_evaluate', float('nan')):.1f} s"
        )
    if "uncached_answers" in result:
        parts.append(f"uncached {result['uncached_answers']}/{result['evaluate_answers']}")
    if "error" in result:
        parts.append(f"client error {result['error']}")
    if result.get("timed_out"):
        parts.append("timed out")
    if result.get("recovered") is False:
        parts.append("B not recovered in 120 s")
    return "; ".join(parts)


def key_numbers(result: dict[str, Any]) -> str:
    """The attack's own numbers, short (for the comparison table)."""
    parts = []
    if "cpu_s_after_disconnect" in result:
        parts.append(f"CPU {result['cpu_s_after_disconnect']:.1f} of {result.get('cpu_s_full_evaluate', 0):.1f} s")
    if "uncached_answers" in result:
        parts.append(f"{result['uncached_answers']}/{result['evaluate_answers']} uncached")
    if result.get("timed_out"):
        parts.append("timed out")
    return ", ".join(parts) or "-"


def one_line(result: dict[str, Any]) -> str:
    b = result.get("b") or {}
    return (
        f"B p95 {ms(b.get('p95_ms'))} ms max {ms(b.get('max_ms'))} ms, answers {answers(result)}, "
        f"answer {seconds(result.get('answer_s'))} s, recovery {seconds(result.get('recovery_s'))} s {notes(result)}"
    )


def print_report(report: dict[str, Any]) -> None:
    rows = []
    for name, result in [("idle", report["idle"]), *report["attacks"].items()]:
        b, healthz = result.get("b") or {}, result.get("healthz") or {}
        rows.append(
            [
                name,
                ms(b.get("p50_ms")),
                ms(b.get("p95_ms")),
                ms(b.get("max_ms")),
                b.get("count", "-"),
                ms(healthz.get("p95_ms")),
                ms(healthz.get("max_ms")),
                answers(result),
                seconds(result.get("answer_s")),
                seconds(result.get("recovery_s")),
                notes(result),
            ]
        )
    header = ["phase", "B p50 ms", "B p95 ms", "B max ms", "B n", "healthz p95 ms", "healthz max ms"]
    print_table([*header, "A's answers", "A answer s", "B recovery s", "notes"], rows)
    dirty = " (with uncommitted changes)" if report.get("repo_dirty") else ""
    print(f"\nrepo {report['repo']} @ {report['repo_commit']}{dirty}; {report['machine']}; total {report['total_s']} s")


def compare(before_path: Path, after_path: Path) -> str:
    """Markdown: per attack, B p95, healthz max and the attacker's time to answer, before and after."""
    before, after = (json.loads(path.read_text()) for path in (before_path, after_path))
    names = [a.name for a in ATTACKS if a.name in before["attacks"] or a.name in after["attacks"]]
    rows = []
    for name in ["idle", *names]:
        old = before["idle"] if name == "idle" else before["attacks"].get(name, {})
        new = after["idle"] if name == "idle" else after["attacks"].get(name, {})
        rows.append(
            [
                f"`{name}`",
                ms((old.get("b") or {}).get("p95_ms")),
                ms((new.get("b") or {}).get("p95_ms")),
                ms((old.get("healthz") or {}).get("max_ms")),
                ms((new.get("healthz") or {}).get("max_ms")),
                seconds(old.get("answer_s")),
                seconds(new.get("answer_s")),
                f"{key_numbers(old)} → {key_numbers(new)}" if {key_numbers(old), key_numbers(new)} != {"-"} else "",
            ]
        )
    header = ["attack", "B p95 ms before", "after", "healthz max ms before", "after", "answer s before", "after"]
    return markdown_table([*header, "before → after: CPU after disconnect of a full evaluate, uncached reports"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout the server runs from (default: this one)")
    parser.add_argument("--attacks", nargs="+", choices=[a.name for a in ATTACKS], default=[a.name for a in ATTACKS])
    parser.add_argument("--a-examples", type=int, default=1500, help="size of A's support set (50 labels)")
    parser.add_argument("--idle-s", type=float, default=5.0, help="probes alone first, for this long")
    parser.add_argument("--settle-s", type=float, default=1.0, help="probes go on this long after each attack")
    parser.add_argument("--max-attack-s", type=float, default=150.0, help="cap on each attack")
    parser.add_argument("--after-disconnect-s", type=float, default=20.0, help="probing after the 6 abandoned adapts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/noisy_neighbour.json"))
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE.json", "AFTER.json"))
    args = parser.parse_args(argv)
    if args.compare:
        print(compare(*args.compare))
        return 0
    args.repo = args.repo.resolve()
    report = measure(args)
    write_json(args.out, report)
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
