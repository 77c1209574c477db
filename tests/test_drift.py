"""The drift partition: peers' class sets change over round ranges (continual learning)."""
import dataclasses

import numpy as np
import pytest
import torch

from fedsim import config
from fedsim.data.partition import drift, drift_classes, drift_phase
from fedsim.engine.peer_group import batch_positions
from tests.test_peer_group import make_world


def test_classes_and_phases_by_hand():
    # k = 2, C = 10: peer 3 in phase 1 holds 3 + 2 + {0, 1} = {5, 6}; peer 9 in phase 0 {9, 0}
    assert drift_classes(3, 1, 10, 2).tolist() == [5, 6]
    assert drift_classes(np.array([9]), np.array([0]), 10, 2).tolist() == [[9, 0]]
    # drift_every 3, 2 phases: rounds 1-3 phase 0, 4-6 phase 1, 7-9 phase 0 again
    assert drift_phase(np.arange(1, 10), 3, 2).tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0]


def test_partition_gives_each_peer_the_classes_of_all_its_phases():
    labels = np.repeat(np.arange(10), 24)
    parts = drift(labels, 8, seed=0, classes_per_peer=2, phases=2)
    assert sorted(np.concatenate(parts).tolist()) == list(range(240))  # disjoint, covering
    for peer, idx in enumerate(parts):
        assert sorted(set(labels[idx].tolist())) == sorted({(peer + j) % 10 for j in range(4)})
    # class 0 is held by peers 7 (phase 0: {7, 8}; phase 1: {9, 0}) and 0: 24 samples, 12 each
    assert [int(np.sum(labels[parts[p]] == 0)) for p in (0, 7)] == [12, 12]
    with pytest.raises(ValueError, match="held by no peer"):
        drift(labels, 6, seed=0, classes_per_peer=2, phases=2)  # class 9: peers 0..5 reach class 8
    with pytest.raises(ValueError, match="at most"):
        drift(labels, 8, seed=0, classes_per_peer=4, phases=3)


def test_batches_come_from_the_current_phase_only():
    world = make_world(C=4)
    s = world.scenario.to_dict()
    s["data"]["partition"] = {"kind": "drift", "classes_per_peer": 1, "phases": 3, "drift_every": 2}
    world = dataclasses.replace(world, scenario=config.from_dict(s))
    for round_, phase in ((1, 0), (2, 0), (3, 1), (5, 2), (7, 0)):
        labels = world.peers.train_labels[batch_positions(world, np.arange(5), round_)]
        for peer in range(5):
            assert set(labels[peer].tolist()) == {(peer + phase) % 4}
    # a row's draw key sets its phase: peer 1 keyed by round 3 (phase 1) draws class 2
    labels = world.peers.train_labels[batch_positions(world, np.array([1]), 1, draw_keys=np.array([3]))]
    assert set(labels[0].tolist()) == {2}


def test_peer_without_samples_of_its_phase_draws_from_all():
    world = make_world(C=4)
    s = world.scenario.to_dict()
    s["data"]["partition"] = {"kind": "drift", "classes_per_peer": 1, "phases": 2, "drift_every": 1}
    world = dataclasses.replace(world, scenario=config.from_dict(s))
    labels = world.peers.train_labels.clone()
    a, b = int(world.peers.train_offsets[0]), int(world.peers.train_offsets[1])
    labels[a:b] = 3  # peer 0 (phase 0 class 0) holds only class 3
    world = dataclasses.replace(world, peers=dataclasses.replace(world.peers, train_labels=labels))
    pos = batch_positions(world, np.array([0]), 1)
    assert torch.all((pos >= a) & (pos < b))


def test_stagger_zero_moves_every_peer_together():
    # stagger 0, k = 5: every peer holds classes 0-4 in phase 0 and 5-9 in phase 1
    assert drift_classes(np.arange(3), np.array([1, 1, 1]), 10, 5, stagger=0).tolist() == [[5, 6, 7, 8, 9]] * 3
    labels = np.repeat(np.arange(10), 9)
    parts = drift(labels, 3, seed=0, classes_per_peer=5, phases=2, stagger=0)
    assert [len(p) for p in parts] == [30, 30, 30]
    for idx in parts:
        assert sorted(set(labels[idx].tolist())) == list(range(10))
    with pytest.raises(ValueError, match="held by no peer"):
        drift(labels, 3, seed=0, classes_per_peer=2, phases=2, stagger=0)  # classes 4-9 unheld


def test_shipped_drift_scenario_is_valid():
    from tests.conftest import ROOT
    s = config.load(ROOT / "scenarios" / "drift_migu.yaml")
    assert (s.data.partition.kind, s.data.partition.stagger, s.data.partition.classes_per_peer) == ("drift", 0, 5)
