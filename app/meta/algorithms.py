"""Few-shot meta-learning algorithms behind one interface.

Each algorithm maps (support embeddings, support targets, query embeddings, n_way) to query
logits. The head-based ones (ProtoNet, MAML, FOMAML, Proto-MAML, Meta-SGD) all run THE inner
loop, `app.ml.learner.adapt_head`, which is what `/adapt` runs too; with `differentiable=True`
the outer loop back-propagates through its SGD steps (via `higher`) into the embeddings and the
inner-loop tensors (learning rates, temperature). Matching and Relation Networks are metric
baselines from the literature that have no head to hand to the service. The meta-network writes a
head from the support set (a generator of head rows), optionally followed by inner-loop steps.
`supcon` trains the encoder with a supervised contrastive loss on each episode's texts (CPFT), optionally plus
an InfoNCE loss that aligns each text with its label's name (PIE), and serves through the unchanged Proto-MAML
inner loop.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from app.ml.learner import (
    HeadTensors,
    InnerLoopParams,
    adapt_head,
    class_prototypes,
    head_logits,
    prototype_head,
)


class MetaAlgorithm(nn.Module):
    """Interface: `logits(...)` is differentiable in training mode and no-grad-friendly in eval."""

    name = "base"
    exports_head = False  # True when /adapt can serve it (inner loop params in a checkpoint)
    uses_names = False  # True when `loss` wants the embeddings of the episode's label names

    def __init__(self, scale: float = 10.0, learn_scale: bool = True) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)), requires_grad=learn_scale)

    def logits(self, support: torch.Tensor, targets: torch.Tensor, query: torch.Tensor, n_way: int) -> torch.Tensor:
        raise NotImplementedError

    def loss(
        self,
        support: torch.Tensor,
        targets: torch.Tensor,
        query: torch.Tensor,
        query_targets: torch.Tensor,
        n_way: int,
        names: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Query cross-entropy and query accuracy (detached); `names` (label-name embeddings) is not used here."""
        logits = self.logits(support, targets, query, n_way)
        loss = F.cross_entropy(logits, query_targets)
        accuracy = (logits.argmax(dim=-1) == query_targets).float().mean().detach()
        return loss, accuracy

    def inner_params(self) -> InnerLoopParams:
        raise TypeError(f"{self.name} has no inner loop to export")


class HeadAdaptation(MetaAlgorithm):
    """Linear head + `steps` inner SGD steps of `adapt_head`.

    `init`: "prototype" (Proto-MAML, ProtoNet) or "zero" (MAML). `first_order`: do not
    back-propagate through the inner updates (FOMAML; the inner lr is then not learnable).
    `per_dim_lr`: Meta-SGD's per-parameter learning rates (one per embedding dimension for the
    weight, broadcast over classes so that any number of labels fits, and one for the bias).
    `adapt_norm`: the inner loop adapts the last-layer norm too ("head + last-layer norms"), with
    its own learnable rate starting at `norm_lr`.
    """

    exports_head = True

    def __init__(
        self,
        name: str,
        steps: int,
        lr: float = 1.0,
        scale: float = 10.0,
        init: str = "prototype",
        first_order: bool = False,
        learn_lr: bool = True,
        per_dim_lr: bool = False,
        dim: int = 384,
        learn_scale: bool = True,
        adapt_norm: bool = False,
        norm_lr: float = 0.1,
    ) -> None:
        super().__init__(scale, learn_scale)
        self.name = name
        self.steps = steps
        self.init = init
        self.first_order = first_order
        shape = (dim,) if per_dim_lr else ()
        learn = learn_lr and not first_order and steps > 0
        self.log_lr_weight = nn.Parameter(torch.full(shape, math.log(lr)), requires_grad=learn)
        self.log_lr_bias = nn.Parameter(torch.tensor(math.log(lr)), requires_grad=learn)
        self.log_lr_norm = nn.Parameter(torch.tensor(math.log(norm_lr)), requires_grad=learn) if adapt_norm else None

    def inner_params(self) -> InnerLoopParams:
        lr_norm = None if self.log_lr_norm is None else self.log_lr_norm.exp()
        return InnerLoopParams(self.steps, self.log_lr_weight.exp(), self.log_lr_bias.exp(), self.log_scale, lr_norm)

    def adapted_head(self, support: torch.Tensor, targets: torch.Tensor, n_way: int) -> HeadTensors:
        params = self.inner_params()
        if not torch.is_grad_enabled():
            return adapt_head(support, targets, n_way, params, differentiable=False, init=self.init)
        if not self.first_order:
            return adapt_head(support, targets, n_way, params, differentiable=True, init=self.init)
        # first order: gradients reach the support only through the initial head, not the SGD steps
        adapted = adapt_head(support, targets, n_way, params, differentiable=False, init=self.init)
        if self.init != "prototype":
            return adapted
        start = prototype_head(support, targets, n_way)
        return HeadTensors(
            start.weight + (adapted.weight - start.weight).detach(),
            start.bias + (adapted.bias - start.bias).detach(),
            adapted.norm_gain,
            adapted.norm_shift,
        )

    def logits(self, support: torch.Tensor, targets: torch.Tensor, query: torch.Tensor, n_way: int) -> torch.Tensor:
        head = self.adapted_head(support, targets, n_way)
        return head_logits(query, head, self.log_scale.exp())


