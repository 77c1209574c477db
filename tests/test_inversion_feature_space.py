"""Feature-space attacks (feature_matching, decoder, retrieval), iDLG and the top-k-aware
attacker, on real digits updates: the victims' updates are one SGD step of the textbook
softmax loss written here with autograd (not the engine's closed form), and the attacks
are compared with what an attacker gets without any update (the mean public image) and
with retrieval."""
import pytest
import torch
import torch.nn.functional as F

import attacks  # noqa: F401  (registers the inversions)
from attacks.inversion.feature_matching import per_sample_tv
from attacks.inversion.victim_features import recover_victim_features, sign_labels
from defenses.privacy.transforms import TopK
from fedsim import config
from fedsim.api import VictimUpdate
from fedsim.privacy_metrics import psnr
from fedsim.registry import create
from fedsim.topology import Schedule
from fedsim.world import build_world
from tests.conftest import tiny_scenario

N_VICTIMS = 6


@pytest.fixture(scope="module")
def digits():
    s = config.from_dict(tiny_scenario(), "<test>", None)
    world = build_world(s, Schedule(s.topology.kind, s.topology.n_peers, s.seed, s.topology.args), keep_images=True)
    labels = world.peers.train_labels
    rows = world.peers.train_rows
    # N_VICTIMS private samples of different classes, one victim each
    picked, seen = [], set()
    for position in range(rows.numel()):
        label = int(labels[position])
        if label not in seen:
            seen.add(label)
            picked.append((int(rows[position]), label))
        if len(picked) == N_VICTIMS:
            break
    return world, picked


def sgd_update(world, features, labels, lr=0.05):
    """One SGD step of mean softmax cross-entropy from the common initial head (autograd)."""
    head = world.init_head.clone().requires_grad_(True)
    F.cross_entropy(features @ head[:, :-1].T + head[:, -1], labels).backward()
    end = (head - lr * head.grad).detach()
    return VictimUpdate(world.init_head.clone(), end, 1, features.shape[0], lr, "sgd", "linear",
                        world.n_classes, world.image_shape)


def attack_psnr(name, world, picked, transform=None, **args):
    attack = create("inversions", name, **args)
    prior = attack.prepare(world.public_images, None, 0)
    scores = []
    for k, (row, label) in enumerate(picked):
        update = sgd_update(world, world.features[row:row + 1], torch.tensor([label]))
        if transform is not None:
            update = VictimUpdate(update.start_head, update.start_head + transform.apply(update.observed_delta),
                                  1, 1, update.lr, "sgd", "linear", world.n_classes, world.image_shape,
                                  transform=transform.replay(None))
        result = attack.reconstruct(update, world.backbone, prior, torch.Generator().manual_seed(k))
        assert result.labels.flatten().tolist() == [label]
        scores.append(float(psnr(result.images.reshape(1, *world.image_shape).clamp(0, 1),
                                 world.train_images[row:row + 1].reshape(1, *world.image_shape).float())))
    return sum(scores) / len(scores)


@pytest.fixture(scope="module")
def references(digits):
    world, picked = digits
    mean_image = world.public_images.float().mean(dim=0, keepdim=True)
    mean_psnr = sum(float(psnr(mean_image.reshape(1, *world.image_shape),
                               world.train_images[row:row + 1].reshape(1, *world.image_shape).float()))
                    for row, _ in picked) / len(picked)
    return {"mean_image": mean_psnr, "retrieval": attack_psnr("retrieval", world, picked, decoder_steps=1)}


def test_retrieval_beats_the_mean_public_image(references):
    assert references["retrieval"] > references["mean_image"] + 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name, args", [("decoder", {"decoder_steps": 1500}),
                                        ("feature_matching", {"decoder_steps": 1500, "iterations": 100})])
def test_feature_space_attacks_beat_the_mean_image_and_retrieval(digits, references, name, args):
    world, picked = digits
    value = attack_psnr(name, world, picked, **args)
    assert value > references["mean_image"] + 2.0
    assert value > references["retrieval"] + 0.5


@pytest.mark.slow
def test_topk_aware_attacker_reads_labels_from_signs_and_beats_the_mean_image(digits, references):
    world, picked = digits
    value = attack_psnr("feature_matching", world, picked, transform=TopK(fraction=0.1), kept_only=True,
                        decoder_steps=1500, iterations=100, feature_iterations=200)
    assert value > references["mean_image"] + 1.0


