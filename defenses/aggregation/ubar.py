"""UBAR: distance filter, then loss filter on a mini-batch, then blend with the own head."""
from __future__ import annotations

from typing import Optional

from defenses.base import Defense
from defenses.aggregation.loss_filters import LOSS_REFERENCE, RHO_ALPHA, two_stage_merge
from fedsim.params import Interval
from fedsim.registry import register


@register("defenses", "ubar")
class UBAR(Defense):
    """UBAR: Mozi's two-stage filter on a mini-batch, keeping the best candidate if none passes.
    Guo et al. 2021, "Byzantine-resilient Decentralized Stochastic Gradient Descent",
    IEEE TCSVT (the journal form of Mozi).

    Peer ``i`` with own head ``x_i`` and received heads ``x_j`` (non-finite ones
    dropped first) draws a mini-batch ``xi_i`` of its own training samples
    (``batch_size`` rows, without replacement, with ``ctx.rng``), then

    1. ``N_s = argmin_{S, |S| = ceil(rho k)} sum_{j in S} ||x_{i,trained} - x_j||``;
    2. ``N_r = {j in N_s : l(x_j; xi_i) <= l(x_i; xi_i)}``, and if ``N_r`` is empty,
       ``N_r = {argmin_{j in N_s} l(x_j; xi_i)}`` (the paper's rule: keep the
       best candidate);
    3. ``merged = alpha x_i + (1 - alpha) mean_{j in N_r} x_j``.

    Parameters
    ----------
    rho : float in (0, 1], default 0.5
        Share of the received heads kept by distance (the paper sets it to the honest
        share of neighbours).
    alpha : float in [0, 1], default 0.5
        Weight of the own head in the blend.
    batch_size : int >= 1, default 32
        Size of the mini-batch; ``None``: every training sample.
    loss_reference : {"previous", "trained"}, default "previous"
        Which own head the losses are compared with (below).

    Notes
    -----
    The paper's gradient step ``- lambda grad F(x_i; xi_i)`` is the engine's local
    training, done before aggregation. In the paper the filter compares neighbours'
    losses with ``x_i`` before that step, so ``loss_reference="previous"`` (default)
    compares with ``ctx.previous_head``, the head before local training; ``"trained"``
    (the behaviour before) with the freshly trained head, which fits the peer's own
    data better and rejects more neighbours. Distances and the blend use the trained
    head.

    References
    ----------
    .. [1] S. Guo, T. Zhang, H. Yu, X. Xie, L. Ma, T. Xiang, Y. Liu, "Byzantine-resilient
       decentralized stochastic gradient descent", IEEE TCSVT 2022.
    .. [2] S. Guo, T. Zhang, X. Xie, L. Ma, T. Xiang, Y. Liu, "Towards Byzantine-resilient
       learning in decentralized systems", arXiv:2002.08569, 2020: Mozi, its first form.

    Examples
    --------
    >>> from fedsim.examples import example_context, example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> rounded(UBAR(rho=0.25).aggregate(own, received, example_context()))  # keeps 2 of 6
    tensor([[ 1.0000, -0.0200, -0.0200],
            [-0.0200,  1.0000,  0.0200]])
    """

    name = "ubar"
    needs_context = True
    parameters = {**RHO_ALPHA, "batch_size": [None, Interval(int, 1, None)], **LOSS_REFERENCE}

    def __init__(self, rho: float = 0.5, alpha: float = 0.5, batch_size: Optional[int] = 32,
                 loss_reference: str = "previous"):
        self.rho, self.alpha = float(rho), float(alpha)
        self.batch_size = batch_size
        self.loss_reference = loss_reference

    def aggregate(self, own, received, ctx=None):
        return two_stage_merge(own, received, ctx, "ubar", self.rho, self.alpha, self.batch_size,
                               "best", self.loss_reference)
