"""THE inner loop: prototype-initialised linear head + a few SGD steps through `higher`.

Single-label tasks (targets: class indices `[n]`) get a softmax head and a cross-entropy loss;
multi-label tasks (targets: multi-hot `[n, c]`) a one-vs-rest head and a per-label sigmoid loss.

This is the only module of ours that imports `higher` (unmaintained; keep it contained).
`adapt_head(..., differentiable=True)` is what meta-training back-propagates through;
`/adapt` calls the very same function with `differentiable=False` (no higher-order tracking).
"""

from __future__ import annotations

from dataclasses import dataclass

import higher
import torch
from torch import nn
from torch.nn import functional as F

UNLABELED_WEIGHT = 1.0
"""The information term's default weight (`adapt_head` with `unlabeled`): chosen on the train splits of BANKING77
and CLINC150 (0.5, 1, 2, 4 and 8 tried: `bench/unlabeled_pool.py`, which reads train splits only)."""


@dataclass
class InnerLoopParams:
    """Inner-loop hyper-parameters; tensors so that meta-training can learn them.

    `lr_weight` is a scalar or a per-embedding-dimension vector `[dim]` (Meta-SGD), broadcast over
    classes so that it fits any number of labels. `log_scale` is the log inverse temperature.
    `lr_norm`, when set, makes the inner loop adapt the last-layer norm as well (see `adapt_head`).
    `unlabeled_weight` weighs the information term on unlabeled texts (see `adapt_head`).
    """

    steps: int
    lr_weight: torch.Tensor
    lr_bias: torch.Tensor
    log_scale: torch.Tensor
    lr_norm: torch.Tensor | None = None
    unlabeled_weight: float | torch.Tensor = UNLABELED_WEIGHT

    @classmethod
    def constant(cls, steps: int, lr: float, scale: float) -> InnerLoopParams:
        return cls(
            steps=steps,
            lr_weight=torch.tensor(float(lr)),
            lr_bias=torch.tensor(float(lr)),
            log_scale=torch.tensor(float(scale)).log(),
        )

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    @property
    def adapts_norm(self) -> bool:
        return self.lr_norm is not None

    def with_steps(self, steps: int) -> InnerLoopParams:
        return InnerLoopParams(steps, self.lr_weight, self.lr_bias, self.log_scale, self.lr_norm, self.unlabeled_weight)

    def tensors(self) -> dict[str, torch.Tensor]:
        named = {"lr_weight": self.lr_weight, "lr_bias": self.lr_bias, "log_scale": self.log_scale}
        return named | ({"lr_norm": self.lr_norm} if self.lr_norm is not None else {})


@dataclass
class HeadTensors:
    """A linear head: logits = scale * (features @ weight.T + bias).

    With a last-layer norm (`norm_gain`, `norm_shift`, `[dim]`), features = l2-normalise(gain * x + shift):
    the affine of the encoder's last LayerNorm re-applied to the pooled embedding, adapted per tenant.
    The gain part is exactly the LayerNorm's (mean pooling commutes with it); the shift acts after the
    pooled vector's normalisation. Without them, features = x.
    """

    weight: torch.Tensor  # [n_classes, dim]; a batch of heads (`adapt_head` with `subsets`): [b, n_classes, dim]
    bias: torch.Tensor  # [n_classes] ([b, n_classes])
    norm_gain: torch.Tensor | None = None  # [dim] ([b, dim])
    norm_shift: torch.Tensor | None = None  # [dim] ([b, dim])


def normed_features(x: torch.Tensor, gain: torch.Tensor | None, shift: torch.Tensor | None) -> torch.Tensor:
    """`x` through an adapted last-layer norm (identity when there is none)."""
    if gain is None or shift is None:
        return x
    return F.normalize(x * gain + shift, dim=-1)


