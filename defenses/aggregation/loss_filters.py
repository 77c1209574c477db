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

from defenses.base import finite_rows
from fedsim.engine.messages import PeerContext
from fedsim.models.heads import get_head, head_logits


def distances_to(own: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of each received head to ``own``: ``[k, C, P], [C, P] -> [k]``.

    Computed in float64 so that huge finite heads give a large distance, not inf.
    """
    return (received.double() - own.double()).flatten(1).norm(dim=1)


def nearest_indices(distances: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` smallest distances, nearest first (ties: lower index first).

    Keeping the ``count`` nearest is the minimiser of ``sum_{j in S} d_j`` over all
    subsets ``S`` of that size (Mozi/UBAR stage 1).
    """
    return torch.sort(distances, stable=True).indices[:count]


def selection_size(rho: float, k: int) -> int:
    """``ceil(rho * k)``, at least 1 when ``k > 0``.

    If at least a fraction ``rho`` of the ``k`` neighbours is honest, at least
    ``ceil(rho * k)`` of them are, so the ceiling never asks for more than exist.
    """
    if k == 0:
        return 0
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
                       labels: torch.Tensor, loss: str, rho: float,
                       keep_best_if_none: bool) -> torch.Tensor:
    """Indices into ``received`` that pass both stages.

    Stage 1: ``N_s = the ceil(rho k) received heads nearest to own``.
    Stage 2: ``N_r = {j in N_s : loss(x_j) <= loss(own)}``. If ``N_r`` is empty and
    ``keep_best_if_none`` (UBAR), ``N_r = {argmin_{j in N_s} loss(x_j)}``; otherwise
    (Mozi) it stays empty and the caller keeps its own head.
    """
    k = received.shape[0]
    if k == 0:
        return torch.zeros(0, dtype=torch.long)
    candidates = nearest_indices(distances_to(own, received), selection_size(rho, k))
    candidate_losses = head_losses(received[candidates], features, labels, loss)
    own_loss = head_losses(own.unsqueeze(0), features, labels, loss)[0]
    passed = candidates[candidate_losses <= own_loss]
    if passed.numel() == 0 and keep_best_if_none:
        best = int(torch.argmin(candidate_losses))
        if math.isfinite(float(candidate_losses[best])):
            passed = candidates[best:best + 1]
    return passed


def require_training_data(ctx: Optional[PeerContext], rule: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ctx.train_features, ctx.train_labels)``; ``ValueError`` when there are none."""
    if ctx is None or ctx.train_features is None or ctx.train_labels is None \
            or ctx.train_features.shape[0] == 0:
        raise ValueError(f"{rule} needs a PeerContext with the peer's training samples "
                         "(train_features, train_labels)")
    return ctx.train_features, ctx.train_labels


def check_rho_alpha(rho: float, alpha: float) -> tuple[float, float]:
    if not 0.0 < float(rho) <= 1.0:
        raise ValueError(f"rho must be in (0, 1], got {rho!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    return float(rho), float(alpha)


def drop_nonfinite(received: torch.Tensor) -> torch.Tensor:
    """The received heads that hold only finite values."""
    return received[finite_rows(received)] if received.shape[0] else received
