"""Synchronous rounds on the simulated network: who takes part in round ``r`` and which
of the round's messages arrive.

Round ``r`` happens at simulated time ``t = (r - 1) * network.round_s``. A peer takes
part when it is online at ``t`` (``fedsim.network.churn``) and drawn among the online
peers: ``m = max(1, round(participation * online))`` peers with the smallest keyed
uniforms ``(seed, peer, r, "participation")`` (client sampling, as FedAvg's ``C``:
McMahan et al., AISTATS 2017). Each taking-part peer trains and sends its head to every
neighbour; a message reaches a receiver that takes part unless the link loses it
(``fedsim.network.links``); what is sent to a peer that does not take part is lost.
A peer that takes part and receives nothing keeps its own head.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedsim import rng
from fedsim.network.links import lost


@dataclass
class RoundPlan:
    """Round ``round`` on the simulated network (what the backends need)."""

    round: int
    time_s: float
    active: np.ndarray        # sorted ids of the peers that take part
    neighbours: np.ndarray    # [N, k] senders whose message arrives, ascending, padded with -1
    degrees: np.ndarray       # [N] every peer's degree in the round's graph
    counts: dict              # online_peers, active_peers, messages_sent, messages_lost


def participants(seed: int, round_: int, online: np.ndarray, participation: float) -> np.ndarray:
    """Sorted ids of the peers drawn among the ``online`` ids (see the module doc)."""
    online = np.asarray(online, dtype=np.int64)
    if participation >= 1.0 or len(online) == 0:
        return online
    m = max(1, int(np.floor(participation * len(online) + 0.5)))
    u = rng.uniform(seed, online, round_, "participation", 1)[:, 0]
    return np.sort(online[np.argsort(u, kind="stable")[:m]])


def compact(neighbours: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Rows of ``neighbours`` with only the ``keep`` entries, ascending, padded with -1."""
    big = np.iinfo(np.int64).max
    out = np.sort(np.where(keep, neighbours, big), axis=1)
    out[out == big] = -1
    return out


def plan_round(network, seed: int, round_: int, neighbours: np.ndarray, presence) -> RoundPlan:
    """The :class:`RoundPlan` of round ``round_`` with neighbour matrix ``neighbours [N, k]``."""
    n = neighbours.shape[0]
    t = (round_ - 1) * network.round_s
    online = np.flatnonzero(presence.online(np.arange(n), t))
    active = participants(seed, round_, online, network.participation)
    taking_part = np.zeros(n + 1, dtype=bool)
    taking_part[active] = True
    real = neighbours >= 0
    senders = np.where(real, neighbours, n)
    receivers = np.broadcast_to(np.arange(n)[:, None], neighbours.shape)
    sent = real & taking_part[senders]
    arrives = sent & taking_part[receivers]
    rows, slots = np.nonzero(arrives)
    dropped = lost(network.links.loss, seed, senders[rows, slots], receivers[rows, slots], n, round_)
    arrives[rows[dropped], slots[dropped]] = False
    counts = {"online_peers": int(len(online)), "active_peers": int(len(active)),
              "messages_sent": int(sent.sum()), "messages_lost": int(sent.sum() - arrives.sum())}
    return RoundPlan(round_, t, active, compact(neighbours, arrives), real.sum(axis=1), counts)
