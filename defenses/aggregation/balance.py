"""BALANCE: accept the neighbours within a shrinking distance of the own head."""
from __future__ import annotations

import math
from typing import Optional

import torch

from defenses.base import Defense
from defenses.aggregation.loss_filters import blend_with_own
from fedsim import functional as F
from fedsim.params import Interval
from fedsim.registry import register


def balance_threshold(own: torch.Tensor, gamma: float, kappa: float, progress: float) -> float:
    """``gamma * exp(-kappa * progress) * ||own||`` with ``progress = lambda(t) = t / T``."""
    return gamma * math.exp(-kappa * progress) * float(own.double().norm())


def balance_accepted(own: torch.Tensor, received: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boolean ``[k]``: ``||own - x_j|| <= threshold`` (distances in float64)."""
    return F.distances_to(own, received) <= threshold


@register("defenses", "balance")
class Balance(Defense):
    """BALANCE: accept the received heads within a shrinking distance of the own head.
    Fang, Zhang, Hairi, Khanduri, Liu, Lu, Liu, Gong 2024, "Byzantine-Robust
    Decentralized Federated Learning", ACM CCS.

    Peer ``i`` accepts a received head ``x_j`` when

        ``||x_i - x_j|| <= gamma * exp(-kappa * lambda(t)) * ||x_i||``,  ``lambda(t) = t / T``

    and merges ``alpha x_i + (1 - alpha) mean_{accepted} x_j`` (its own head when
    nothing is accepted or every received head is non-finite). ``t`` is ``ctx.round``.

    Parameters
    ----------
    gamma : float > 0, default 2.0
        Threshold scale. The paper's default 0.3 is a distance relative to the norm of
        a whole model that all peers start from; here peers exchange only output
        layers trained from a random head, whose distances are of the order of their
        norms: on ``scenarios/studies/per_peer_f.yaml`` (2-class shards, 6-regular, no
        attack) the ratio ``||x_i - x_j|| / ||x_i||`` of honest neighbours has median
        1.39 (90th percentile 1.96) in round 1 and 0.28 (0.53) in round 30, so 0.3
        accepts almost no neighbour and the rule equals local training. 2.0 makes the
        decaying threshold ``2 exp(-t/T)`` (1.93 in round 1, 0.74 in round 30) accept
        about nine honest neighbours in ten throughout, while a head of Gaussian noise
        (std 1) lies tens of norms away. ``gamma=0.3`` restores the paper's value.
    kappa : float >= 0, default 1
        Decay rate of the threshold (the paper's).
    alpha : float in [0, 1], default 0.5
        Weight of the own head in the blend (the paper's).
    total_rounds : int >= 1, default None
        ``T``, the scenario's ``rounds``.

    Notes
    -----
    With ``total_rounds=None`` (or ``ctx=None``) ``lambda(t) = 0``: a constant threshold
    ``gamma ||x_i||`` (no decay).

    References
    ----------
    .. [1] M. Fang, Z. Zhang, Hairi, P. Khanduri, J. Liu, S. Lu, Y. Liu, N. Gong,
       "Byzantine-robust decentralized federated learning", ACM CCS 2024.

    Examples
    --------
    >>> from fedsim.examples import example_context, example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> Balance(total_rounds=10).aggregate(own, received, example_context())
    tensor([[1., 0., 0.],
            [0., 1., 0.]])
    """

    name = "balance"
    needs_context = True
    parameters = {"gamma": Interval(float, 0, None, closed="neither"), "kappa": Interval(float, 0, None),
                  "alpha": Interval(float, 0, 1), "total_rounds": [None, Interval(int, 1, None)]}

    def __init__(self, gamma: float = 2.0, kappa: float = 1.0, alpha: float = 0.5,
                 total_rounds: Optional[int] = None):
        self.gamma, self.kappa, self.alpha = float(gamma), float(kappa), float(alpha)
        self.total_rounds = total_rounds

    def progress(self, ctx) -> float:
        """``lambda(t) = t / T``; 0 without ``total_rounds`` or ``ctx``."""
        if self.total_rounds is None or ctx is None:
            return 0.0
        return ctx.round / self.total_rounds

    def aggregate(self, own, received, ctx=None):
        received = F.drop_nonfinite(received)
        threshold = balance_threshold(own, self.gamma, self.kappa, self.progress(ctx))
        return blend_with_own(own, received[balance_accepted(own, received, threshold)], self.alpha)
