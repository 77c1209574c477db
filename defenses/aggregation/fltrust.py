"""FLTrust: the peer's own update is the root of trust."""
from __future__ import annotations

import torch

from defenses.base import Defense
from fedsim import functional as F
from fedsim.registry import register


def trust_scores(root_update: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
    """``TS_j = ReLU(cos(g_j, g_0))`` for flattened ``updates [k, n]``, ``root_update [n]``."""
    return torch.relu(F.cosine_similarity(updates, root_update))


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
    """FLTrust: weigh each update by its cosine with the peer's own update.
    Cao, Fang, Liu, Gong 2021, "FLTrust: Byzantine-robust Federated Learning via Trust
    Bootstrapping", NDSS (the peer playing the server).

    With ``w = ctx.previous_head`` (the head before local training):

    - root update ``g_0 = own - w``; received updates ``g_j = x_j - w``;
    - trust score ``TS_j = ReLU(cos(g_j, g_0))`` (:func:`fedsim.functional.cosine_similarity`);
    - magnitude normalisation ``g_j' = (||g_0|| / ||g_j||) g_j``;
    - ``merged = w + sum_j TS_j g_j' / sum_j TS_j``.

    The rule has no parameters.

    Notes
    -----
    As in the paper, ``g_0`` is only the reference and is not itself one of the
    averaged updates (the server learning rate is 1). When every ``TS_j`` is 0 (every
    update at 90 degrees or more from ``g_0``, ``g_0 = 0``, or nothing finite received)
    the peer keeps its own head ``own = w + g_0``. Non-finite received heads are
    dropped first. Computed in float64, returned in ``own.dtype``.

    References
    ----------
    .. [1] X. Cao, M. Fang, J. Liu, N. Z. Gong, "FLTrust: Byzantine-robust federated
       learning via trust bootstrapping", NDSS 2021.

    Examples
    --------
    >>> from fedsim.examples import example_context, example_heads, rounded
    >>> own, received = example_heads()  # previous_head is zero: heads are updates
    >>> rounded(FLTrust().aggregate(own, received, example_context()))  # outliers: cos < 0
    tensor([[0.9900, 0.0000, 0.0000],
            [0.0000, 0.9900, 0.0000]])
    """

    name = "fltrust"
    parameters = {}
    needs_context = True

    def aggregate(self, own, received, ctx=None):
        if ctx is None or ctx.previous_head is None:
            raise ValueError("fltrust needs a PeerContext with previous_head")
        received = F.drop_nonfinite(received)
        base = ctx.previous_head.double()
        root_update = (own.double() - base).flatten()
        updates = (received.double() - base).flatten(1)
        update = fltrust_update(root_update, updates)
        if update is None:
            return own.clone()
        return (base + update.view_as(base)).to(own.dtype)
