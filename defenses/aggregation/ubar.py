"""UBAR: distance filter, then loss filter on a mini-batch, then blend with the own head."""
from __future__ import annotations

from typing import Optional

import torch

from defenses.base import Defense
from defenses.aggregation.loss_filters import (blend_with_own, check_rho_alpha, drop_nonfinite,
                                   require_training_data, two_stage_accepted)
from fedsim.registry import register


def sample_batch(features: torch.Tensor, labels: torch.Tensor, batch_size: Optional[int],
                 generator: Optional[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
    """A uniform mini-batch without replacement (all samples when ``batch_size`` is
    ``None`` or not smaller than the data)."""
    m = features.shape[0]
    if batch_size is None or batch_size >= m:
        return features, labels
    if generator is None:
        raise ValueError("ubar needs ctx.rng to draw its mini-batch")
    rows = torch.randperm(m, generator=generator)[:batch_size]
    return features[rows], labels[rows]


@register("defenses", "ubar")
class UBAR(Defense):
    """UBAR (Guo et al. 2021, "Byzantine-resilient Decentralized Stochastic Gradient
    Descent", IEEE TCSVT; the journal form of Mozi).

    Peer ``i`` with own head ``x_i`` and received heads ``x_j`` (non-finite ones
    dropped first) draws a mini-batch ``xi_i`` of its own training samples
    (``batch_size`` rows, without replacement, with ``ctx.rng``), then

    1. ``N_s = argmin_{S, |S| = ceil(rho k)} sum_{j in S} ||x_i - x_j||``;
    2. ``N_r = {j in N_s : l(x_j; xi_i) <= l(x_i; xi_i)}``, and if ``N_r`` is empty,
       ``N_r = {argmin_{j in N_s} l(x_j; xi_i)}`` (the paper's rule: keep the
       best candidate);
    3. ``merged = alpha x_i + (1 - alpha) mean_{j in N_r} x_j``.

    The paper's gradient step ``- lambda grad F(x_i; xi_i)`` is the engine's local
    training, done before aggregation, so ``x_i`` is the freshly trained head.

    Defaults: ``rho = 0.5`` (the paper sets it to the honest share of neighbours),
    ``alpha = 0.5``, ``batch_size = 32`` (``None`` = every training sample).
    """

    name = "ubar"
    needs_context = True

    def __init__(self, rho: float = 0.5, alpha: float = 0.5, batch_size: Optional[int] = 32):
        self.rho, self.alpha = check_rho_alpha(rho, alpha)
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or null, got {batch_size!r}")
        self.batch_size = batch_size

    def aggregate(self, own, received, ctx=None):
        features, labels = require_training_data(ctx, "ubar")
        received = drop_nonfinite(received)
        if received.shape[0] == 0:
            return own.clone()
        features, labels = sample_batch(features, labels, self.batch_size, ctx.rng)
        accepted = two_stage_accepted(own, received, features, labels, ctx.loss, self.rho,
                                      keep_best_if_none=True)
        return blend_with_own(own, received[accepted], self.alpha)
