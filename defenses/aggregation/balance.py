"""BALANCE: accept the neighbours within a shrinking distance of the own head."""
from __future__ import annotations

import math
from typing import Optional

import torch

from defenses.base import Defense
from defenses.aggregation.loss_filters import blend_with_own, drop_nonfinite
from fedsim.registry import register


def balance_threshold(own: torch.Tensor, gamma: float, kappa: float, progress: float) -> float:
    """``gamma * exp(-kappa * progress) * ||own||`` with ``progress = lambda(t) = t / T``."""
    return gamma * math.exp(-kappa * progress) * float(own.double().norm())


def balance_accepted(own: torch.Tensor, received: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boolean ``[k]``: ``||own - x_j|| <= threshold`` (distances in float64)."""
    distances = (received.double() - own.double()).flatten(1).norm(dim=1)
    return distances <= threshold


@register("defenses", "balance")
class Balance(Defense):
    """BALANCE (Fang, Zhang, Hairi, Khanduri, Liu, Lu, Liu, Gong 2024,
    "Byzantine-Robust Decentralized Federated Learning", ACM CCS).

    Peer ``i`` accepts a received head ``x_j`` when

        ``||x_i - x_j|| <= gamma * exp(-kappa * lambda(t)) * ||x_i||``,  ``lambda(t) = t / T``

    and merges ``alpha x_i + (1 - alpha) mean_{accepted} x_j`` (its own head when
    nothing is accepted or every received head is non-finite).

    ``t`` is ``ctx.round`` and ``T`` the argument ``total_rounds`` (the scenario's
    ``rounds``). With ``total_rounds=None`` (or ``ctx=None``) ``lambda(t) = 0``: a
    constant threshold ``gamma ||x_i||`` (no decay).

    Defaults (the paper's): ``gamma = 0.3``, ``kappa = 1``, ``alpha = 0.5``.
    """

    name = "balance"
    needs_context = True

    def __init__(self, gamma: float = 0.3, kappa: float = 1.0, alpha: float = 0.5,
                 total_rounds: Optional[int] = None):
        if not float(gamma) > 0.0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        if not float(kappa) >= 0.0:
            raise ValueError(f"kappa must be >= 0, got {kappa!r}")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        if total_rounds is not None and (isinstance(total_rounds, bool) or not isinstance(total_rounds, int)
                                         or total_rounds < 1):
            raise ValueError(f"total_rounds must be a positive integer or null, got {total_rounds!r}")
        self.gamma, self.kappa, self.alpha = float(gamma), float(kappa), float(alpha)
        self.total_rounds = total_rounds

    def progress(self, ctx) -> float:
        """``lambda(t) = t / T``; 0 without ``total_rounds`` or ``ctx``."""
        if self.total_rounds is None or ctx is None:
            return 0.0
        return ctx.round / self.total_rounds

    def aggregate(self, own, received, ctx=None):
        received = drop_nonfinite(received)
        threshold = balance_threshold(own, self.gamma, self.kappa, self.progress(ctx))
        return blend_with_own(own, received[balance_accepted(own, received, threshold)], self.alpha)
