"""Counter-based random numbers: every draw is a pure function of its key.

A key is ``(scenario seed, peer id, round, purpose)``. Because a draw depends on
nothing but its key (no generator state carried between calls), a run's numbers do
not depend on the backend, on how peers are grouped into actors, or on the order in
which peers are processed. The mixing function is SplitMix64 (Steele, Lea, Flood,
"Fast splittable pseudorandom number generators", OOPSLA 2014), applied with numpy's
wrapping uint64 arithmetic so that thousands of peers draw in one vectorised call.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def purpose_code(purpose: str) -> int:
    """A stable 32-bit code for a purpose string (crc32; Python's hash() is salted)."""
    return zlib.crc32(purpose.encode())


def keys(seed: int, peer_ids, round_, purpose: str) -> np.ndarray:
    """uint64 key per peer id for ``(seed, peer, round, purpose)``; ``round_`` one int, or
    one per peer (draws of peers at different points of their own schedules, as in
    asynchronous gossip)."""
    peers = np.asarray(peer_ids, dtype=np.int64).astype(np.uint64)
    rounds = np.asarray(round_, dtype=np.int64).astype(np.uint64)  # two's complement, as & 2**64 - 1
    h = _splitmix(np.full(peers.shape, np.uint64(seed & 0xFFFFFFFFFFFFFFFF)))
    h = _splitmix(h ^ peers)
    h = _splitmix(h ^ rounds)
    return _splitmix(h ^ np.uint64(purpose_code(purpose)))


def uniform(seed: int, peer_ids, round_, purpose: str, count: int) -> np.ndarray:
    """``[len(peer_ids), count]`` float64 uniforms in [0, 1), one row per peer; ``round_``
    one int or one per peer (:func:`keys`)."""
    k = keys(seed, peer_ids, round_, purpose)
    counters = np.arange(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        bits = _splitmix(k[:, None] ^ (counters[None, :] * _GOLDEN))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def seed_for(seed: int, peer_id: int, round_: int, purpose: str) -> int:
    """A 63-bit integer seed for ``(seed, peer, round, purpose)``."""
    return int(keys(seed, [peer_id], round_, purpose)[0] >> np.uint64(1))


def generator(seed: int, peer_id: int, round_: int, purpose: str) -> torch.Generator:
    """A fresh CPU ``torch.Generator`` for one peer, round and purpose."""
    g = torch.Generator()
    g.manual_seed(seed_for(seed, peer_id, round_, purpose))
    return g


def numpy_rng(seed: int, peer_id: int, round_: int, purpose: str) -> np.random.Generator:
    return np.random.default_rng(seed_for(seed, peer_id, round_, purpose))


# ------------------------------------------------------------------ whole-run draws
# Set-up draws made once per run as one sequence, not keyed per peer and round: the
# public split and the partitions draw from one numpy generator seeded by the
# scenario seed; each peer's local test split and each topology period get a seed
# derived from the scenario seed by a fixed affine map (the constants are primes kept
# from the first release, so earlier runs stay reproducible).

def sequence(seed: int) -> np.random.Generator:
    """The numpy generator of a set-up draw made as one sequence: ``default_rng(seed)``."""
    return np.random.default_rng(seed)


def local_test_seed(seed: int, peer: int) -> int:
    """Seed of peer ``peer``'s local test split: ``seed + 1000003 * (peer + 1)``."""
    return seed + 1000003 * (peer + 1)


def topology_seed(seed: int, period: int) -> int:
    """Seed of the graph of schedule period ``period``: ``seed + 7919 * period``."""
    return seed + 7919 * period
