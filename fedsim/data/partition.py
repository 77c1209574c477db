"""Splitting labelled data: public split, per-peer partitions, per-peer local test sets.

Every function is plain numpy, seeded with ``fedsim.rng.sequence(seed)``, and
returns sorted int64 index arrays. A partitioner is registered under
``"partitions"`` as ``f(labels, n_peers, seed, **args) -> list[np.ndarray]``: one index
array (into ``labels``) per peer; the arrays are disjoint and together cover every
index.
"""
from __future__ import annotations

import numpy as np

from fedsim import rng
from fedsim.registry import lookup, register

_EMPTY = np.zeros(0, dtype=np.int64)


def _as_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array; got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError("labels must be non-negative integers")
    return labels.astype(np.int64, copy=False)


def _check_n_peers(n_peers: int, n_samples: int) -> int:
    if int(n_peers) != n_peers or n_peers < 1:
        raise ValueError(f"n_peers must be a positive integer; got {n_peers}")
    if n_peers > n_samples:
        raise ValueError(f"cannot partition {n_samples} samples among {n_peers} peers")
    return int(n_peers)


def _sorted(parts) -> list[np.ndarray]:
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def split_public(labels, fraction: float, seed) -> tuple[np.ndarray, np.ndarray]:
    """``(public_idx, private_idx)``: per class, ``round(fraction * count)`` samples are public.

    Stratified so that the public split (used only to pre-train the backbone) has the
    class proportions of the whole; ``fraction`` 0 gives an empty public split.
    """
    labels = _as_labels(labels)
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"public fraction must be in [0, 1); got {fraction}")
    draw = rng.sequence(seed)
    public = [draw.permutation(np.flatnonzero(labels == c))[:int(round(fraction * np.sum(labels == c)))]
              for c in np.unique(labels)]
    public_idx = np.sort(np.concatenate(public)).astype(np.int64) if public else _EMPTY
    private_mask = np.ones(len(labels), dtype=bool)
    private_mask[public_idx] = False
    return public_idx, np.flatnonzero(private_mask).astype(np.int64)


def partition(kind: str, labels, n_peers: int, seed: int, **args) -> list[np.ndarray]:
    """Partition with the partitioner registered as ``kind`` (``fedsim list partitions``)."""
    return lookup("partitions", kind)(labels, n_peers, seed, **args)


@register("partitions", "iid")
def iid(labels, n_peers: int, seed: int) -> list[np.ndarray]:
    """Uniformly random, equal-size (within one sample) split."""
    labels = _as_labels(labels)
    n_peers = _check_n_peers(n_peers, len(labels))
    order = rng.sequence(seed).permutation(len(labels))
    return _sorted(np.array_split(order, n_peers))


