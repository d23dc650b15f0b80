"""Plain serving policies whose defaults are the service's: request `Limits` and the `OosRule`.

No torch, no work at import time: settings import this module and take their defaults from these dataclasses
(`Settings.limits()`, `Settings.oos_rule()` build them back), so each default is written once, here.
`app.services.validation` enforces the limits; `app.ml.tenant_fit` applies the rule.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Request limits: sizes above these are refused with a 422."""

    max_examples: int = 5000  # examples in one /adapt request
    max_labels: int = 500  # distinct labels per tenant
    max_texts: int = 256  # texts in one /predict request
    max_text_chars: int = 2000  # characters of one text
    max_label_chars: int = 100  # characters of one label
    max_top_k: int = 20  # /predict's top_k
    max_unlabeled: int = 10_000  # texts in one tenant's unlabeled pool (the oldest go beyond it)


@dataclass(frozen=True)
class OosRule:
    """How a tenant's out-of-scope threshold is set from its support set."""

    quantile: float = 0.05  # the threshold: this quantile of leave-one-out support similarities
    fallback: float | None = 0.35  # without a label holding 2 examples; None: no out-of-scope
