"""A stale head is rebuilt once however many /predict calls find it stale at the same time, and the rebuild is its
tenant's bulk work: its encoder passes queue behind other tenants' predictions, as an /adapt's do."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from app.ml.embedder import EncoderEmbedder
from app.ml.learner import InnerLoopParams
from app.ml.work import Priority, current_work
from app.services.adaptation import AdaptationService
from app.services.context import TierContext
from app.services.model_cache import HeadCache
from app.services.prediction import PredictionService
from app.store import MemoryStore
from tests.services.test_validation import SUPPORT
from tests.tiny_encoder import build_tiny_encoder, packaged_tokenizer

CALLERS = 4


class _CountedRebuilds(AdaptationService):
    """Counts rebuilds and records the work each ran as; the first waits for `release`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.runs: list[tuple[str, Priority]] = []
        self.started, self.release = threading.Event(), threading.Event()

    def rebuild(self, tenant_id: str, version: int, inner_steps: int | None):
        work = current_work()
        self.runs.append((work.owner, work.priority))
        self.started.set()
        assert self.release.wait(10)
        return super().rebuild(tenant_id, version, inner_steps)


def test_concurrent_predictions_of_a_stale_tenant_share_one_rebuild_run_as_its_bulk_work() -> None:
    encoder = build_tiny_encoder(packaged_tokenizer())  # its own: the test changes its fingerprint
    context = TierContext(EncoderEmbedder(encoder), InnerLoopParams.constant(3, 0.05, 10.0))
    store = MemoryStore()
    adaptation = _CountedRebuilds(context, store)
    adaptation.adapt("acme", SUPPORT, label_names="off")
    service = PredictionService(context, store, HeadCache(8), adaptation)
    encoder.delta_sha256 = "another checkpoint"  # every stored head is now stale

    with ThreadPoolExecutor(max_workers=CALLERS) as pool:
        first = pool.submit(service.head_for, "acme")
        assert adaptation.started.wait(10)
        others = [pool.submit(service.head_for, "acme") for _ in range(CALLERS - 1)]
        while service.repairs_waiting("acme") < CALLERS:
            threading.Event().wait(0.001)
        adaptation.release.set()
        versions = {first.result(10)[0]} | {other.result(10)[0] for other in others}

    assert adaptation.runs == [("acme", Priority.BULK)]
    assert versions == {2} and store.current_version("acme") == 2
