"""Dissensus (He, Karimireddy, Jaggi 2022, ClippedGossip)."""
from __future__ import annotations

import torch

from attacks.base import Attack
from attacks.byzantine._neighbourhood import byzantine_senders_of, honest_neighbours, rows_of
from fedsim.params import Interval, Options
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


PULLS = ("neighbours", "observed")


@register("attacks", "dissensus")
class Dissensus(Attack):
    """Dissensus: cancel (``epsilon = 1``) or reverse the gossip pull towards consensus.
    He, Karimireddy, Jaggi 2022, "Byzantine-robust decentralized learning via
    ClippedGossip", arXiv:2202.01545 (first titled "... via self-centered clipping").

    Gossip averaging moves honest peer ``i`` by ``sum_j w_ij (x_j - x_i)`` over its
    neighbours. Each Byzantine neighbour ``b`` of ``i`` sends

        ``x_b = x_i - epsilon * sum_{j honest nbr of i} w_ij (x_j - x_i) / sum_{b' Byz nbr of i} w_ib'``

    so that the Byzantine terms cancel ``epsilon`` times the honest pull towards
    consensus: ``epsilon = 1`` freezes ``i`` where it is, ``epsilon > 1`` pushes it away
    from its neighbours (as in the authors' reference implementation). ``x_i`` is the
    receiver's own head this round (``view.observed_by(i)``); ``b_i`` is the number of
    Byzantine senders that send to ``i`` this round.

    Parameters
    ----------
    epsilon : float > 0, default 1.5
        The value of every dissensus run in the authors' ``run.sh``
        (``"dissensus1.5"``); 1 is the value at which consensus stops.
    pull : {"neighbours", "observed"}, default "neighbours"
        Which honest peers make up the pull (see Notes).

    Notes
    -----
    Weights are uniform (this simulator's gossip average, ``defenses.aggregation.mean``,
    weighs every neighbour the same), so they cancel. ``pull="neighbours"`` sums over the
    receiver's neighbours as the reference does
    (``DissensusWorker._attack_decentralized_aggregator`` iterates over
    ``self.target.running["neighbor_workers"]``): from the graph when the attack knows
    the topology, otherwise over the sending peer's own honest neighbours other than
    ``i``, a stand-in of the right size (see ``attacks.byzantine._neighbourhood``).
    ``"observed"`` (the behaviour before) sums over every observed honest peer other
    than ``i``, which on a sparse graph is many more peers than ``i``'s neighbours and
    overstates the pull. A receiver whose head was not observed gets the sender's own
    head.

    References
    ----------
    .. [1] L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning
       via ClippedGossip", arXiv:2202.01545, 2022: the dissensus attack.

    Examples
    --------
    >>> from fedsim.examples import example_view, rounded
    >>> view = example_view()  # peers 5 and 6 attack peer 0; they observe the 5 honest heads
    >>> sent = Dissensus(epsilon=1.0, pull="observed").craft(view)
    >>> sent[(5, 0)]  # peer 0's honest neighbours average to its own head: no pull
    tensor([[1., 0., 0.],
            [0., 1., 0.]])
    """

    name = "dissensus"
    parameters = {"epsilon": Interval(float, 0, None, closed="neither"), "pull": Options(*PULLS)}

    def __init__(self, epsilon: float = 1.5, pull: str = "neighbours"):
        self.epsilon = float(epsilon)
        self.pull = pull

    def honest_neighbours(self, view, receiver: int, sender: int) -> list:
        if self.pull == "neighbours":
            return honest_neighbours(view, receiver, sender)
        byzantine = set(int(b) for b in view.byzantine_ids)
        return [int(j) for j in view.observed_ids if int(j) != receiver and int(j) not in byzantine]

    def craft(self, view):
        senders_of = byzantine_senders_of(view)
        out = {}
        for s in view.byzantine_ids:
            for r in view.receivers.get(s, []):
                own = view.observed_by(r)
                if own is None:
                    out[(s, r)] = view.own_head(s)
                    continue
                neighbours = rows_of(view, self.honest_neighbours(view, r, s))
                out[(s, r)] = dissensus_head(own, neighbours, senders_of[r], self.epsilon)
        return out
