"""Sign flipping: send the negated (and scaled) honest update."""
from __future__ import annotations

import torch

from attacks.base import Attack, send_to_all
from attacks.byzantine._neighbourhood import honest_neighbours, rows_of
from attacks.byzantine._reference import reference_head
from fedsim.params import Interval, Options
from fedsim.registry import register


def sign_flip_head(head: torch.Tensor, reference: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``reference - scale * (head - reference)``: the update ``head - reference`` negated."""
    return reference - scale * (head - reference)


LEVELS = ("model", "update")
SOURCES = ("own", "receiver_neighbourhood")


def receiver_neighbourhood_mean(view, receiver: int, sender: int) -> torch.Tensor:
    """Mean of ``receiver``'s head and its honest neighbours' heads as ``sender`` observed
    them (``attacks.byzantine._neighbourhood``); the sender's own head when it observed none."""
    heads = rows_of(view, honest_neighbours(view, receiver, sender))
    own = view.observed_by(receiver)
    if own is not None:
        heads = torch.cat([own.unsqueeze(0), heads])
    return heads.mean(dim=0) if heads.shape[0] else view.own_head(sender)


@register("attacks", "sign_flip")
class SignFlip(Attack):
    """Sign flipping: each Byzantine peer sends its own model (or update) negated, or
    the negated mean of the receiver's honest neighbourhood.
    The classic reversed-gradient baseline (e.g. Damaskinos et al. 2018, "Asynchronous
    Byzantine machine learning", ICML; Li et al. 2019, "RSA: Byzantine-robust stochastic
    aggregation methods", AAAI).

    The worker sends ``-scale * g`` instead of its gradient ``g``. On models:
    ``-scale * own_head`` (``level="model"``), or, with ``u = own_head - reference``
    (reference = the sender's head at the start of the round, see
    ``attacks.byzantine._reference``), ``reference - scale * u`` (``level="update"``).
    With ``source="receiver_neighbourhood"`` the flipped head is not the sender's own
    but, per receiver ``i``, the mean ``mu_i`` of ``i``'s head and its honest neighbours'
    heads: ``-scale * mu_i`` (model) or ``reference - scale * (mu_i - reference)``
    (update).

    Parameters
    ----------
    scale : float > 0, default 1
        Factor of the flipped vector.
    level : {"model", "update"}, default "model"
        Flip the whole model, as the decentralized papers' experiments do, or the
        update (the behaviour before).
    source : {"own", "receiver_neighbourhood"}, default "own"
        What is flipped: the sender's own trained head (ClippedGossip's attack), or,
        for each receiver, the mean of the receiver's and its honest neighbours' heads
        (the IOS authors' attack). The neighbourhood is the one the attack can see
        (``attacks.byzantine._neighbourhood``): exact with ``adversary.omniscient`` and
        ``adversary.knows_topology``, as the IOS code assumes.

    Notes
    -----
    ``level="model"`` follows ClippedGossip (epfml/byzantine-robust-decentralized-optimizer
    ``codes/attacks.py``, ``BitFlippingWorker.pre_aggr``: ``flattened_model =
    -flattened_model``). ``source="receiver_neighbourhood"`` follows the IOS code,
    Zhaoxian-Wu/IOS ``ByrdLab/attack.py`` ``D_sign_flipping.run``: ``mu =
    mean(local_models[honest_neighbors + [node]])``, every Byzantine neighbour of
    ``node`` sends ``-scale * mu`` (scale 1 by default). With one class per peer a
    flipped own head is a one-class head about as far from a receiver's neighbourhood
    as the honest one-class heads, while the flipped neighbourhood mean is twice the
    mean's norm away from it. On models a flipped update is a small step back; a
    flipped model is far from every honest head. With ``source="own"`` the same head
    goes to every receiver of a sender.

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
    parameters = {"scale": Interval(float, 0, None, closed="neither"), "level": Options(*LEVELS),
                  "source": Options(*SOURCES)}

    def __init__(self, scale: float = 1.0, level: str = "model", source: str = "own"):
        self.scale = float(scale)
        self.level = level
        self.source = source

    def craft(self, view):
        def reference(s):
            return reference_head(view, s) if self.level == "update" else torch.zeros_like(view.own_head(s))
        if self.source == "own":
            return send_to_all(view, {
                s: sign_flip_head(view.own_head(s), reference(s), self.scale)
                for s in view.byzantine_ids})
        return {(s, r): sign_flip_head(receiver_neighbourhood_mean(view, r, s), reference(s), self.scale)
                for s in view.byzantine_ids for r in view.receivers.get(s, [])}
