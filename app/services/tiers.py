"""Encoder tiers: the encoders one process serves side by side, each with its own services, and which one a
request goes to.

A new tenant (or a `replace`) gets the tier it names (default: the first served), or with `encoder: "auto"` the
one `TierChooser` picks from its support set. Everything else about a tenant
goes to the tier it was adapted with, read from its record (`records.stored_encoder`) and remembered per
(tenant, version); with one tier served, that check happens where the record is opened (`open_record`), at no
extra store call. A tenant of an encoder this process does not serve gets 409 `encoder_not_served`, never
another encoder's answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from anyio import to_thread

from app.ml.head import SINGLE_LABEL
from app.ml.registry import AUTO
from app.services.adaptation import AdaptationService
from app.services.errors import ServiceError, encoder_not_served, invalid, missing_version, unknown_tenant
from app.services.insight import InsightService
from app.services.prediction import PredictionService
from app.services.records import continued_generation, stored_encoder, stored_generation, stored_task
from app.services.support import stored_support_set
from app.services.tier_choice import TierChooser, candidate, choice_json
from app.services.validation import validate_support
from app.store.base import JSON, TenantStore

REMEMBERED_TENANTS = 100_000
REMEMBERED_ADVICE = 10_000  # tenants whose last tier advice is kept (each a small JSON object)


@dataclass(frozen=True)
class EncoderDescription:
    name: str
    default: bool
    dim: int
    fingerprint: str
    checkpoint: str | None  # the checkpoint folder's name
    precision: str


@dataclass(frozen=True)
class Tier:
    """One served encoder and the services that use it."""

    description: EncoderDescription
    adaptation: AdaptationService
    prediction: PredictionService
    insight: InsightService

    @property
    def name(self) -> str:
        return self.description.name


class Tiers:
    def __init__(self, tiers: list[Tier], store: TenantStore) -> None:
        if not tiers:
            raise ValueError("at least one encoder tier")
        self._tiers = {tier.name: tier for tier in tiers}
        self.default = tiers[0]
        self.store = store
        self._names: OrderedDict[str, tuple[int, str]] = OrderedDict()  # tenant -> (version, encoder name)
        self._advice: OrderedDict[str, tuple[int, JSON]] = OrderedDict()  # tenant -> (version, `advise`'s answer)
        self._lock = threading.Lock()

    def describe(self) -> list[EncoderDescription]:
        return [tier.description for tier in self._tiers.values()]

    def named(self, name: str | None) -> Tier:
        """The tier called `name` (None: the default); 422 `unknown_encoder` for one this process does not serve."""
        if name is None:
            return self.default
        tier = self._tiers.get(name)
        if tier is None:
            served = ", ".join(self._tiers)
            raise invalid("unknown_encoder", f"encoder {name[:64]!r} is not served here; served: {served}")
        return tier

    def of_tenant(self, tenant_id: str, version: int | None = None) -> Tier:
        """The tier `tenant_id` (or its retained `version`) was adapted with."""
        if len(self._tiers) == 1:
            return self.default  # its services check the record's encoder when they open it
        if version is None:
            current = self.store.current_version(tenant_id)
            if current is None:
                raise unknown_tenant(tenant_id)
            with self._lock:
                known = self._names.get(tenant_id)
            if known is not None and known[0] == current:
                return self._served(tenant_id, known[1])
        stored = self.store.load(tenant_id, version=version)
        if stored is None:
            raise missing_version(self.store, tenant_id, version)
        name = stored_encoder(stored.meta)
        if version is None:
            self._remember(tenant_id, stored.version, name)
        return self._served(tenant_id, name)

    async def of_tenant_async(self, tenant_id: str, version: int | None = None) -> Tier:
        """`of_tenant` for an event loop: on the loop with one tier or an in-process store, else in a worker
        thread (it reads the store)."""
        if len(self._tiers) == 1 or self.store.in_process:
            return self.of_tenant(tenant_id, version)
        return await to_thread.run_sync(self.of_tenant, tenant_id, version)

    def for_adapt(self, tenant_id: str, mode: str, encoder: str | None) -> Tier | None:
        """`replace`: the named tier. `append`: the tenant's own (an explicit other one is 409 `encoder_mismatch`:
        changing a tenant's encoder is a replace), or the named one for a new tenant. None: `encoder: "auto"` for a
        replace or a new tenant, for `choose` to decide."""
        if mode == "replace" or self.store.current_version(tenant_id) is None:
            return None if encoder == AUTO else self.named(encoder)
        tier = self.of_tenant(tenant_id)
        if encoder is not None and encoder not in (AUTO, tier.name):
            raise ServiceError(
                409,
                "encoder_mismatch",
                f"tenant {tenant_id!r} uses encoder {tier.name!r}; changing it needs mode 'replace'",
            )
        return tier

    def choose(
        self,
        tenant_id: str,
        examples: list[JSON],
        labels: list[str] | None,
        descriptions: dict[str, str] | None,
        task: str | None,
    ) -> tuple[Tier, JSON, str]:
        """`encoder: "auto"`: the served tier for this support set (`tier_choice`), its decision as stored JSON,
        and the generation its embeddings were cached under (the new tenant's, or the stored one)."""
        generation = continued_generation(self.store.load(tenant_id))
        support_of = {
            name: validate_support(examples, labels, tier.adaptation.context.limits, descriptions, task or SINGLE_LABEL)
            for name, tier in self._tiers.items()
        }
        choice = self._chooser().choose(support_of, tenant_id, generation)
        return self._tiers[choice.chosen], choice_json(choice), generation

    def advise(self, tenant_id: str, version: int) -> JSON | None:
        """What `encoder: "auto"` would choose for a stored version's support set (None with one tier served),
        with the tenant's own tier (`current`) and whether that differs (`switch`); the last asked version of each
        tenant is kept."""
        if len(self._tiers) == 1:
            return None
        with self._lock:
            known = self._advice.get(tenant_id)
        if known is not None and known[0] == version:
            return known[1]
        stored = self.store.load(tenant_id, version=version)
        rows = self.store.load_support(tenant_id, version=version) if stored is not None else None
        if stored is None or rows is None:
            raise missing_version(self.store, tenant_id, version)
        task = stored_task(stored.meta)
        support_of = {
            name: stored_support_set(rows, tier.adaptation.context.limits, task) for name, tier in self._tiers.items()
        }
        choice = self._chooser().choose(support_of, tenant_id, stored_generation(stored.meta))
        current = stored_encoder(stored.meta)
        advice = choice_json(choice) | {"current": current, "switch": choice.chosen != current}
        with self._lock:
            self._advice[tenant_id] = (version, advice)
            self._advice.move_to_end(tenant_id)
            while len(self._advice) > REMEMBERED_ADVICE:
                self._advice.popitem(last=False)
        return advice

    def _chooser(self) -> TierChooser:
        return TierChooser([candidate(name, tier.adaptation.context) for name, tier in self._tiers.items()])

    def forget(self, tenant_id: str) -> None:
        """Drop the remembered (version, encoder) of `tenant_id` (a deleted tenant)."""
        with self._lock:
            self._names.pop(tenant_id, None)
            self._advice.pop(tenant_id, None)

    def _served(self, tenant_id: str, name: str) -> Tier:
        tier = self._tiers.get(name)
        if tier is None:
            raise encoder_not_served(tenant_id, name)
        return tier

    def _remember(self, tenant_id: str, version: int, name: str) -> None:
        with self._lock:
            self._names[tenant_id] = (version, name)
            self._names.move_to_end(tenant_id)
            while len(self._names) > REMEMBERED_TENANTS:
                self._names.popitem(last=False)
