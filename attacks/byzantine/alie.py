"""A Little Is Enough (Baruch, Baruch, Goldberg 2019)."""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Optional

import torch

from attacks.base import Attack, send_to_all
from attacks.byzantine._neighbourhood import (byzantine_senders_of, honest_neighbours, receiver_degree,
                                               rows_of)
from attacks.byzantine._reference import honest_heads
from fedsim.params import Interval, Options
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


def alie_z_receiver(degree: int, byzantine_neighbours: int) -> float:
    """Per-receiver ``z_max`` of the IOS code (``ByrdLab/attack.py``, ``D_alie.__init__``):
    ``s = floor((n + 1) / 2) - b`` (clamped to ``>= 1``), ``z = Phi^-1((n - s) / n)`` with
    ``n`` the receiver's degree and ``b`` its Byzantine neighbours."""
    if degree < 1:
        raise ValueError(f"degree must be >= 1, not {degree}")
    supporters = max(1, math.floor((degree + 1) / 2) - byzantine_neighbours)
    return NormalDist().inv_cdf((degree - supporters) / degree) if supporters < degree else 0.0


def alie_head(heads: torch.Tensor, z: float) -> torch.Tensor:
    """``mean - z * std`` coordinate-wise over ``heads [h, ...]`` (sample std; 0 if h = 1)."""
    mean = heads.mean(dim=0)
    if heads.shape[0] < 2:
        return mean.clone()
    return mean - z * heads.std(dim=0, correction=1)


Z_MODES = ("per_receiver", "global")


@register("attacks", "alie")
class ALittleIsEnough(Attack):
    """A Little Is Enough: send the honest mean shifted by ``z`` standard deviations.
    Baruch, Baruch, Goldberg 2019, "A little is enough: circumventing defenses for
    distributed learning", NeurIPS.

    Every Byzantine peer sends, coordinate-wise over the observed honest heads,

        ``mu_j - z * sigma_j``

    (mean and sample standard deviation). Mean and std of models equal reference +
    mean/std of updates, so this needs no reference head.

    Parameters
    ----------
    z : float, default None
        The shift; ``None`` means the paper's largest undetected shift ``z_max`` (of the
        receiver, or of the whole run, by ``z_mode``).
    z_mode : {"per_receiver", "global"}, default "per_receiver"
        ``"per_receiver"``: for each receiver ``i`` the statistics are over ``i``'s head
        and its honest neighbours', and ``z`` is the receiver's own ``z_max``
        (:func:`alie_z_receiver`). ``"global"`` (the behaviour before): one head over
        every observed honest head with the paper's ``z_max`` for ``n = view.n_peers``,
        ``f = len(view.byzantine_ids)`` (:func:`alie_z`).

    Notes
    -----
    ``"per_receiver"`` is how the decentralized codes craft it: ClippedGossip,
    epfml/byzantine-robust-decentralized-optimizer ``codes/attacks.py``,
    ``ALittleIsEnoughAttack.pre_aggr``: ``models = [tm] + target_good_neighbors`` (the
    neighbourhood as in ``attacks.byzantine._neighbourhood``); the receiver's ``z_max``
    as in the IOS code's ``D_alie.__init__``: ``s = floor((n_i + 1) / 2) - b_i``,
    ``z = Phi^-1((n_i - s) / n_i)`` with ``n_i`` the receiver's degree and ``b_i`` its
    Byzantine neighbours. ``z`` overrides ``z_max`` in both modes (the ClippedGossip
    experiments use ``z = 10``: ``"ALIE10"`` in ``run.sh``). The sender's own head when
    it observed nothing; a receiver whose head was not observed gets the statistics of
    its observed neighbours only.

    References
    ----------
    .. [1] M. Baruch, G. Baruch, Y. Goldberg, "A little is enough: circumventing defenses
       for distributed learning", NeurIPS 2019.

    Examples
    --------
    >>> from fedsim.examples import example_view, rounded
    >>> view = example_view()  # peers 5 and 6 attack peer 0; they observe the 5 honest heads
    >>> sent = ALittleIsEnough(z=1.0, z_mode="global").craft(view)
    >>> rounded(sent[(5, 0)])  # mean (= peer 0's head) minus one std per coordinate
    tensor([[ 0.9300, -0.0700, -0.0700],
            [-0.0700,  0.9300, -0.0700]])
    """

    name = "alie"
    parameters = {"z": [None, Interval(float)], "z_mode": Options(*Z_MODES)}

    def __init__(self, z: Optional[float] = None, z_mode: str = "per_receiver"):
        self.z = None if z is None else float(z)
        self.z_mode = z_mode

    def z_for(self, view) -> float:
        return self.z if self.z is not None else alie_z(view.n_peers, len(view.byzantine_ids))

    def craft(self, view):
        if self.z_mode == "global":
            z = self.z_for(view)
            return send_to_all(view, {s: alie_head(honest_heads(view, s), z) for s in view.byzantine_ids})
        senders_of = byzantine_senders_of(view)
        out = {}
        for s in view.byzantine_ids:
            for r in view.receivers.get(s, []):
                heads = rows_of(view, honest_neighbours(view, r, s))
                own = view.observed_by(r)
                if own is not None:
                    heads = torch.cat([own.unsqueeze(0), heads])
                if heads.shape[0] == 0:
                    out[(s, r)] = view.own_head(s)
                    continue
                z = self.z if self.z is not None else alie_z_receiver(receiver_degree(view, r, s), senders_of[r])
                out[(s, r)] = alie_head(heads, z)
        return out