@register("partitions", "dirichlet")
def dirichlet(labels, n_peers: int, seed: int, alpha: float = 0.5, min_samples: int = 10,
              max_tries: int = 1000) -> list[np.ndarray]:
    """Label-skewed split of Hsu, Qi, Brown (2019), "Measuring the effects of non-identical
    data distribution for federated visual classification".

    For each class ``c`` independently, proportions ``p_c ~ Dir(alpha * 1_n)`` over the
    ``n`` peers; the class's shuffled samples are cut at ``floor(cumsum(p_c) * n_c)``.
    Small ``alpha`` -> each peer holds few classes; large ``alpha`` -> close to iid.
    The whole draw is repeated until every peer has at least ``min_samples`` samples
    (as in the common reference implementation), at most ``max_tries`` times, then a
    ``ValueError``. Defaults: ``alpha`` 0.5, ``min_samples`` 10, ``max_tries`` 1000.
    """
    labels = _as_labels(labels)
    n_peers = _check_n_peers(n_peers, len(labels))
    if not float(alpha) > 0:
        raise ValueError(f"dirichlet: alpha must be > 0; got {alpha}")
    if int(min_samples) < 0:
        raise ValueError(f"dirichlet: min_samples must be >= 0; got {min_samples}")
    if n_peers * int(min_samples) > len(labels):
        raise ValueError(f"dirichlet: {n_peers} peers x min_samples {min_samples} exceeds the "
                         f"{len(labels)} samples; lower min_samples or n_peers")
    draw = rng.sequence(seed)
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(int(max_tries)):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_peers)]
        for idx in members:
            shuffled = draw.permutation(idx)
            proportions = draw.dirichlet(np.full(n_peers, float(alpha)))
            cuts = (np.cumsum(proportions)[:-1] * len(idx)).astype(np.int64)
            for peer, piece in enumerate(np.split(shuffled, cuts)):
                parts[peer].append(piece)
        merged = [np.concatenate(p) if p else _EMPTY for p in parts]
        if min(len(p) for p in merged) >= int(min_samples):
            return _sorted(merged)
    raise ValueError(f"dirichlet: no draw in {max_tries} tries gave every one of {n_peers} peers "
                     f"at least {min_samples} samples (alpha={alpha}); raise alpha or lower "
                     f"min_samples or n_peers")


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Non-negative integers proportional to ``weights`` that sum to ``total``."""
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:total - counts.sum()]] += 1
    return counts


@register("partitions", "shards")
def shards(labels, n_peers: int, seed: int, classes_per_peer: int = 2) -> list[np.ndarray]:
    """Pathological non-iid split of McMahan et al. (2017), "Communication-efficient learning
    of deep networks from decentralized data": sort by label, cut into
    ``n_peers * classes_per_peer`` shards, give each peer ``classes_per_peer`` random shards.

    Choice: the paper cuts the label-sorted array into equal contiguous shards, so a shard
    can straddle two labels and a peer then holds more than ``k`` classes. Here each
    shard lies within one class: class ``c`` gets ``1 + `` its largest-remainder share of
    the other ``n_peers * k - C`` shards (proportional to its size) and its shuffled
    samples are cut into that many near-equal pieces. With equal class sizes and
    ``n_peers * k`` a multiple of ``C`` this is the paper's split; in every case a peer
    holds at most ``k`` classes. Requires ``n_peers * k >= C`` (else some class could not
    be given to anyone). Default ``classes_per_peer`` 2 (the paper's value).
    """
    labels = _as_labels(labels)
    n_peers = _check_n_peers(n_peers, len(labels))
    k = int(classes_per_peer)
    classes = np.unique(labels)
    if k < 1 or k > len(classes):
        raise ValueError(f"shards: classes_per_peer must be in [1, {len(classes)}] (the number of "
                         f"classes); got {classes_per_peer}")
    n_shards = n_peers * k
    if n_shards < len(classes):
        raise ValueError(f"shards: n_peers * classes_per_peer = {n_shards} is less than the "
                         f"{len(classes)} classes; some class would belong to no peer")
    sizes = np.array([np.sum(labels == c) for c in classes])
    if n_shards > len(labels):
        raise ValueError(f"shards: {n_shards} shards need at least as many samples; got {len(labels)}")
    shard_counts = 1 + _largest_remainder(sizes.astype(np.float64), n_shards - len(classes))
    # A class with fewer samples than shards would give empty shards: move them elsewhere.
    while np.any(shard_counts > sizes):
        over = int(np.argmax(shard_counts - sizes))
        shard_counts[over] -= 1
        room = np.flatnonzero(shard_counts < sizes)
        shard_counts[room[np.argmax((sizes - shard_counts)[room])]] += 1
    draw = rng.sequence(seed)
    all_shards: list[np.ndarray] = []
    for c, count in zip(classes, shard_counts):
        all_shards += np.array_split(draw.permutation(np.flatnonzero(labels == c)), count)
    order = draw.permutation(n_shards)
    return _sorted(np.concatenate([all_shards[s] for s in order[p * k:(p + 1) * k]])
                   for p in range(n_peers))


def _deal_classes(labels: np.ndarray, holders, n_peers: int, draw, name: str, hint: str) -> list[np.ndarray]:
    """Each class's shuffled samples split evenly among ``holders[c]`` (the peers holding
    class ``c``), classes in order, one permutation each from ``draw``; a present class
    nobody holds, or with fewer samples than holders, is a ``ValueError`` naming ``name``
    (``hint`` says what to raise)."""
    parts: list[list[np.ndarray]] = [[] for _ in range(n_peers)]
    for c in range(len(holders)):
        idx = np.flatnonzero(labels == c)
        if len(idx) == 0:
            continue
        if len(holders[c]) == 0:
            raise ValueError(f"{name}: class {c} is held by no peer {hint}")
        if len(idx) < len(holders[c]):
            raise ValueError(f"{name}: class {c} has {len(idx)} samples for {len(holders[c])} peers")
        for peer, piece in zip(holders[c], np.array_split(draw.permutation(idx), len(holders[c]))):
            parts[peer].append(piece)
    return _sorted(np.concatenate(p) if p else _EMPTY for p in parts)


@register("partitions", "cyclic")
def cyclic(labels, n_peers: int, seed: int, classes_per_peer: int = 4) -> list[np.ndarray]:
    """The non-iid split of Bristle (Verbraeken, de Vos, Pouwelse 2021, "Bristle: decentralized
    federated learning in Byzantine, non-i.i.d. environments"): peer ``i``
    holds the ``k`` consecutive classes ``i, i+1, ..., i+k-1 (mod C)``, and each class's
    (shuffled) samples are split evenly among the peers holding it.

    ``C = max(label) + 1``. Requires every class present in ``labels`` to be held by some
    peer (``n_peers + k - 1 >= C`` when ``n_peers < C``) and to have at least as many
    samples as holders. Default ``classes_per_peer`` 4.
    """
    labels = _as_labels(labels)
    n_peers = _check_n_peers(n_peers, len(labels))
    n_classes = int(labels.max()) + 1
    k = int(classes_per_peer)
    if k < 1 or k > n_classes:
        raise ValueError(f"cyclic: classes_per_peer must be in [1, {n_classes}] (the number of "
                         f"classes); got {classes_per_peer}")
    holders: list[list[int]] = [[] for _ in range(n_classes)]
    for peer in range(n_peers):
        for j in range(k):
            holders[(peer + j) % n_classes].append(peer)
    return _deal_classes(labels, holders, n_peers, rng.sequence(seed), "cyclic",
                         f"({n_peers} peers x classes_per_peer {k} < {n_classes} classes); raise either")


@register("partitions", "label_groups")
def label_groups(labels, n_peers: int, seed: int, classes_per_peer: int = 5) -> list[np.ndarray]:
    """Label-separated split: the classes are cut into blocks of ``k = classes_per_peer``
    consecutive classes (``0..k-1``, ``k..2k-1``, ...; the last may be shorter), the peers
    into as many contiguous blocks (``numpy.array_split`` of ``0..n_peers-1``), and block
    ``g``'s peers share the shuffled samples of block ``g``'s classes evenly: they hold
    the same classes and no other block holds them. ``k = C / 2`` is the non-iid dumbbell
    of He, Karimireddy, Jaggi (2022), ClippedGossip (``codes/sampler.py``,
    ``DumbbellSampler`` with ``noniid = 1``: clique 1 holds labels ``0..C/2-1``, clique 2
    the rest). Requires at least as many peers as blocks. Default ``k = 5``.
    """
    labels = _as_labels(labels)
    n_peers = _check_n_peers(n_peers, len(labels))
    n_classes = int(labels.max()) + 1
    k = int(classes_per_peer)
    if not 1 <= k <= n_classes:
        raise ValueError(f"label_groups: classes_per_peer must be in [1, {n_classes}]; got {classes_per_peer}")
    blocks = [np.arange(start, min(start + k, n_classes)) for start in range(0, n_classes, k)]
    if len(blocks) > n_peers:
        raise ValueError(f"label_groups: {len(blocks)} class blocks of {k} need at least as many peers; "
                         f"got {n_peers}")
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = [_EMPTY] * n_peers
    for peers, classes in zip(np.array_split(np.arange(n_peers), len(blocks)), blocks):
        idx = rng.permutation(np.flatnonzero(np.isin(labels, classes)))
        for peer, piece in zip(peers, np.array_split(idx, len(peers))):
            parts[int(peer)] = piece
    return _sorted(parts)


def drift_classes(peer, phase, n_classes: int, classes_per_peer: int, stagger: int = 1):
    """The classes peer ``peer`` trains on in phase ``phase`` of the ``drift`` partition:
    ``(stagger * peer + phase * k + j) mod C`` for ``j < k``. Works elementwise on arrays
    of peers and phases (an extra trailing axis of ``k`` classes)."""
    k = int(classes_per_peer)
    start = int(stagger) * np.asarray(peer)[..., None] + np.asarray(phase)[..., None] * k
    return (start + np.arange(k)) % int(n_classes)


def drift_phase(round_, drift_every: int, phases: int):
    """The phase of round ``round_`` (1-based; elementwise on arrays): phases last
    ``drift_every`` rounds and cycle, ``((round - 1) // drift_every) mod phases``."""
    return ((np.asarray(round_) - 1) // int(drift_every)) % int(phases)


@register("partitions", "drift")
def drift(labels, n_peers: int, seed: int, classes_per_peer: int = 2, phases: int = 2,
          stagger: int = 1) -> list[np.ndarray]:
    """Class sets that drift over time (continual learning across peers): peer ``p``
    trains in phase ``s`` on the ``k`` classes of :func:`drift_classes`,
    ``(stagger p + s k + j) mod C``; phases last ``data.partition.drift_every`` rounds and
    cycle (:func:`drift_phase`), and the engine draws each round's batches from the
    current phase's classes only (``fedsim.engine.peer_group.batch_positions``).

    A peer holds the samples of every class of its ``phases`` phases (``phases * k <= C``
    distinct classes); each class's shuffled samples are split evenly among the peers
    holding it, as in :func:`cyclic` (whose one phase this is, with ``stagger`` 1).
    ``stagger`` 1: consecutive peers' sets are offset by one class, so in every phase
    each class is trained by some peer when ``n_peers >= C``; ``stagger`` 0: every peer
    holds the same classes in a phase, and the whole federation moves on together
    (class-incremental continual learning). Defaults: ``k`` 2, ``phases`` 2, ``stagger`` 1.
    """
    labels = _as_labels(labels)
    n_peers = _check_n_peers(n_peers, len(labels))
    n_classes = int(labels.max()) + 1
    k, phases = int(classes_per_peer), int(phases)
    if k < 1 or phases < 1 or k * phases > n_classes:
        raise ValueError(f"drift: classes_per_peer x phases must be at most the {n_classes} classes "
                         f"(each phase its own classes); got {k} x {phases}")
    if int(stagger) < 0:
        raise ValueError(f"drift: stagger must be >= 0; got {stagger}")
    held = drift_classes(np.arange(n_peers)[:, None], np.arange(phases)[None, :], n_classes, k, stagger)
    holders = [np.flatnonzero((held.reshape(n_peers, -1) == c).any(axis=1)) for c in range(n_classes)]
    return _deal_classes(labels, holders, n_peers, rng.sequence(seed), "drift",
                         f"({n_peers} peers); raise n_peers, classes_per_peer, phases or stagger")


def local_test_split(indices, labels, test_per_class: int, seed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train_idx, test_idx, classes)`` of one peer's samples (Bristle's kappa test set).

    ``indices`` index into ``labels``. The peer's held classes are those with at least 2 of
    its samples; for each, ``min(test_per_class, count // 2)`` seeded samples go to the
    local test set, so at least half stay for training. ``classes`` is a sorted int64
    array; ``train_idx`` and ``test_idx`` are sorted values taken from ``indices``.
    ``seed``: the split's own seed; a run gives peer ``p`` ``fedsim.rng.local_test_seed(seed, p)``.
    """
    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels)
    if int(test_per_class) < 0:
        raise ValueError(f"test_per_class must be >= 0; got {test_per_class}")
    draw = rng.sequence(seed)
    own = labels[indices]
    values, counts = np.unique(own, return_counts=True)
    classes = values[counts >= 2].astype(np.int64)
    test = [draw.permutation(indices[own == c])[:min(int(test_per_class), int(np.sum(own == c)) // 2)]
            for c in classes]
    test_idx = np.sort(np.concatenate(test)).astype(np.int64) if test else _EMPTY
    train_idx = np.sort(np.setdiff1d(indices, test_idx)).astype(np.int64)
    return train_idx, test_idx, np.sort(classes)
