"""Which encoder tier a request goes to, by name."""

from __future__ import annotations

from typing import Any

import pytest

from app.services.errors import ServiceError
from app.services.tiers import EncoderDescription, Tier, Tiers
from app.store.memory import MemoryStore


def tier(name: str) -> Tier:
    unused: Any = None  # naming a tier touches none of its services
    return Tier(EncoderDescription(name, False, 384, "f" * 16, None, "float32"), unused, unused, unused)


def test_a_name_not_served_is_refused_with_a_bounded_message() -> None:
    tiers = Tiers([tier("minilm"), tier("mpnet")], MemoryStore())
    assert tiers.named(None).name == "minilm" and tiers.named("mpnet").name == "mpnet"
    with pytest.raises(ServiceError) as refused:
        tiers.named("q" * 100_000)
    assert refused.value.code == "unknown_encoder" and refused.value.status == 422
    assert len(refused.value.message) < 200 and "minilm, mpnet" in refused.value.message
