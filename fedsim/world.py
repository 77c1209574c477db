"""Everything about a run that does not change from round to round.

``build_world(scenario)`` loads the data, splits off the public set, partitions the
rest among peers, takes each peer's local test set out of its own data, pre-trains
(or loads from the cache) the frozen backbone and computes every sample's features,
chooses the Byzantine and curious peers and applies data-poisoning attacks. The
result is a plain, picklable :class:`World` that every backend shares read-only.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from fedsim import rng
from fedsim.config import Scenario, adversary_count
from fedsim.plugins import Plugins
from fedsim.topology import Schedule

log = logging.getLogger("fedsim")


@dataclass
class PeerData:
    """Every peer's samples as flat arrays with offsets (row ``i`` of peer ``p`` is
    ``rows[offsets[p] + i]``), so batched code can index all peers at once."""

    train_rows: torch.Tensor      # [T] rows of World.features
    train_labels: torch.Tensor    # [T]
    train_offsets: torch.Tensor   # [n+1]
    test_rows: torch.Tensor       # [V]
    test_labels: torch.Tensor     # [V]
    test_offsets: torch.Tensor    # [n+1]
    classes: list                 # per peer, sorted int64 tensor of held classes

    def train_count(self) -> torch.Tensor:
        return self.train_offsets[1:] - self.train_offsets[:-1]

    def train_slice(self, peer: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = int(self.train_offsets[peer]), int(self.train_offsets[peer + 1])
        return self.train_rows[a:b], self.train_labels[a:b]

    def test_slice(self, peer: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = int(self.test_offsets[peer]), int(self.test_offsets[peer + 1])
        return self.test_rows[a:b], self.test_labels[a:b]


@dataclass
class World:
    scenario: Scenario
    n_peers: int
    n_classes: int
    feature_dim: int
    features: torch.Tensor           # [R, D] every training row a peer can use
    peers: PeerData
    test_features: torch.Tensor      # [M, D] global test set (evaluation subsample)
    test_labels: torch.Tensor        # [M]
    init_head: torch.Tensor          # [C, D+1] common initial head
    byzantine_ids: list
    curious_ids: list
    honest_ids: list
    image_shape: tuple
    backdoor_features: Optional[torch.Tensor] = None  # triggered global test images
    backdoor_target: Optional[int] = None
    info: dict = field(default_factory=dict)
    # Only for gradient inversion: images of the private training rows, and the backbone.
    train_images: Optional[torch.Tensor] = None
    public_images: Optional[torch.Tensor] = None
    backbone: Any = None
    plugins: Any = None              # fedsim.plugins.Plugins, built once per process

    @property
    def seed(self) -> int:
        return self.scenario.seed


def _flat(groups: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.array([len(g) for g in groups], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
    return torch.as_tensor(flat.astype(np.int64)), torch.as_tensor(offsets)


def local_test_splits(peer_indices: list[np.ndarray], labels: np.ndarray, test_per_class: int,
                      seed: int) -> tuple[list, list, list]:
    """``fedsim.data.partition.local_test_split`` of every peer (peer ``p`` with the seed
    ``fedsim.rng.local_test_seed(seed, p)``): ``(train, test, classes)`` lists.

    Without a local test set (``test_per_class`` 0) nothing is drawn, so all peers are
    split at once: train = the peer's indices, classes = the labels it holds at least
    twice (one ``bincount`` instead of a Python call per peer, which took minutes at
    100,000 peers). With a test set each peer draws from its own seed, peer by peer.
    """
    from fedsim.data.partition import local_test_split
    if test_per_class:
        splits = [local_test_split(idx, labels, test_per_class, rng.local_test_seed(seed, peer))
                  for peer, idx in enumerate(peer_indices)]
        return ([np.asarray(tr, dtype=np.int64) for tr, _, _ in splits],
                [np.asarray(te, dtype=np.int64) for _, te, _ in splits],
                [torch.as_tensor(np.asarray(cl, dtype=np.int64)) for _, _, cl in splits])
    n = len(peer_indices)
    n_classes = int(labels.max()) + 1 if len(labels) else 1
    lengths = np.array([len(idx) for idx in peer_indices], dtype=np.int64)
    flat = np.concatenate(peer_indices).astype(np.int64) if n else np.zeros(0, dtype=np.int64)
    owner = np.repeat(np.arange(n), lengths)
    counts = np.bincount(owner * n_classes + labels[flat], minlength=n * n_classes).reshape(n, n_classes)
    held_peer, held_class = np.nonzero(counts >= 2)
    per_peer = np.split(held_class.astype(np.int64), np.cumsum(np.bincount(held_peer, minlength=n))[:-1])
    train = [np.sort(idx.astype(np.int64)) for idx in peer_indices]
    return train, [np.zeros(0, dtype=np.int64)] * n, [torch.as_tensor(c) for c in per_peer]


def choose_roles(s: Scenario, graph) -> tuple[list, list]:
    """Byzantine ids (placement on the round-1 graph), then curious ids among the rest."""
    from fedsim.adversary import choose_byzantine
    n = s.topology.n_peers
    byzantine: list[int] = []
    if s.adversary is not None:
        if s.adversary.ids is not None:
            byzantine = sorted(set(s.adversary.ids))
        else:
            byzantine = list(choose_byzantine(graph, adversary_count(s), s.adversary.placement, s.seed))
    curious: list[int] = []
    if s.privacy is not None:
        if isinstance(s.privacy.curious, list):
            curious = sorted(set(s.privacy.curious) - set(byzantine))
        else:
            candidates = np.array([i for i in range(n) if i not in set(byzantine)])
            order = np.argsort(rng.uniform(s.seed, candidates, 0, "curious", 1)[:, 0], kind="stable")
            curious = sorted(int(i) for i in candidates[order[:s.privacy.curious]])
    return byzantine, curious


class _UserErrors:
    """Turn a ValueError/TypeError raised while building from the scenario's values into a
    ScenarioError naming the file and key path (a user error: exit 2, no traceback)."""

    def __init__(self, source: str, key: str):
        self.source, self.key = source, key

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from fedsim.config import ScenarioError
        if kind is not None and issubclass(kind, (ValueError, TypeError)) and not issubclass(kind, ScenarioError):
            raise ScenarioError(f"{self.source}: {self.key}: {exc}") from None
        return False


def build_world(s: Scenario, schedule: Schedule, keep_images: bool = False, source: str = "<scenario>") -> World:
    from fedsim.data.datasets import load_dataset
    from fedsim.data.partition import partition, split_public
    from fedsim.models.features import compute_features, prepare_features
    from fedsim.models.heads import fit_head, init_head

    t0 = time.perf_counter()
    with _UserErrors(source, "data"):
        args = dict(s.data.args)
        seed = args.pop("seed", s.seed)
        dataset = load_dataset(s.data.dataset, root=s.data.root, seed=seed,
                               test_fraction=s.data.test_fraction, **args)
    train_labels_np = dataset.train_labels.numpy()
    public_idx, private_idx = split_public(train_labels_np, s.data.public_fraction, s.seed)
    pretrain = s.model.pretrain.model_dump()
    with _UserErrors(source, "model"):
        fs = prepare_features(dataset, public_idx, backbone=s.model.backbone,
                              backbone_args=dict(s.model.backbone_args), pretrain=pretrain, seed=s.seed)
    n = s.topology.n_peers
    part = s.data.partition
    part_args = {"dirichlet": {"alpha": part.alpha, "min_samples": part.min_samples},
                 "shards": {"classes_per_peer": part.classes_per_peer},
                 "cyclic": {"classes_per_peer": part.classes_per_peer},
                 "drift": {"classes_per_peer": part.classes_per_peer, "phases": part.phases,
                           "stagger": part.stagger}}.get(part.kind, {})
    with _UserErrors(source, "data.partition"):
        groups = partition(part.kind, train_labels_np[private_idx], n, s.seed, **part_args)
    train_groups, test_groups, classes = local_test_splits([private_idx[g] for g in groups], train_labels_np,
                                                           s.data.test_per_class, s.seed)

    features = fs.train_features
    labels_all = dataset.train_labels
    graph = schedule.graph(1)
    byzantine, curious = choose_roles(s, graph)

    # Data poisoning: Byzantine peers train on changed data; new images get features
    # through the same frozen backbone and are appended as new rows.
    backdoor_features = backdoor_target = None
    train_labels_groups = np.split(labels_all.numpy()[np.concatenate(train_groups)],
                                   np.cumsum([len(g) for g in train_groups])[:-1]) if train_groups else []
    plugins = Plugins.build(s)
    attack = plugins.attack
    if attack is not None:
        if attack.poisons_data:
            extra_feats = []
            next_row = features.shape[0]
            for b in byzantine:
                g = rng.generator(s.seed, b, 0, "poison")
                rows = torch.as_tensor(train_groups[b])
                images = dataset.train_images[rows]
                poisoned = attack.poison(images, labels_all[rows].clone(), dataset.n_classes, g)
                if poisoned.images is not None:
                    extra_feats.append(compute_features(fs.backbone, poisoned.images))
                    count = poisoned.images.shape[0]
                    train_groups[b] = np.arange(next_row, next_row + count, dtype=np.int64)
                    next_row += count
                train_labels_groups[b] = poisoned.labels.numpy()
            if extra_feats:
                features = torch.cat([features] + extra_feats)
        evaluation = attack.evaluation_set(dataset.test_images, dataset.test_labels)
        if evaluation is not None:
            backdoor_features = compute_features(fs.backbone, evaluation.images)
            backdoor_target = int(evaluation.target)

    train_rows, train_offsets = _flat(train_groups)
    train_labels_flat = torch.as_tensor(np.concatenate(train_labels_groups).astype(np.int64)) \
        if train_labels_groups else torch.zeros(0, dtype=torch.int64)
    test_rows, test_offsets = _flat(test_groups)
    peers = PeerData(train_rows, train_labels_flat, train_offsets, test_rows,
                     labels_all[test_rows], test_offsets, classes)

    test_features, test_labels = fs.test_features, dataset.test_labels
    if s.eval_samples is not None and s.eval_samples < test_labels.shape[0]:
        order = np.argsort(rng.uniform(s.seed, [0], 0, "eval_subsample", test_labels.shape[0])[0], kind="stable")
        keep = torch.as_tensor(np.sort(order[:s.eval_samples]))
        test_features, test_labels = test_features[keep], test_labels[keep]
        if backdoor_features is not None:
            backdoor_features = backdoor_features[:s.eval_samples]

    honest = [i for i in range(n) if i not in set(byzantine)]
    if s.model.head_init == "public" and len(public_idx):
        public = torch.as_tensor(np.asarray(public_idx, dtype=np.int64))
        first_head = fit_head(fs.train_features[public], labels_all[public], dataset.n_classes, s.model.head,
                              head_args=s.model.head_args)
    else:
        first_head = init_head(dataset.n_classes, features.shape[1], s.seed)
    world = World(
        scenario=s, n_peers=n, n_classes=dataset.n_classes, feature_dim=features.shape[1],
        features=features.contiguous(), peers=peers, test_features=test_features.contiguous(),
        test_labels=test_labels, init_head=first_head,
        byzantine_ids=byzantine, curious_ids=curious, honest_ids=honest,
        image_shape=tuple(dataset.image_shape), backdoor_features=backdoor_features,
        backdoor_target=backdoor_target, plugins=plugins,
        info={"dataset_source": dataset.source, "from_cache": fs.from_cache,
              "pretrain": fs.pretrain_stats, "feature_key": fs.key,
              "setup_seconds": round(time.perf_counter() - t0, 3)},
    )
    if keep_images:
        world.train_images = dataset.train_images
        world.public_images = dataset.train_images[torch.as_tensor(np.asarray(public_idx, dtype=np.int64))]
        world.backbone = fs.backbone
    return world