class SupervisedContrastive(HeadAdaptation):
    """Supervised contrastive training of the encoder (Khosla et al. 2020; CPFT, Zhang et al. 2021), optionally
    aligned with the label names (PIE, Sung et al. 2023), served by the Proto-MAML inner loop.

    For the episode's unit embeddings z (support and queries together) with labels y, temperature τ:
        L_sc = mean over anchors i with positives of -1/|P(i)| Σ_{p∈P(i)} log(exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ)),
    P(i) = {p ≠ i : y_p = y_i}. Texts of one label are pulled together and every other label's pushed away,
    with no inner loop in the training step. With `names_weight` w > 0 and the unit embeddings n_c of the
    episode's label names (`card_arrival` -> "card arrival"), the loss adds w times
        L_names = mean over texts i of  -log( exp(z_i·n_{y_i}/τ) / Σ_c exp(z_i·n_c/τ) ),
    an InfoNCE loss of each text against its own label's name, the episode's other names being the negatives.
    The inner loop (steps, learning rates, temperature) is not trained: validation and `/adapt` run it with its
    start values.
    """

    def __init__(
        self, steps: int, lr: float, scale: float, dim: int, temperature: float = 0.1, names_weight: float = 0.0
    ) -> None:
        super().__init__("supcon", steps, lr, scale, dim=dim, learn_lr=False, learn_scale=False)
        self.temperature = temperature
        self.names_weight = names_weight
        self.uses_names = names_weight > 0

    def loss(
        self,
        support: torch.Tensor,
        targets: torch.Tensor,
        query: torch.Tensor,
        query_targets: torch.Tensor,
        n_way: int,
        names: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """L_sc (+ w L_names when `names` `[n_way, dim]` is given) over support and queries, and the queries'
        nearest-prototype accuracy (detached)."""
        with torch.no_grad():
            nearest = (query @ class_prototypes(support.detach(), targets, n_way).T).argmax(dim=-1)
            accuracy = (nearest == query_targets).float().mean()
        texts, labels = torch.cat([support, query]), torch.cat([targets, query_targets])
        loss = supervised_contrastive_loss(texts, labels, self.temperature)
        if self.uses_names and names is not None:
            loss = loss + self.names_weight * label_name_loss(texts, labels, names, self.temperature)
        return loss, accuracy


def supervised_contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """`SupervisedContrastive`'s L for unit-norm `embeddings` `[n, dim]` and `labels` `[n]`."""
    n = embeddings.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=embeddings.device)
    similarity = (embeddings @ embeddings.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = similarity - torch.logsumexp(similarity, dim=1, keepdim=True)
    positives = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~self_mask
    counts = positives.sum(dim=1)
    has = counts > 0
    if not has.any():  # no two texts share a label: nothing to pull together
        return embeddings.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~positives, 0.0).sum(dim=1)[has] / counts[has])
    return per_anchor.mean()


def label_name_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, names: torch.Tensor, temperature: float
) -> torch.Tensor:
    """`SupervisedContrastive`'s L_names: unit-norm text `embeddings` `[n, dim]` with `labels` `[n]` in
    0..n_way-1 against the unit-norm label-name embeddings `names` `[n_way, dim]`."""
    return F.cross_entropy(embeddings @ names.T / temperature, labels)


class MatchingNet(MetaAlgorithm):
    """Matching Networks (Vinyals et al. 2016) without full-context embeddings: cosine attention over support."""

    name = "matchingnet"

    def logits(self, support: torch.Tensor, targets: torch.Tensor, query: torch.Tensor, n_way: int) -> torch.Tensor:
        cosine = F.normalize(query, dim=-1) @ F.normalize(support, dim=-1).T
        attention = torch.softmax(self.log_scale.exp() * cosine, dim=-1)
        probs = attention @ F.one_hot(targets, n_way).to(attention.dtype)
        return probs.clamp(min=1e-8).log()


