"""Messages on the simulated links: when each arrives, and whether it is lost.

A directed link ``sender -> receiver`` has its own latency, drawn once from
``network.links.latency`` with key ``(seed, sender * N + receiver, "latency")``. A message
of ``b`` bytes sent at time ``t`` arrives at ``t + b / bandwidth + latency`` (unlimited
bandwidth: ``t + latency``), so a sender-side compression (``privacy.defense`` topk or
quantize) that shrinks ``b`` shortens it. Each message is lost with probability
``loss``, drawn with key ``(seed, link, k, "loss")`` where ``k`` is the sender's update
count (asynchronous mode) or the round (synchronous mode).
"""
from __future__ import annotations

import numpy as np

from fedsim import rng
from fedsim.network.draws import draw


def link_ids(senders, receivers, n_peers: int) -> np.ndarray:
    """``sender * N + receiver``: one key per directed link."""
    return np.asarray(senders, dtype=np.int64) * n_peers + np.asarray(receivers, dtype=np.int64)


def transfer_times(links, seed: int, senders, receivers, n_peers: int, message_bytes) -> np.ndarray:
    """Seconds from sending to arrival of each message (``links``: ``config.Links``)."""
    latency = draw(links.latency, seed, link_ids(senders, receivers, n_peers), "latency")
    if links.bandwidth is None:
        return latency
    return np.asarray(message_bytes, dtype=np.float64) / links.bandwidth + latency


def lost(loss: float, seed: int, senders, receivers, n_peers: int, counts) -> np.ndarray:
    """Which messages the links lose: a keyed uniform below ``loss`` (1.0 loses all, 0 none)."""
    senders = np.asarray(senders, dtype=np.int64)
    if loss == 0 or len(senders) == 0:
        return np.zeros(len(senders), dtype=bool)
    counts = np.broadcast_to(np.asarray(counts, dtype=np.int64), senders.shape)
    return rng.uniform(seed, link_ids(senders, receivers, n_peers), counts, "loss", 1)[:, 0] < loss