def linear_logits(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    gain: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unscaled logits of embeddings `x` `[n, dim]`: `[n, c]` for one head, `[b, n, c]` for a batch of heads
    (`weight` `[b, c, dim]`, `bias` `[b, c]`, norms `[b, dim]`)."""
    if weight.ndim == 2:
        return F.linear(normed_features(x, gain, shift), weight, bias)
    if gain is not None and shift is not None:
        gain, shift = gain.unsqueeze(1), shift.unsqueeze(1)
    return normed_features(x, gain, shift) @ weight.transpose(1, 2) + bias.unsqueeze(1)


class _LinearHead(nn.Module):
    """Placeholder module that `higher` patches; its own parameters are never used (they set the shapes)."""

    def __init__(self, n_classes: int, dim: int, with_norm: bool, problems: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(*problems, n_classes, dim))
        self.bias = nn.Parameter(torch.zeros(*problems, n_classes))
        if with_norm:
            self.norm_gain = nn.Parameter(torch.ones(*problems, dim))
            self.norm_shift = nn.Parameter(torch.zeros(*problems, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gain, shift = getattr(self, "norm_gain", None), getattr(self, "norm_shift", None)
        return linear_logits(x, self.weight, self.bias, gain, shift)


def class_prototypes(embeddings: torch.Tensor, targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Mean embedding per class, `[n_classes, dim]`: of its examples (`targets` class indices `[n]`), or of the
    examples it applies to (multi-hot `targets` `[n, c]`). A class without an example gets the zero vector."""
    onehot = (targets if targets.ndim == 2 else F.one_hot(targets, n_classes)).to(embeddings.dtype)  # [n, c]
    counts = onehot.sum(dim=0).clamp(min=1).unsqueeze(1)
    return onehot.T @ embeddings / counts


def prototype_head(
    embeddings: torch.Tensor, targets: torch.Tensor, n_classes: int, subsets: torch.Tensor | None = None
) -> HeadTensors:
    """The linear layer equal to nearest-prototype scoring with squared Euclidean distance.

    -||x - c||^2 = 2 x.c - ||c||^2 - ||x||^2, and ||x||^2 is the same for every class.
    With `subsets` `[b, n]` (0/1): one layer per subset, from its rows' prototypes (`[b, c, dim]`).
    """
    if subsets is None:
        protos = class_prototypes(embeddings, targets, n_classes)
    else:
        members = subsets.unsqueeze(-1) * F.one_hot(targets, n_classes).to(embeddings.dtype)  # [b, n, c]
        protos = members.transpose(1, 2) @ embeddings / members.sum(1).clamp(min=1).unsqueeze(-1)
    return HeadTensors(weight=2.0 * protos, bias=-(protos * protos).sum(dim=-1))


def one_vs_rest_head(embeddings: torch.Tensor, targets: torch.Tensor, seen: torch.Tensor | None = None) -> HeadTensors:
    """Per label, the linear layer that compares a text's distance to the label's positives' mean `p` with its
    distance to the mean `q` of the examples without the label (multi-hot `targets`, `[n, c]`):

        logit = ||x - q||^2 - ||x - p||^2 = 2 x.(p - q) - (||p||^2 - ||q||^2)

    positive when `x` is nearer the positives. A label without negatives takes q = 0 (the origin); one
    without positives (a cross-validation fold may lack them) gets weight 0 and bias -1: never applies.
    `seen` (0/1, `[n, c]`): only these (example, label) entries count (default: all).
    """
    mask = torch.ones_like(targets) if seen is None else (seen > 0).to(targets.dtype)
    positives, negatives = targets * mask, (1.0 - targets) * mask  # [n, c]
    p = class_prototypes(embeddings, positives, targets.shape[1])  # [c, dim]; zero without positives
    q = class_prototypes(embeddings, negatives, targets.shape[1])  # zero (the origin) without negatives
    has_pos = positives.sum(dim=0) > 0
    weight = torch.where(has_pos.unsqueeze(1), 2.0 * (p - q), torch.zeros_like(p))
    bias = torch.where(has_pos, (q * q).sum(dim=1) - (p * p).sum(dim=1), -torch.ones_like(has_pos, dtype=p.dtype))
    return HeadTensors(weight=weight, bias=bias)


def support_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The inner loop's loss, scaled so that a label row's gradient does not shrink as labels are added.

    Single-label (`targets` `[n]` class indices): mean cross-entropy times `c`; for a batch of problems (`logits`
    `[b, n, c]`, `weights` `[b, n]` summing to 1 per problem) the sum over problems of their weighted means.
    Multi-label (`targets` `[n, c]` multi-hot): `sum(weights * sigmoid cross-entropy)` with `weights` `[n, c]`
    defaulting to `1 / n`: summed over labels, averaged over examples (= the mean over all `n * c` entries times
    `c`, the same scaling).
    """
    n_classes = logits.shape[-1]
    if logits.ndim == 3:  # a batch of problems `[b, n, c]`; `weights` `[b, n]`: each problem's row weights
        entropy = F.cross_entropy(logits.transpose(1, 2), targets.expand(logits.shape[0], -1), reduction="none")
        return (entropy * weights).sum() * n_classes
    if targets.ndim == 2:
        if weights is None:
            return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype)) * n_classes
        entries = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
        return (weights * entries).sum()
    return F.cross_entropy(logits, targets) * n_classes


def information_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mutual-information regulariser on unlabeled texts' logits `[m, c]` (TIM, Boudiaf et al. 2020), times `c`
    like `support_loss`:

        c * (H(Y|X) - H(Y)) = c * (mean_i H(p_i) - H(mean_i p_i))

    Low when each text is predicted confidently (small conditional entropy) while the texts spread over the
    labels (large marginal entropy): it moves decision boundaries into the gaps between clusters of traffic.
    A batch of problems' logits `[b, m, c]` gives the sum of their terms.
    """
    n_classes = logits.shape[-1]
    log_p = F.log_softmax(logits, dim=-1)
    p = log_p.exp()
    conditional = -(p * log_p).sum(dim=-1).mean(dim=-1)
    marginal = p.mean(dim=-2)
    return n_classes * (conditional + (marginal * marginal.clamp_min(1e-12).log()).sum(dim=-1)).sum()


def head_logits(embeddings: torch.Tensor, head: HeadTensors, scale: torch.Tensor | float) -> torch.Tensor:
    """Scaled logits `[n, n_classes]` (a batch of heads: `[b, n, n_classes]`)."""
    return scale * linear_logits(embeddings, head.weight, head.bias, head.norm_gain, head.norm_shift)


def adapt_head(
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    n_classes: int,
    params: InnerLoopParams,
    differentiable: bool,
    init: str | HeadTensors = "prototype",
    weights: torch.Tensor | None = None,
    unlabeled: torch.Tensor | None = None,
    subsets: torch.Tensor | None = None,
) -> HeadTensors:
    """Prototype init (or `init="zero"`, plain MAML, or a given head, e.g. a meta-network's), then `params.steps`
    SGD steps on the support loss.

    `targets`: class indices `[n]` (single-label: softmax head, nearest-prototype init) or multi-hot
    `[n, n_classes]` (multi-label: one-vs-rest sigmoid head, `one_vs_rest_head` init). Multi-label
    `weights` `[n, n_classes]` weigh each (example, label) entry of the loss (see `support_loss`); an entry
    of weight 0 is unseen, by the init too. Label columns never interact, so several heads fitted on
    different subsets of the examples (cross-validation folds) can run as one head with more columns.

    The support loss (`support_loss`) is the mean cross-entropy times `n_classes`: a class row's gradient
    does not shrink as labels are added, so one learning rate fits 5-way and 300-way tasks alike (with the
    plain mean, 50 steps at a rate tuned for 77 labels overfit 5-way tasks: 93.6 % vs 96.3 % on BANKING77).

    Single-label with `unlabeled` embeddings `[m, dim]` (a tenant's traffic): each step's loss adds
    `params.unlabeled_weight * information_loss(logits of unlabeled)`, the transductive term of TIM; the init stays the
    support set's.

    Single-label with `subsets` `[b, n]` (0/1): b heads fitted at once, head j on the rows where `subsets[j]` is 1
    (its loss the mean over them; e.g. cross-validation folds, with and without some rows), each exactly the head
    `adapt_head` fits on those rows alone; every tensor of the result has a leading dimension b.

    With `params.lr_norm` set, the steps also adapt a last-layer norm (gain from 1, shift from 0;
    see `HeadTensors`): "head + last-layer norms".

    With `differentiable=True` the result keeps the graph back to `embeddings` and to the
    tensors in `params` (MAML / Proto-MAML / Meta-SGD). With `False` each step is first-order
    and detached, which is what serving needs.
    """
    with torch.enable_grad():
        transductive = unlabeled is not None and unlabeled.shape[0] > 0 and targets.ndim == 1
        if not differentiable:
            embeddings = embeddings.detach().clone()
            unlabeled = unlabeled.detach().clone() if transductive and unlabeled is not None else None
        problems = () if subsets is None else (subsets.shape[0],)
        if subsets is not None:
            if targets.ndim != 1 or weights is not None:
                raise ValueError("subsets fit single-label heads, weighted by their own rows only")
            weights = subsets / subsets.sum(dim=1, keepdim=True).clamp(min=1)  # each problem's mean over its rows
        if isinstance(init, HeadTensors):
            start = HeadTensors(init.weight, init.bias)
        elif init == "prototype" and targets.ndim == 2:
            start = one_vs_rest_head(embeddings, targets, weights)
        elif init == "prototype":
            start = prototype_head(embeddings, targets, n_classes, subsets)
        elif init == "zero":
            weight = embeddings.new_zeros(*problems, n_classes, embeddings.shape[1])
            start = HeadTensors(weight, embeddings.new_zeros(*problems, n_classes))
        else:
            raise ValueError(f"unknown head init {init!r}")
        fast = [start.weight, start.bias]
        if params.adapts_norm:
            dim = embeddings.shape[1]
            fast += [embeddings.new_ones(*problems, dim), embeddings.new_zeros(*problems, dim)]
        if not differentiable:
            fast = [p.detach().requires_grad_() for p in fast]
        else:
            fast = [p if p.requires_grad else p.detach().requires_grad_() for p in fast]
        if params.steps == 0:
            return HeadTensors(*fast)

        module = _LinearHead(n_classes, embeddings.shape[1], params.adapts_norm, problems).to(embeddings.device)
        groups = [{"params": [module.weight]}, {"params": [module.bias]}]
        lrs = [params.lr_weight, params.lr_bias]
        if params.lr_norm is not None:
            groups += [{"params": [module.norm_gain]}, {"params": [module.norm_shift]}]
            lrs += [params.lr_norm / n_classes] * 2  # shared by all classes: a step on the mean CE
        optimizer = torch.optim.SGD(groups, lr=1.0)
        override = {"lr": lrs}
        with higher.innerloop_ctx(module, optimizer, override=override, track_higher_grads=differentiable) as (
            fmodel,
            diffopt,
        ):
            scale = params.scale
            for _ in range(params.steps):
                logits = scale * fmodel(embeddings, params=fast)
                loss = support_loss(logits, targets, weights)
                if transductive:
                    loss = loss + params.unlabeled_weight * information_loss(scale * fmodel(unlabeled, params=fast))
                fast = diffopt.step(loss, params=fast)
    if not differentiable:
        fast = [p.detach() for p in fast]
    return HeadTensors(*fast)
