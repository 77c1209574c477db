"""FoolsGold: down-weight senders whose update histories look alike (sybils)."""
from __future__ import annotations

import torch

from defenses.base import Defense, finite_rows
from fedsim.registry import register

HISTORY_KEY = "foolsgold_history"
# 1 - cos below this counts as identical histories (angle under about 4.5e-5 rad).
IDENTICAL_TOLERANCE = 1e-9


def pairwise_cosine(vectors: torch.Tensor) -> torch.Tensor:
    """``[n, d] -> [n, n]`` cosine similarities; 0 where a vector is zero."""
    norms = vectors.norm(dim=1)
    unit = vectors / torch.where(norms > 0, norms, torch.ones_like(norms))[:, None]
    return unit @ unit.T


def foolsgold_weights(histories: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
    """FoolsGold's per-sender weights in ``[0, 1]`` from their histories ``[n, d]``.

    1. ``cs_ij = cos(H_i, H_j)`` for ``i != j``; ``v_i = max_{j != i} cs_ij``;
    2. pardoning: ``cs_ij *= v_i / v_j`` wherever ``v_j > v_i`` (and ``v_j > 0``);
    3. ``a_i = 1 - max_{j != i} cs_ij``, clipped to ``[0, 1]``;
    4. ``a_i = a_i / max_j a_j``;
    5. ``a_i = kappa (ln(a_i / (1 - a_i)) + 0.5)``, clipped to ``[0, 1]`` (``a_i = 1``
       gives ``+inf`` -> 1, ``a_i = 0`` gives ``-inf`` -> 0).

    A single sender gets weight 1. ``a_i`` below ``IDENTICAL_TOLERANCE`` after step 3
    counts as 0 (rounding noise of an exact twin); when every ``a_i`` is 0 (every
    sender has a parallel twin) step 4 is undefined and every weight is 0.
    """
    n = histories.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=histories.dtype)
    if n == 1:
        return torch.ones(1, dtype=histories.dtype)
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    cs = pairwise_cosine(histories)
    neg_inf = torch.tensor(-torch.inf, dtype=cs.dtype)
    v = torch.where(off_diagonal, cs, neg_inf).max(dim=1).values
    pardon = off_diagonal & (v[None, :] > v[:, None]) & (v[None, :] > 0)
    ratio = v[:, None] / torch.where(v > 0, v, torch.ones_like(v))[None, :]
    cs = torch.where(pardon, cs * ratio, cs)
    alpha = (1.0 - torch.where(off_diagonal, cs, neg_inf).max(dim=1).values).clamp(0.0, 1.0)
    # Rounding makes cos(H, H) 1 +- 1e-16; such a sender has an exact twin, alpha 0.
    alpha = torch.where(alpha < IDENTICAL_TOLERANCE, torch.zeros_like(alpha), alpha)
    top = alpha.max()
    if not top > 0:
        return torch.zeros(n, dtype=histories.dtype)
    alpha = alpha / top
    logit = kappa * (torch.log(alpha) - torch.log1p(-alpha) + 0.5)
    return torch.nan_to_num(logit, nan=0.0).clamp(0.0, 1.0)


@register("defenses", "foolsgold")
class FoolsGold(Defense):
    """FoolsGold (Fung, Yoon, Beschastnikh 2020, "The Limitations of Federated
    Learning in Sybil Settings", RAID), the peer playing the server.

    Each sender's update as seen from this peer is ``g_j = x_j - ctx.previous_head``;
    the peer keeps its history ``H_j = sum over rounds of g_j`` in
    ``ctx.state["foolsgold_history"][sender id]`` (float64, flattened). Weights
    ``a_j`` of this round's senders come from :func:`foolsgold_weights` (cosine
    similarity of histories, pardoning, rescaling, logit with confidence ``kappa``)
    and

        ``merged = (own + sum_j a_j x_j) / (1 + sum_j a_j)``,

    i.e. ``previous_head`` plus the weighted average of the updates, the peer's own
    update ``g_0 = own - previous_head`` taking weight 1 (the largest FoolsGold
    weight). Choices: the peer trusts itself and is not in the similarity pool
    (otherwise an honest neighbour that resembles the peer would make it discard its
    own training); the paper's optional feature-importance weighting of output-layer
    rows is not applied (every coordinate counts the same); the weights only compare
    senders present this round. Non-finite received heads are dropped before they
    touch the history.

    Defaults: ``kappa = 1`` (the paper's confidence parameter).
    """

    name = "foolsgold"
    needs_context = True

    def __init__(self, kappa: float = 1.0):
        if not float(kappa) > 0.0:
            raise ValueError(f"kappa must be > 0, got {kappa!r}")
        self.kappa = float(kappa)

    def aggregate(self, own, received, ctx=None):
        if ctx is None or ctx.previous_head is None or ctx.sender_ids is None:
            raise ValueError("foolsgold needs a PeerContext with previous_head and sender_ids")
        if len(ctx.sender_ids) != received.shape[0]:
            raise ValueError(f"foolsgold: {len(ctx.sender_ids)} sender ids for "
                             f"{received.shape[0]} received heads")
        finite = finite_rows(received) if received.shape[0] else torch.zeros(0, dtype=torch.bool)
        received = received[finite]
        senders = [int(s) for s, ok in zip(ctx.sender_ids, finite) if ok]
        if not senders:
            return own.clone()
        history = ctx.state.setdefault(HISTORY_KEY, {})
        updates = (received.double() - ctx.previous_head.double()).flatten(1)
        for sender, update in zip(senders, updates):
            history[sender] = history[sender] + update if sender in history else update.clone()
        weights = foolsgold_weights(torch.stack([history[s] for s in senders]), self.kappa)
        merged = own.double() + torch.tensordot(weights, received.double(), dims=1)
        return (merged / (1.0 + weights.sum())).to(own.dtype)
