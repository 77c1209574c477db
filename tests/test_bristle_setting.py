"""The Bristle paper's setting: a backbone pre-trained on a disjoint class subset, the
reference's training rule for missing classes, the class overlap the engine gives
Bristle, the paper's attacks and Krum variant, and rounds to an accuracy target."""
import json

import pytest
import torch

import fedsim
from attacks import get_attack
from attacks.byzantine.label_flip import shift_labels, swap_first_two
from attacks.byzantine.split_noise import split_noise
from defenses import get_defense
from fedsim import config
from fedsim.api import AttackerView
from fedsim.engine.host import Plugins
from fedsim.engine.peer_group import PeerGroup
from fedsim.engine.exchange import class_membership, class_overlap
from fedsim.models.backbones import build_backbone
from fedsim.models.heads import init_head
from fedsim.models.pretrain import pretrain_backbone
from fedsim.runner import rounds_to_accuracy
from fedsim.world import PeerData, World
from tests.conftest import tiny_scenario


# ------------------------------------------------------------------ pre-training subset

def test_pretraining_on_a_class_subset_ignores_the_other_classes_images():
    # Second method: replace every image of the classes outside the subset by noise; the
    # pre-trained backbone must come out bit for bit the same.
    g = torch.Generator().manual_seed(0)
    images = torch.rand(90, 1, 8, 8, generator=g)
    labels = torch.arange(90) % 3
    images[labels == 0, :, :4] += 1.0
    images[labels == 1, :, 4:] += 1.0
    noisy = images.clone()
    noisy[labels == 2] = torch.rand(int((labels == 2).sum()), 1, 8, 8, generator=g) * 5

    def pretrained(imgs):
        torch.manual_seed(0)
        model = build_backbone("cnn", (1, 8, 8), channels=[4, 8], feature_dim=8)
        stats = pretrain_backbone(model, imgs, labels, 3, epochs=2, lr=1e-2, batch_size=8, classes=[0, 1])
        return model, stats

    a, stats = pretrained(images)
    b, _ = pretrained(noisy)
    assert stats["n_samples"] == 60
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_scenario_pretrain_classes_reach_the_backbone(tmp_path):
    def pretrained_on(classes):
        summary, _ = fedsim.run(tiny_scenario(**{"rounds": 1, "eval_every": 1,
                                                 "model.pretrain": {"epochs": 1, "classes": classes}}),
                                out=tmp_path / str(classes), progress=False)
        return summary["pretrain"]["n_samples"]

    # Digits: 10 classes of nearly equal size, so the public samples of classes 0-2 and
    # of classes 3-9 add up to all of them, and three classes are about 3/10 of it.
    few, rest, every = pretrained_on([0, 1, 2]), pretrained_on(list(range(3, 10))), pretrained_on(None)
    assert few + rest == every
    assert 0.2 < few / every < 0.4


# ------------------------------------------------------------------- rounds to target

def test_rounds_to_accuracy_is_the_first_round_at_or_above_the_target():
    rows = [{"round": 5, "accuracy_mean": 0.5}, {"round": 10, "accuracy_mean": 0.9},
            {"round": 15, "accuracy_mean": 0.85}, {"round": 20, "accuracy_mean": 0.95}]
    assert rounds_to_accuracy(rows, 0.9) == 10
    assert rounds_to_accuracy(rows, 0.91) == 20
    assert rounds_to_accuracy(rows, 0.96) is None
    assert rounds_to_accuracy([], 0.9) is None


