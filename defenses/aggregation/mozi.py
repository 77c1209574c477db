"""Mozi: distance filter, then performance filter, then blend with the own head."""
from __future__ import annotations

from typing import Optional

from defenses.base import Defense
from defenses.aggregation.loss_filters import (FALLBACKS, LOSS_REFERENCE, RHO_ALPHA, ROUNDINGS,
                                               two_stage_merge)
from fedsim.params import Interval, Options
from fedsim.registry import register


@register("defenses", "mozi")
class Mozi(Defense):
    """Mozi: keep the nearest received heads that do no worse on own data, blend with own.
    Guo et al. 2021, "Towards Byzantine-resilient Learning in Decentralized Systems",
    arXiv:2002.08569.

    Peer ``i`` with own head ``x_i`` and received heads ``x_j`` (non-finite ones
    dropped first):

    1. distance stage: ``N_s = argmin_{S, |S| = s} sum_{j in S} ||x_i - x_j||``,
       i.e. the ``s`` received heads nearest to ``x_i`` (the trained head), with
       ``s = floor(rho k)`` (``selection="floor"``, default) or ``ceil(rho k)``;
    2. performance stage: ``N_r = {j in N_s : l(x_j; xi_i) <= l(x_i; xi_i)}`` where
       ``l`` is the head's mean loss on ``xi_i``, one mini-batch of ``batch_size`` of
       the peer's training samples drawn with ``ctx.rng`` (``None``: all of them), and
       ``x_i`` in the loss is ``ctx.previous_head``, the head before this round's local
       training (``loss_reference="previous"``; ``"trained"``: the trained head);
    3. ``merged = alpha x_i + (1 - alpha) mean_{j in N_r} x_j``.

    Parameters
    ----------
    rho : float in (0, 1], default 0.5
        Share of the received heads kept by distance (the paper sets rho to the share
        of honest neighbours; 0.5 assumes at most half are Byzantine).
    alpha : float in [0, 1], default 0.5
        Weight of the own head in the blend.
    batch_size : int >= 1, default 32
        Size of the mini-batch the losses are computed on; ``None``: every training
        sample.
    selection : {"floor", "ceil"}, default "floor"
        How ``rho k`` is rounded.
    if_none : {"nearest", "own", "best"}, default "nearest"
        When ``N_r`` is empty: keep the received head nearest to ``x_i``; keep the own
        head; or keep the candidate with the lowest loss (UBAR's rule).
    loss_reference : {"previous", "trained"}, default "previous"
        Which own head the losses are compared with.

    Notes
    -----
    Paper and code: the paper is silent on the rounding of ``rho k``, on the fall-back
    and on the batch; the defaults follow the public implementation, the Mozi
    aggregator of epfml/byzantine-robust-decentralized-optimizer ``codes/aggregator.py``
    (``Mozi.__call__``: one mini-batch from the worker's loader, ``ns =
    dist2i[: int(self.rho * len(neighbor_inputs))]``, ``if len(nr) == 0: nr =
    [dist2i[0][0]]``, losses of neighbours compared with ``local_inputs``, the model
    before the gradient step). The batch of 32 is that code's batch size. The behaviour
    before these defaults: ``batch_size=None, selection="ceil", if_none="own",
    loss_reference="trained"``.

    References
    ----------
    .. [1] S. Guo, T. Zhang, X. Xie, L. Ma, T. Xiang, Y. Liu, "Towards Byzantine-resilient
       learning in decentralized systems", arXiv:2002.08569, 2020.
    .. [2] S. Guo, T. Zhang, H. Yu, X. Xie, L. Ma, T. Xiang, Y. Liu, "Byzantine-resilient
       decentralized stochastic gradient descent", IEEE TCSVT 2022: UBAR, its journal form.

    Examples
    --------
    >>> from fedsim.examples import example_context, example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> rounded(Mozi().aggregate(own, received, example_context()))
    tensor([[ 1.0200, -0.0200,  0.0000],
            [-0.0200,  0.9800,  0.0200]])
    """

    name = "mozi"
    needs_context = True
    parameters = {**RHO_ALPHA, "batch_size": [None, Interval(int, 1, None)],
                  "selection": Options(*ROUNDINGS), "if_none": Options(*FALLBACKS), **LOSS_REFERENCE}

    def __init__(self, rho: float = 0.5, alpha: float = 0.5, batch_size: Optional[int] = 32,
                 selection: str = "floor", if_none: str = "nearest", loss_reference: str = "previous"):
        self.rho, self.alpha = float(rho), float(alpha)
        self.batch_size, self.selection, self.if_none = batch_size, selection, if_none
        self.loss_reference = loss_reference

    def aggregate(self, own, received, ctx=None):
        return two_stage_merge(own, received, ctx, "mozi", self.rho, self.alpha, self.batch_size,
                               self.if_none, self.loss_reference, self.selection)
