"""Sign flipping: send the negated (and scaled) honest update."""
from __future__ import annotations

import torch

from attacks.base import Attack, send_to_all
from attacks.byzantine._reference import reference_head
from fedsim.params import Interval, Options
from fedsim.registry import register


def sign_flip_head(head: torch.Tensor, reference: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``reference - scale * (head - reference)``: the update ``head - reference`` negated."""
    return reference - scale * (head - reference)


LEVELS = ("model", "update")


@register("attacks", "sign_flip")
class SignFlip(Attack):
    """Sign flipping: each Byzantine peer sends its own model (or update) negated.
    The classic reversed-gradient baseline (e.g. Damaskinos et al. 2018, "Asynchronous
    Byzantine machine learning", ICML; Li et al. 2019, "RSA: Byzantine-robust stochastic
    aggregation methods", AAAI).

    The worker sends ``-scale * g`` instead of its gradient ``g``. On models:
    ``-scale * own_head`` (``level="model"``), or, with ``u = own_head - reference``
    (reference = the sender's head at the start of the round, see
    ``attacks.byzantine._reference``), ``reference - scale * u`` (``level="update"``).

    Parameters
    ----------
    scale : float > 0, default 1
        Factor of the flipped vector.
    level : {"model", "update"}, default "model"
        Flip the whole model, as the decentralized papers' experiments do, or the
        update (the behaviour before).

    Notes
    -----
    ``level="model"`` follows ClippedGossip (epfml/byzantine-robust-decentralized-optimizer
    ``codes/attacks.py``, ``BitFlippingWorker.pre_aggr``: ``flattened_model =
    -flattened_model``; the IOS code, ``ByrdLab/attack.py`` ``D_sign_flipping.run``,
    negates the mean of the receiver's honest neighbourhood instead, which needs
    omniscience). On models a flipped update is a small step back; a flipped model is
    far from every honest head. The same head goes to every receiver of a sender.

    References
    ----------
    .. [1] G. Damaskinos, E. M. El Mhamdi, R. Guerraoui, R. Patra, M. Taziki, "Asynchronous
       Byzantine machine learning (the case of SGD)", ICML 2018.
    .. [2] L. Li, W. Xu, T. Chen, G. B. Giannakis, Q. Ling, "RSA: Byzantine-robust
       stochastic aggregation methods for distributed learning from heterogeneous
       datasets", AAAI 2019.

    Examples
    --------
    >>> from fedsim.examples import example_view, rounded
    >>> view = example_view()  # peers 5 and 6 attack peer 0; they observe the 5 honest heads
    >>> rounded(SignFlip().craft(view)[(5, 0)])  # peer 5's trained head, negated
    tensor([[-1.1000,  0.0000, -0.1000],
            [ 0.0000, -0.9000,  0.0000]])
    """

    name = "sign_flip"
    parameters = {"scale": Interval(float, 0, None, closed="neither"), "level": Options(*LEVELS)}

    def __init__(self, scale: float = 1.0, level: str = "model"):
        self.scale = float(scale)
        self.level = level

    def craft(self, view):
        def reference(s):
            return reference_head(view, s) if self.level == "update" else torch.zeros_like(view.own_head(s))
        return send_to_all(view, {
            s: sign_flip_head(view.own_head(s), reference(s), self.scale)
            for s in view.byzantine_ids})
