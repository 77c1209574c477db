"""A receiver's neighbourhood as a Byzantine sender can know it, for the attacks that
the decentralized papers craft per receiver (dissensus, ALIE, model replacement).

The reference codes are omniscient: each Byzantine worker reads its target's honest
neighbours (ClippedGossip, epfml/byzantine-robust-decentralized-optimizer
``codes/attacks.py``, ``target_good_neighbors``; IOS, ``ByrdLab/attack.py``,
``graph.honest_neighbors[node]``). Here:

- with the graph (``adversary.knows_topology``): the receiver's honest neighbours
  whose heads the attacker observed, and the receiver's degree;
- without it: the sender's own honest neighbours other than the receiver (the peers it
  exchanges heads with, which it knows), a stand-in of the same size for the
  receiver's neighbourhood on a regular graph, and the sender's degree.

``b_i``, the number of Byzantine senders of receiver ``i``, is always known: the
attack controls every Byzantine peer and sees whom each sends to.
"""
from __future__ import annotations


def byzantine_senders_of(view) -> dict:
    """``{receiver: number of Byzantine peers sending to it this round}``."""
    counts: dict = {}
    for sender in view.byzantine_ids:
        for receiver in view.receivers.get(sender, []):
            counts[receiver] = counts.get(receiver, 0) + 1
    return counts


def honest_neighbours(view, receiver: int, sender: int) -> list:
    """Observed honest neighbours of ``receiver`` (see the module doc), ascending ids,
    the receiver itself excluded."""
    byzantine = set(int(b) for b in view.byzantine_ids)
    if view.graph is not None:
        around = set(int(j) for j in view.graph.neighbors(receiver))
    else:
        around = set(int(j) for j in view.receivers.get(sender, []))
    observed = [int(i) for i in view.observed_ids]
    return [j for j in observed if j in around and j not in byzantine and j != receiver]


def receiver_degree(view, receiver: int, sender: int) -> int:
    """The receiver's degree (graph known), else the sender's own degree as a stand-in."""
    if view.graph is not None:
        return int(view.graph.degree(receiver))
    return len(view.receivers.get(sender, []))


def rows_of(view, ids: list):
    """``view.observed`` rows of the peers ``ids``."""
    return view.observed[[view.observed_ids.index(j) for j in ids]]