def test_summary_reports_rounds_to_the_configured_target(tmp_path):
    summary, run_dir = fedsim.run(tiny_scenario(**{"output.target_accuracy": 0.3}), out=tmp_path / "r",
                                  progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    reached = [r["round"] for r in rows if r["accuracy_mean"] >= 0.3]
    assert summary["target_accuracy"] == 0.3
    assert summary["rounds_to_accuracy"] == (reached[0] if reached else None)
    assert summary["rounds_to_accuracy"] is not None  # digits passes 30 % within 4 rounds


# ----------------------------------------------- the reference's missing-class rows

def small_world(missing_class_rows):
    """3 peers, C = 4, D = 3; peer p holds classes {p, p + 1} (its training labels)."""
    s = config.from_dict({"training": {"lr": 0.1, "local_steps": 3, "batch_size": 4,
                                       "missing_class_rows": missing_class_rows},
                          "topology": {"kind": "complete", "n_peers": 3}})
    g = torch.Generator().manual_seed(0)
    features = torch.randn(30, 3, generator=g)
    labels = torch.tensor([p + (i % 2) for p in range(3) for i in range(10)])
    offsets = torch.tensor([0, 10, 20, 30])
    rows = torch.arange(30)
    classes = [torch.tensor([p, p + 1]) for p in range(3)]
    peers = PeerData(rows, labels, offsets, rows[:0], labels[:0], torch.zeros(4, dtype=torch.long), classes)
    return World(scenario=s, n_peers=3, n_classes=4, feature_dim=3, features=features, peers=peers,
                 test_features=features[:5], test_labels=labels[:5], init_head=init_head(4, 3, 0),
                 byzantine_ids=[], curious_ids=[], honest_ids=[0, 1, 2], image_shape=(3,))


def test_sent_heads_keep_the_pretraining_rows_of_missing_classes():
    def first_round(rule):
        world = small_world(rule)
        group = PeerGroup(world, range(3), Plugins.build(world.scenario))
        start = group.heads.clone()
        sent = group.train(1)
        return world, start, sent, group.heads.clone()

    world, start, sent_keep, trained_keep = first_round("keep")
    _, _, sent_train, trained_train = first_round("train")
    # Training itself is the same: every row moves in the peer's own head (full softmax).
    assert torch.equal(trained_keep, trained_train)
    assert torch.equal(sent_train, trained_train)
    for peer, classes in enumerate(world.peers.classes):
        held = torch.zeros(4, dtype=torch.bool)
        held[classes] = True
        assert torch.equal(sent_keep[peer, held], trained_keep[peer, held])
        assert torch.equal(sent_keep[peer, ~held], start[peer, ~held])
        assert not torch.equal(trained_keep[peer, ~held], start[peer, ~held])


# ------------------------------------------------------------------ class overlap

def test_class_overlap_by_hand():
    # Receiver 0 holds {0, 1, 2}; sender 1 {2, 3}, sender 2 {5}, sender 3 (lying, holds
    # {4} but states 9 classes): min(9, 3) = 3; sender 4 states 2 = its true count: its
    # true overlap {1} -> 1.
    class World:
        n_peers, n_classes = 5, 10

        class peers:
            classes = [torch.tensor([0, 1, 2]), torch.tensor([2, 3]), torch.tensor([5]), torch.tensor([4]),
                       torch.tensor([1, 7])]

    membership = class_membership(World)
    assert membership.shape == (6, 10) and not membership[5].any()
    claimed = torch.tensor([3, 2, 1, 9, 2, -1])
    assert class_overlap(membership, 0, torch.tensor([1, 2, 3, 4]), claimed).tolist() == [1, 0, 3, 1]
    # Seen from sender 1 ({2, 3}): receiver 0 shares {2}.
    assert class_overlap(membership, 1, torch.tensor([0]), claimed).tolist() == [1]


# ------------------------------------------------------------------ the paper's attacks

def test_label_flip_all_shifts_every_label_down_by_one():
    labels = torch.tensor([0, 1, 5, 9])
    assert shift_labels(labels, 10, -1).tolist() == [9, 0, 4, 8]
    assert get_attack("label_flip", shift=-1).poison(None, labels, 10, None).labels.tolist() == [9, 0, 4, 8]


def test_label_flip_two_swaps_the_two_lowest_held_classes():
    labels = torch.tensor([3, 4, 5, 6, 4, 3])
    assert swap_first_two(labels).tolist() == [4, 3, 5, 6, 3, 4]
    assert swap_first_two(torch.tensor([7, 7])).tolist() == [7, 7]
    poisoned = get_attack("label_flip", swap_first_two=True).poison(None, labels, 10, None)
    assert poisoned.labels.tolist() == [4, 3, 5, 6, 3, 4]


def test_label_flip_rules_do_not_combine():
    with pytest.raises(ValueError):
        get_attack("label_flip", shift=-1, swap_first_two=True)


def test_split_noise_is_negative_on_the_first_half_of_the_classes():
    noise = split_noise(5, 4, 0.5, torch.Generator().manual_seed(0))
    # C = 5: rows 0, 1 (5 // 2 = 2) in [-0.5, 0], rows 2-4 in [0, 0.5]; the uniform draws
    # times the signed scale, entry by entry.
    u = torch.rand(5, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noise[:2], -0.5 * u[:2]) and torch.equal(noise[2:], 0.5 * u[2:])
    view = AttackerView(round=1, byzantine_ids=[3, 4], receivers={3: [0, 1], 4: [0]},
                        observed=torch.zeros(0, 5, 4), observed_ids=[], own_heads=torch.zeros(2, 5, 4),
                        rng=torch.Generator().manual_seed(1), n_peers=5, n_classes=5)
    sent = get_attack("split_noise").craft(view)
    assert set(sent) == {(3, 0), (3, 1), (4, 0)}
    assert not torch.equal(sent[(3, 0)], sent[(3, 1)])  # fresh noise per receiver
    for head in sent.values():
        assert (head[:2] <= 0).all() and (head[2:] >= 0).all() and head.abs().max() <= 0.5


def test_krum_average_with_own_halves_the_way_to_the_chosen_head():
    # Own 0, received 1, 1.1, 10 (C = 1, D = 0: one number each), f = 0: n = 4 candidates,
    # scores over the 2 nearest: 0 -> 1 + 1.21 = 2.21, 1 -> 1 + 0.01 = 1.01,
    # 1.1 -> 0.01 + 1.21 = 1.22, 10 -> 79.21 + 81 = 160.21: Krum picks 1 -> (0 + 1) / 2.
    own = torch.zeros(1, 1)
    received = torch.tensor([[[1.0]], [[1.1]], [[10.0]]])
    assert get_defense("krum", f=0).aggregate(own, received).item() == 1.0
    assert get_defense("krum", f=0, average_with_own=True).aggregate(own, received).item() == 0.5