def test_stage_one_recovers_one_samples_features_exactly(digits):
    world, picked = digits
    row, label = picked[0]
    update = sgd_update(world, world.features[row:row + 1], torch.tensor([label]))
    starts = torch.zeros(1, 1, 1, world.features.shape[1])  # unused: one SGD sample is analytic
    feats = recover_victim_features(update, torch.tensor([[label]]), starts, 1, 0.1)
    assert torch.allclose(feats.flatten(), world.features[row], atol=1e-4 * float(world.features[row].abs().max()))


def test_stage_one_search_finds_a_batchs_features(digits):
    world, picked = digits
    rows = torch.tensor([r for r, _ in picked[:4]])
    labels = torch.tensor([lab for _, lab in picked[:4]])
    update = sgd_update(world, world.features[rows], labels)
    # starts: features of other public-like samples (the private rows after the victims')
    starts = world.features[rows + 50].view(1, 1, 4, -1)
    feats = recover_victim_features(update, labels.view(1, 4), starts, 300, 0.05)[0]
    cosine = F.cosine_similarity(feats, world.features[rows], dim=1)
    before = F.cosine_similarity(starts[0, 0], world.features[rows], dim=1)
    assert cosine.mean() > 0.9 and cosine.mean() > before.mean() + 0.1


def test_sign_labels_of_a_topk_update_by_hand():
    # 3 classes, features [x, 1] with x >= 0: the true class (1) is the only row with a
    # positive entry in H1 - H0 = -lr (p - onehot) [x, 1]; top-k keeps two entries
    start = torch.zeros(3, 3)
    x1 = torch.tensor([2.0, 0.5, 1.0])
    delta = -torch.outer(torch.full((3,), 1 / 3) - torch.eye(3)[1], x1)
    sent = TopK(k=2).apply(delta)
    assert sent[1, 0] > 0 and (sent[[0, 2]] <= 0).all()
    update = VictimUpdate(start, start + sent, 1, 1, 1.0, "sgd", "linear", 3, (2,))
    assert sign_labels(update).tolist() == [1]


def test_idlg_knows_the_labels_of_a_batch(digits):
    world, picked = digits
    rows = torch.tensor([r for r, _ in picked[:4]])
    labels = torch.tensor([lab for _, lab in picked[:4]])
    update = sgd_update(world, world.features[rows], labels)
    result = create("inversions", "idlg", iterations=2).reconstruct(update, world.backbone, None,
                                                                    torch.Generator().manual_seed(0))
    assert sorted(result.labels.flatten().tolist()) == sorted(labels.tolist())


def test_per_sample_tv_by_hand():
    images = torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]]])  # vertical, horizontal edge
    assert per_sample_tv(images).tolist() == [1.0, 1.0]
    assert per_sample_tv(torch.zeros(2, 1, 3, 3)).tolist() == [0.0, 0.0]


@pytest.mark.slow
def test_distinct_victims_attacks_each_neighbour_once(tmp_path):
    import fedsim
    privacy = {"curious": 3, "victims": 3, "rounds": [1], "attack": {"name": "retrieval", "args": {"decoder_steps": 1}}}
    every, _ = fedsim.run(tiny_scenario(rounds=1, privacy=privacy), out=tmp_path / "every", progress=False)
    once, _ = fedsim.run(tiny_scenario(rounds=1, privacy=dict(privacy, distinct_victims=True)),
                         out=tmp_path / "once", progress=False)
    victims = lambda s: [v["victim"] for v in s["privacy"]["per_victim"]]  # noqa: E731
    assert len(victims(every)) > len(set(victims(every)))      # this graph has shared neighbours
    assert sorted(victims(once)) == sorted(set(victims(every)))  # each of them once


def test_feature_matching_keeps_each_samples_lowest_feature_loss_over_restarts(digits):
    world, picked = digits
    rows = torch.tensor([r for r, _ in picked[:3]])
    target = world.features[rows]
    prior = create("inversions", "feature_matching").prepare(world.public_images[:200], None, 0)
    loss = lambda images: (world.backbone(images) - target).pow(2).sum(dim=1)  # noqa: E731
    with torch.no_grad():
        losses = {}
        for restarts in (1, 3):
            attack = create("inversions", "feature_matching", restarts=restarts, iterations=10, decoder_steps=50)
            with torch.enable_grad():
                images = attack.images_for(target, world.backbone, prior, torch.Generator().manual_seed(0))
            losses[restarts] = loss(images)
    assert (losses[3] <= losses[1] + 1e-6).all()   # restart 0 is the same start (u = f)
