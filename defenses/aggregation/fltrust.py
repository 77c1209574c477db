"""FLTrust: the peer's own update is the root of trust."""
from __future__ import annotations

import torch

from defenses.base import Defense
from defenses.aggregation.loss_filters import drop_nonfinite
from fedsim.registry import register


def cosine_to(reference: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each row of ``updates [k, n]`` with ``reference [n]``;
    0 where either vector is zero."""
    ref_norm = reference.norm()
    norms = updates.norm(dim=1)
    dots = updates @ reference
    denominator = norms * ref_norm
    return torch.where(denominator > 0, dots / denominator.clamp(min=torch.finfo(dots.dtype).tiny),
                       torch.zeros_like(dots))


def trust_scores(root_update: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
    """``TS_j = ReLU(cos(g_j, g_0))`` for flattened ``updates [k, n]``, ``root_update [n]``."""
    return torch.relu(cosine_to(root_update, updates))


def fltrust_update(root_update: torch.Tensor, updates: torch.Tensor):
    """``sum_j TS_j (||g_0|| / ||g_j||) g_j / sum_j TS_j``, or ``None`` when every
    ``TS_j`` is 0 (the formula is undefined). Flattened float64 inputs."""
    scores = trust_scores(root_update, updates)
    total = scores.sum()
    if not total > 0:
        return None
    norms = updates.norm(dim=1)
    # TS_j > 0 implies ||g_j|| > 0, so the division is safe where it matters.
    rescaled = updates * (root_update.norm() / norms.clamp(min=torch.finfo(norms.dtype).tiny))[:, None]
    return (scores[:, None] * rescaled).sum(dim=0) / total


@register("defenses", "fltrust")
class FLTrust(Defense):
    """FLTrust (Cao, Fang, Liu, Gong 2021, "FLTrust: Byzantine-robust Federated
    Learning via Trust Bootstrapping", NDSS), the peer playing the server.

    With ``w = ctx.previous_head`` (the head before local training):

    - root update ``g_0 = own - w``; received updates ``g_j = x_j - w``;
    - trust score ``TS_j = ReLU(cos(g_j, g_0))``;
    - magnitude normalisation ``g_j' = (||g_0|| / ||g_j||) g_j``;
    - ``merged = w + sum_j TS_j g_j' / sum_j TS_j``.

    Choices: as in the paper, ``g_0`` is only the reference and is not itself one of
    the averaged updates (the server learning rate is 1). When every ``TS_j`` is 0
    (every update at 90 degrees or more from ``g_0``, ``g_0 = 0``, or nothing
    finite received) the peer keeps its own head ``own = w + g_0``. Non-finite
    received heads are dropped first. Computed in float64, returned in
    ``own.dtype``. No arguments.
    """

    name = "fltrust"
    needs_context = True

    def aggregate(self, own, received, ctx=None):
        if ctx is None or ctx.previous_head is None:
            raise ValueError("fltrust needs a PeerContext with previous_head")
        received = drop_nonfinite(received)
        base = ctx.previous_head.double()
        root_update = (own.double() - base).flatten()
        updates = (received.double() - base).flatten(1)
        update = fltrust_update(root_update, updates)
        if update is None:
            return own.clone()
        return (base + update.view_as(base)).to(own.dtype)
