"""Pure tensor math shared by the two-stage filters of Mozi and UBAR (Guo et al.).

Stage 1 (distance): keep the ``ceil(rho * k)`` received heads nearest (Euclidean,
flattened) to the peer's own head. Stage 2 (performance): keep those whose loss on
the peer's own training samples is no larger than the own head's loss. The merge is
``alpha * own + (1 - alpha) * mean(accepted)``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from fedsim import functional as F
from fedsim.api import PeerContext
from fedsim.models.heads import get_head, head_logits
from fedsim.params import Interval, Options


def nearest_indices(distances: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` smallest distances, nearest first (ties: lower index first).

    Keeping the ``count`` nearest is the minimiser of ``sum_{j in S} d_j`` over all
    subsets ``S`` of that size (Mozi/UBAR stage 1).
    """
    return torch.sort(distances, stable=True).indices[:count]


ROUNDINGS = ("ceil", "floor")
FALLBACKS = ("own", "best", "nearest")
LOSS_REFERENCES = ("previous", "trained")


def selection_size(rho: float, k: int, rounding: str = "ceil") -> int:
    """``ceil(rho * k)`` (at least 1 when ``k > 0``) or ``floor(rho * k)`` (may be 0).

    If at least a fraction ``rho`` of the ``k`` neighbours is honest, at least
    ``ceil(rho * k)`` of them are, so the ceiling never asks for more than exist. The
    floor is what the public Mozi implementation takes (``int(self.rho *
    len(neighbor_inputs))``, epfml/byzantine-robust-decentralized-optimizer
    ``codes/aggregator.py``, ``Mozi.__call__``).
    """
    if k == 0:
        return 0
    if rounding == "floor":
        return min(k, math.floor(rho * k + 1e-9))
    return max(1, min(k, math.ceil(rho * k - 1e-9)))


def head_losses(heads: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                loss: str) -> torch.Tensor:
    """Mean loss of each head on ``(features, labels)``: ``[k, C, P] -> [k]``.

    NaN losses (overflowing logits) are returned as ``+inf`` so that a filter
    ``loss_j <= loss_own`` rejects them and an ``argmin`` never picks them.
    """
    head_fn = get_head(loss)
    logits = head_logits(heads, features)                       # [k, m, C]
    per_sample = head_fn.loss(logits, labels.expand(heads.shape[0], -1))
    losses = per_sample.double().mean(dim=-1)
    return torch.nan_to_num(losses, nan=math.inf)


def blend_with_own(own: torch.Tensor, accepted: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * own + (1 - alpha) * mean(accepted)``; ``own`` when nothing was accepted."""
    if accepted.shape[0] == 0:
        return own.clone()
    return alpha * own + (1.0 - alpha) * accepted.mean(dim=0)


def two_stage_accepted(own: torch.Tensor, received: torch.Tensor, features: torch.Tensor,
                       labels: torch.Tensor, loss: str, rho: float, if_none: str,
                       loss_reference: Optional[torch.Tensor] = None,
                       rounding: str = "ceil") -> torch.Tensor:
    """Indices into ``received`` that pass both stages.

    Stage 1: ``N_s = the selection_size(rho, k, rounding) received heads nearest to own``.
    Stage 2: ``N_r = {j in N_s : loss(x_j) <= loss(reference)}``, ``reference`` being
    ``loss_reference`` (``own`` when ``None``). If ``N_r`` is empty: ``if_none="best"``
    (UBAR) keeps ``argmin_{j in N_s} loss(x_j)``; ``"nearest"`` (the public Mozi code)
    keeps the received head nearest to own; ``"own"`` keeps nothing (the caller keeps
    its own head).
    """
    k = received.shape[0]
    if k == 0:
        return torch.zeros(0, dtype=torch.long)
    distances = F.distances_to(own, received)
    candidates = nearest_indices(distances, selection_size(rho, k, rounding))
    candidate_losses = head_losses(received[candidates], features, labels, loss)
    reference = own if loss_reference is None else loss_reference
    reference_loss = head_losses(reference.unsqueeze(0), features, labels, loss)[0]
    passed = candidates[candidate_losses <= reference_loss]
    if passed.numel() == 0 and if_none == "best" and candidates.numel():
        best = int(torch.argmin(candidate_losses))
        if math.isfinite(float(candidate_losses[best])):
            passed = candidates[best:best + 1]
    if passed.numel() == 0 and if_none == "nearest":
        passed = nearest_indices(distances, 1)
    return passed


def loss_reference_head(own: torch.Tensor, ctx, which: str) -> torch.Tensor:
    """The head candidates' losses are compared with: ``ctx.previous_head`` (the head
    before this round's local training, the ``x_i`` of Mozi and UBAR, whose gradient
    step comes after the filter) for ``"previous"``, ``own`` (trained) for ``"trained"``."""
    if which == "previous":
        if ctx is None or ctx.previous_head is None:
            raise ValueError("loss_reference='previous' needs a PeerContext with previous_head")
        return ctx.previous_head
    return own


def require_training_data(ctx: Optional[PeerContext], rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ctx.train_features, ctx.train_labels)``; ``ValueError`` when there are none."""
    if ctx is None or ctx.train_features is None or ctx.train_labels is None \
            or ctx.train_features.shape[0] == 0:
        raise ValueError(f"{rule} needs a PeerContext with the peer's training samples "
                         "(train_features, train_labels)")
    return ctx.train_features, ctx.train_labels


def sample_batch(features: torch.Tensor, labels: torch.Tensor, batch_size: Optional[int],
                 generator: Optional[torch.Generator], rule: str = "ubar") -> tuple[torch.Tensor, torch.Tensor]:
    """A uniform mini-batch without replacement (all samples when ``batch_size`` is
    ``None`` or not smaller than the data)."""
    m = features.shape[0]
    if batch_size is None or batch_size >= m:
        return features, labels
    if generator is None:
        raise ValueError(f"{rule} needs ctx.rng to draw its mini-batch")
    rows = torch.randperm(m, generator=generator)[:batch_size]
    return features[rows], labels[rows]


def two_stage_merge(own: torch.Tensor, received: torch.Tensor, ctx: Optional[PeerContext], rule: str,
                    rho: float, alpha: float, batch_size: Optional[int], if_none: str,
                    loss_reference: str, rounding: str = "ceil") -> torch.Tensor:
    """Mozi / UBAR for one peer: drop the non-finite received heads (the own head when
    none is left), draw the mini-batch, run both stages (:func:`two_stage_accepted`)
    and blend the accepted heads with the own one."""
    features, labels = require_training_data(ctx, rule)
    received = F.drop_nonfinite(received)
    if received.shape[0] == 0:
        return own.clone()
    features, labels = sample_batch(features, labels, batch_size, ctx.rng, rule)
    accepted = two_stage_accepted(own, received, features, labels, ctx.loss, rho, if_none,
                                  loss_reference=loss_reference_head(own, ctx, loss_reference),
                                  rounding=rounding)
    return blend_with_own(own, received[accepted], alpha)


# The two arguments Mozi and UBAR share: the share of neighbours kept by distance and
# the weight of the own head in the blend.
RHO_ALPHA = {"rho": Interval(float, 0, 1, closed="right"), "alpha": Interval(float, 0, 1)}
LOSS_REFERENCE = {"loss_reference": Options(*LOSS_REFERENCES)}
