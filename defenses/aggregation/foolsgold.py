"""FoolsGold: down-weight senders whose update histories look alike (sybils)."""
from __future__ import annotations

import torch

from defenses.base import Defense
from fedsim import functional as F
from fedsim.params import Interval
from fedsim.registry import register

HISTORY_KEY = "foolsgold_history"
# 1 - cos below this counts as identical histories (angle under about 4.5e-5 rad).
IDENTICAL_TOLERANCE = 1e-9


def foolsgold_weights(histories: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
    """FoolsGold's per-sender weights in ``[0, 1]`` from their histories ``[n, d]``.

    1. ``cs_ij = cos(H_i, H_j)`` for ``i != j``; ``v_i = max(0, max_{j != i} cs_ij)``;
    2. pardoning: ``cs_ij *= v_i / v_j`` wherever ``v_j > v_i``;
    3. ``a_i = 1 - max_{j != i} cs_ij``, clipped to ``[0, 1]``;
    4. ``a_i = a_i / max_j a_j``;
    5. ``a_i = kappa (ln(a_i / (1 - a_i)) + 0.5)``, clipped to ``[0, 1]`` (``a_i = 1``
       gives ``+inf`` -> 1, ``a_i = 0`` gives ``-inf`` -> 0).

    The clamp ``v_i >= 0`` is the reference's: ``DistributedML/FoolsGold``
    ``deep-fg/fg/foolsgold.py`` (lines 10-11) and ``ML/code/logistic_aggregator.py``
    (``foolsgold``) subtract the identity from the cosine matrix, so the zero diagonal
    enters ``maxcs = max(cs, axis=1)``. Without it a sender whose history points away
    from every other one (``v_i < 0``) would have its similarities multiplied by a
    negative ratio, look maximally similar and get weight 0 instead of 1. The
    reference's ``wv == 1 -> 0.99`` before the logit gives ``ln 99 + 0.5 > 1``, i.e.
    weight 1, as ``+inf`` does here (with ``kappa = 1``).

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
    cs = F.cosine_similarity(histories, histories)
    neg_inf = torch.tensor(-torch.inf, dtype=cs.dtype)
    v = torch.where(off_diagonal, cs, neg_inf).max(dim=1).values.clamp(min=0.0)
    pardon = off_diagonal & (v[None, :] > v[:, None])
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
    """FoolsGold: down-weight senders whose update histories look alike (sybils).
    Fung, Yoon, Beschastnikh 2020, "The Limitations of Federated Learning in Sybil
    Settings", RAID (the peer playing the server).

    Each sender's update as seen from this peer is ``g_j = x_j - ctx.previous_head``;
    the peer keeps its history ``H_j = sum over rounds of g_j`` in
    ``ctx.state["foolsgold_history"][sender id]`` (float64, flattened). Weights
    ``a_j`` of this round's senders come from :func:`foolsgold_weights` (cosine
    similarity of histories, pardoning, rescaling, logit with confidence ``kappa``)
    and

        ``merged = (own + sum_j a_j x_j) / (1 + sum_j a_j)``,

    i.e. ``previous_head`` plus the weighted average of the updates, the peer's own
    update ``g_0 = own - previous_head`` taking weight 1 (the largest FoolsGold weight).

    Parameters
    ----------
    kappa : float > 0, default 1
        The paper's confidence parameter of the logit.

    Notes
    -----
    The peer trusts itself and is not in the similarity pool (otherwise an honest
    neighbour that resembles the peer would make it discard its own training); the
    paper's optional feature-importance weighting of output-layer rows is not applied
    (every coordinate counts the same); the weights only compare senders present this
    round. Non-finite received heads are dropped before they touch the history.

    References
    ----------
    .. [1] C. Fung, C. J. M. Yoon, I. Beschastnikh, "The limitations of federated learning
       in sybil settings", RAID 2020.

    Examples
    --------
    >>> from fedsim.examples import example_context, example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> foolsgold_weights(received.flatten(1).double())  # the two identical copies get 0
    tensor([0.2308, 1.0000, 0.0000, 0.0000, 0.0000, 0.0000], dtype=torch.float64)
    >>> rounded(FoolsGold().aggregate(own, received, example_context()))
    tensor([[ 0.9700,  0.0400,  0.0100],
            [ 0.0400,  1.0300, -0.0400]])
    """

    name = "foolsgold"
    needs_context = True
    parameters = {"kappa": Interval(float, 0, None, closed="neither")}

    def __init__(self, kappa: float = 1.0):
        self.kappa = float(kappa)

    def aggregate(self, own, received, ctx=None):
        if ctx is None or ctx.previous_head is None or ctx.sender_ids is None:
            raise ValueError("foolsgold needs a PeerContext with previous_head and sender_ids")
        if len(ctx.sender_ids) != received.shape[0]:
            raise ValueError(f"foolsgold: {len(ctx.sender_ids)} sender ids for "
                             f"{received.shape[0]} received heads")
        finite = F.finite_rows(received)
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
