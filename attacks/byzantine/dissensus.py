"""Dissensus (He, Karimireddy, Jaggi 2022, ClippedGossip)."""
from __future__ import annotations

import torch

from attacks.base import Attack
from fedsim.params import Interval
from fedsim.registry import register


def dissensus_head(receiver_head: torch.Tensor, honest_neighbour_heads: torch.Tensor,
                   n_byzantine_neighbours: int, epsilon: float) -> torch.Tensor:
    """``x_i - epsilon * sum_j w_ij (x_j - x_i) / sum_b w_ib`` with uniform gossip weights
    ``w`` (every neighbour weighs the same), i.e.
    ``x_i - epsilon * sum_j (x_j - x_i) / b_i``; ``honest_neighbour_heads [k, ...]``."""
    if n_byzantine_neighbours < 1:
        raise ValueError("a dissensus message needs at least one Byzantine neighbour")
    if honest_neighbour_heads.shape[0] == 0:
        return receiver_head.clone()
    pull = (honest_neighbour_heads - receiver_head).sum(dim=0)
    return receiver_head - epsilon * pull / n_byzantine_neighbours


@register("attacks", "dissensus")
class Dissensus(Attack):
    """Dissensus attack of He, Karimireddy, Jaggi (2022), "Byzantine-robust
    decentralized learning via ClippedGossip" (first titled "... via self-centered
    clipping").

    Gossip averaging moves honest peer ``i`` by ``sum_j w_ij (x_j - x_i)`` over its
    neighbours. Each Byzantine neighbour ``b`` of ``i`` sends

        ``x_b = x_i - epsilon * sum_{j honest nbr of i} w_ij (x_j - x_i) / sum_{b' Byz nbr of i} w_ib'``

    so that the Byzantine terms cancel ``epsilon`` times the honest pull towards
    consensus: ``epsilon = 1`` freezes ``i`` where it is, ``epsilon > 1`` pushes it away
    from its neighbours (as in the authors' reference implementation). Weights are
    uniform (this simulator's gossip average, ``defenses.aggregation.mean``, weighs every neighbour
    the same), so they cancel. ``x_i`` is the receiver's own head this round
    (``view.observed_by(i)``). Honest neighbours come from the graph when the attack
    knows the topology (those whose heads it observed); without the graph it takes every
    observed honest peer other than ``i`` as a stand-in. The number of Byzantine
    neighbours ``b_i`` is the number of Byzantine senders that send to ``i`` this round.
    A receiver whose head was not observed gets the sender's own head.

    Default ``epsilon = 1.0`` (the reference code takes epsilon from the experiment's
    attack name and has no default; 1 is the value at which consensus stops).
    """

    name = "dissensus"
    parameters = {"epsilon": Interval(float, 0, None, closed="neither")}

    def __init__(self, epsilon: float = 1.0):
        self.epsilon = float(epsilon)

    def honest_neighbours(self, view, receiver: int) -> list:
        observed = [int(i) for i in view.observed_ids]
        byzantine = set(int(b) for b in view.byzantine_ids)
        if view.graph is not None:
            neighbours = set(int(j) for j in view.graph.neighbors(receiver)) - byzantine
            return [j for j in observed if j in neighbours]
        return [j for j in observed if j != receiver and j not in byzantine]

    def craft(self, view):
        byzantine_senders_of: dict = {}
        for s in view.byzantine_ids:
            for r in view.receivers.get(s, []):
                byzantine_senders_of[r] = byzantine_senders_of.get(r, 0) + 1
        crafted_for: dict = {}
        out = {}
        for s in view.byzantine_ids:
            for r in view.receivers.get(s, []):
                if r not in crafted_for:
                    own = view.observed_by(r)
                    if own is None:
                        crafted_for[r] = None
                    else:
                        rows = [view.observed_ids.index(j) for j in self.honest_neighbours(view, r)]
                        crafted_for[r] = dissensus_head(own, view.observed[rows], byzantine_senders_of[r],
                                                        self.epsilon)
                out[(s, r)] = crafted_for[r] if crafted_for[r] is not None else view.own_head(s)
        return out