class RelationNet(MetaAlgorithm):
    """Relation Networks (Sung et al. 2018) on sentence embeddings: a learned MLP comparator
    scores (class prototype, query) pairs; trained with cross-entropy over the scores."""

    name = "relationnet"

    def __init__(self, dim: int = 384, hidden: int = 256, scale: float = 10.0) -> None:
        super().__init__(scale)
        self.comparator = nn.Sequential(nn.Linear(4 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.comparator[2].weight)
        nn.init.zeros_(self.comparator[2].bias)

    def logits(self, support: torch.Tensor, targets: torch.Tensor, query: torch.Tensor, n_way: int) -> torch.Tensor:
        protos = class_prototypes(support, targets, n_way)
        q = query[:, None, :].expand(-1, n_way, -1)
        p = protos[None, :, :].expand(query.shape[0], -1, -1)
        pairs = torch.cat([q, p, (q - p).abs(), q * p], dim=-1)
        # residual on cosine similarity so that the untrained comparator starts as a prototype classifier
        cosine = (F.normalize(q, dim=-1) * F.normalize(p, dim=-1)).sum(-1)
        return self.log_scale.exp() * cosine + self.comparator(pairs).squeeze(-1)


class MetaNetwork(MetaAlgorithm):
    """A meta-network that writes the classifier: from each class's prototype `p` and per-dimension spread `s`
    (standard deviation of its support embeddings; 0 at one shot) an MLP outputs a correction `[dw, db]` to the
    prototype head's row `2 p` and bias `-||p||^2`, then `steps` inner-loop steps start from the written head
    (0: the written head as is). The generator's last layer starts at zero, so an untrained meta-network is
    ProtoNet (Proto-MAML with steps). Its head is not served: `/adapt` has no generator."""

    name = "metanet"

    def __init__(self, dim: int = 384, hidden: int = 256, scale: float = 10.0, steps: int = 0, lr: float = 0.04):
        super().__init__(scale)
        self.dim = dim
        self.steps = steps
        self.generator = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, dim + 1))
        nn.init.zeros_(self.generator[2].weight)
        nn.init.zeros_(self.generator[2].bias)
        self.log_lr = nn.Parameter(torch.tensor(math.log(lr)), requires_grad=steps > 0)

    def written_head(self, support: torch.Tensor, targets: torch.Tensor, n_way: int) -> HeadTensors:
        protos = class_prototypes(support, targets, n_way)
        deviations = (support - protos[targets]) ** 2
        counts = torch.bincount(targets, minlength=n_way).clamp(min=1).unsqueeze(1).to(support.dtype)
        spread = (torch.zeros_like(protos).index_add(0, targets, deviations) / counts).sqrt()
        correction = self.generator(torch.cat([protos, spread], dim=-1))
        start = prototype_head(support, targets, n_way)
        return HeadTensors(start.weight + correction[:, : self.dim], start.bias + correction[:, self.dim])

    def logits(self, support: torch.Tensor, targets: torch.Tensor, query: torch.Tensor, n_way: int) -> torch.Tensor:
        head = self.written_head(support, targets, n_way)
        if self.steps:
            params = InnerLoopParams(self.steps, self.log_lr.exp(), self.log_lr.exp(), self.log_scale)
            head = adapt_head(support, targets, n_way, params, differentiable=torch.is_grad_enabled(), init=head)
        return head_logits(query, head, self.log_scale.exp())


ALGORITHMS = (
    "protonet",
    "maml",
    "fomaml",
    "protomaml",
    "metasgd",
    "matchingnet",
    "relationnet",
    "metanet",
    "supcon",
)


def build_algorithm(name: str, dim: int, options: dict[str, Any] | None = None) -> MetaAlgorithm:
    """Factory; `options` may set steps, lr, scale (hidden for relationnet and metanet; inner_steps for metanet;
    temperature and names_weight for supcon)."""
    opts = dict(options or {})
    steps = int(opts.pop("steps", 10))
    lr = float(opts.pop("lr", 1.0))
    scale = float(opts.pop("scale", 10.0))
    if name == "protonet":
        return HeadAdaptation("protonet", 0, lr, scale, dim=dim, **opts)
    if name == "maml":
        return HeadAdaptation("maml", steps, lr, scale, init="zero", dim=dim, **opts)
    if name == "fomaml":
        return HeadAdaptation("fomaml", steps, lr, scale, init="zero", first_order=True, dim=dim, **opts)
    if name == "protomaml":
        return HeadAdaptation("protomaml", steps, lr, scale, dim=dim, **opts)
    if name == "fo-protomaml":
        return HeadAdaptation("fo-protomaml", steps, lr, scale, first_order=True, dim=dim, **opts)
    if name == "metasgd":
        return HeadAdaptation("metasgd", steps, lr, scale, per_dim_lr=True, dim=dim, **opts)
    if name == "supcon":
        temperature = float(opts.pop("temperature", 0.1))
        return SupervisedContrastive(steps, lr, scale, dim, temperature, float(opts.pop("names_weight", 0.0)))
    if name == "matchingnet":
        return MatchingNet(scale)
    if name == "relationnet":
        return RelationNet(dim, int(opts.pop("hidden", 256)), scale)
    if name == "metanet":
        return MetaNetwork(dim, int(opts.pop("hidden", 256)), scale, int(opts.pop("inner_steps", 0)), lr)
    raise ValueError(f"unknown algorithm {name!r}; choose from {ALGORITHMS}")
