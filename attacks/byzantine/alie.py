"""A Little Is Enough (Baruch, Baruch, Goldberg 2019)."""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Optional

import torch

from attacks.base import Attack, send_to_all
from attacks.byzantine._reference import honest_heads
from fedsim.params import Interval
from fedsim.registry import register


def alie_z(n: int, f: int) -> float:
    """The paper's largest undetected deviation ``z_max`` for ``n`` workers, ``f`` Byzantine.

    ``s = floor(n/2 + 1) - f`` honest "supporters" are needed for a majority;
    ``z_max = Phi^-1((n - s) / n)`` (Baruch et al. 2019, Algorithm 3). ``s`` is clamped
    to ``>= 1`` (with ``f`` a majority no supporter is needed and the formula gives
    ``Phi^-1(1) = inf``). Note: the authors' and the ClippedGossip code use
    ``(n - f - s) / (n - f)`` instead; this follows the paper.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, not {n}")
    if not 0 <= f <= n:
        raise ValueError(f"f must be in 0..n={n}, not {f}")
    supporters = max(1, math.floor(n / 2 + 1) - f)
    return NormalDist().inv_cdf((n - supporters) / n)


def alie_head(heads: torch.Tensor, z: float) -> torch.Tensor:
    """``mean - z * std`` coordinate-wise over ``heads [h, ...]`` (sample std; 0 if h = 1)."""
    mean = heads.mean(dim=0)
    if heads.shape[0] < 2:
        return mean.clone()
    return mean - z * heads.std(dim=0, correction=1)


@register("attacks", "alie")
class ALittleIsEnough(Attack):
    """ALIE: Baruch, Baruch, Goldberg (NeurIPS 2019), "A little is enough: circumventing
    defenses for distributed learning".

    Every Byzantine peer sends, coordinate-wise over the observed honest heads,

        ``mu_j - z * sigma_j``

    (mean and sample standard deviation; the sender's own head when it observed
    nothing). Mean and std of models equal reference + mean/std of updates, so this
    needs no reference head. ``z`` defaults to the paper's ``z_max`` (see
    :func:`alie_z`) with ``n = view.n_peers`` and ``f = len(view.byzantine_ids)``; pass
    ``z`` to fix it. All senders send the same head to all their receivers.
    """

    name = "alie"
    parameters = {"z": [None, Interval(float)]}

    def __init__(self, z: Optional[float] = None):
        self.z = None if z is None else float(z)

    def z_for(self, view) -> float:
        return self.z if self.z is not None else alie_z(view.n_peers, len(view.byzantine_ids))

    def craft(self, view):
        z = self.z_for(view)
        return send_to_all(view, {s: alie_head(honest_heads(view, s), z) for s in view.byzantine_ids})
