"""Mimic (Karimireddy, He, Jaggi 2022)."""
from __future__ import annotations

from typing import Optional

import torch

from attacks.base import Attack, send_to_all, send_trained
from fedsim.params import Boolean, Interval, Options
from fedsim.registry import register

TARGETS = ("fixed", "variance")


def principal_direction(heads: torch.Tensor) -> torch.Tensor:
    """Unit top principal direction ``z [P]`` of ``heads [h, P]`` around their mean
    (zero vector when all heads are equal), its sign fixed so that its entry of largest
    magnitude is positive (the convention of scikit-learn's ``svd_flip``; an SVD's sign
    is otherwise arbitrary)."""
    centred = (heads - heads.mean(dim=0)).double()
    if centred.abs().max() == 0:
        return torch.zeros(heads.shape[1], dtype=heads.dtype)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    z = vh[0]
    if z[int(torch.argmax(z.abs()))] < 0:
        z = -z
    return z.to(heads.dtype)


def mimic_index_by_variance(heads: torch.Tensor, absolute: bool = False) -> int:
    """The row of ``heads [h, P]`` farthest along the top principal direction ``z``:
    ``argmax_i <x_i - mean, z>`` (the authors' code, which takes the signed projection),
    or ``argmax_i |<x_i - mean, z>|`` with ``absolute`` (ties to the lowest index)."""
    z = principal_direction(heads)
    scores = (heads - heads.mean(dim=0)) @ z
    return int(torch.argmax(scores.abs() if absolute else scores))


@register("attacks", "mimic")
class Mimic(Attack):
    """Mimic: every Byzantine peer sends a copy of one honest peer's head.
    Karimireddy, He, Jaggi 2022, "Byzantine-robust learning on heterogeneous datasets via
    bucketing", ICLR.

    Copying one honest head over-weights that peer's (non-i.i.d.) data and
    under-weights everyone else's, which robust rules cannot tell from honest
    heterogeneity.

    Parameters
    ----------
    target : {"fixed", "variance"}, default "fixed"
        ``"fixed"`` (the paper's simple variant, which copies one fixed honest worker):
        the observed head of peer ``peer`` if given and observed, else the observed peer
        with the lowest id. ``"variance"``: the worker that lies farthest along the top
        principal direction ``z`` of the honest heads, ``argmax_i <x_i - mean, z>``.
    peer : int >= 0, default None
        The peer ``"fixed"`` copies.
    absolute : bool, default False
        With ``"variance"``, take ``|<x_i - mean, z>|`` (the behaviour before).

    Notes
    -----
    The paper estimates ``z`` over a warm-up phase and then keeps it; here ``z`` is
    recomputed from each round's observed heads (no state across rounds). The signed
    projection is the authors' code's (epfml/byzantine-robust-noniid-optimizer
    ``codes/attacks/mimic.py``, ``MimicVariantAttacker._attack_callback``: ``d =
    g.dot(self.z)``, largest ``d`` with ``argmax=True``). The code's ``z`` comes from
    power iteration from a seeded random start; here from an SVD with the sign fixed by
    :func:`principal_direction`. Falls back to the sender's own head when it observed
    nothing.

    References
    ----------
    .. [1] S. P. Karimireddy, L. He, M. Jaggi, "Byzantine-robust learning on heterogeneous
       datasets via bucketing", ICLR 2022.

    Examples
    --------
    >>> from fedsim.examples import example_view, rounded
    >>> view = example_view()  # peers 5 and 6 attack peer 0; they observe the 5 honest heads
    >>> Mimic(peer=1).craft(view)[(5, 0)]  # honest peer 1's head, as observed
    tensor([[1.1000, 0.0000, 0.1000],
            [0.0000, 0.9000, 0.0000]])
    """

    name = "mimic"
    parameters = {"target": Options(*TARGETS), "peer": [None, Interval(int, 0, None)],
                  "absolute": Boolean()}

    def __init__(self, target: str = "fixed", peer: Optional[int] = None, absolute: bool = False):
        self.target, self.peer, self.absolute = target, peer, absolute

    @staticmethod
    def check_run(args, facts):
        if facts.n_peers is not None and args["peer"] is not None and args["peer"] >= facts.n_peers:
            return [("peer", f"must be a peer id below {facts.n_peers}, the number of peers")]
        return []

    def chosen_row(self, view) -> int:
        """Row of ``view.observed`` that every Byzantine peer copies."""
        if self.target == "variance":
            return mimic_index_by_variance(view.observed.flatten(1), self.absolute)
        ids = [int(i) for i in view.observed_ids]
        if self.peer is not None and self.peer in ids:
            return ids.index(self.peer)
        return ids.index(min(ids))

    def craft(self, view):
        if view.observed is None or view.observed.shape[0] == 0:
            return send_trained(view)
        head = view.observed[self.chosen_row(view)]
        return send_to_all(view, {s: head.clone() for s in view.byzantine_ids})
