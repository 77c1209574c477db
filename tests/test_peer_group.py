"""PeerGroup's batched training, merging and evaluation against plain per-peer loops."""
import numpy as np
import torch

from fedsim import config, rng
from fedsim.engine.host import Plugins
from fedsim.engine.peer_group import PeerGroup
from fedsim.world import PeerData, World
from fedsim.models.heads import head_logits, init_head


def make_world(optimizer="sgd", defense="mean", n=5, C=3, D=4, seed=0):
    s = config.from_dict({"seed": seed, "training": {"optimizer": optimizer, "lr": 0.1, "local_steps": 3,
                                                      "batch_size": 4},
                          "topology": {"kind": "complete", "n_peers": n}, "defense": {"name": defense}})
    g = torch.Generator().manual_seed(0)
    features = torch.randn(60, D, generator=g)
    labels = torch.randint(0, C, (60,), generator=g)
    sizes = [7, 12, 9, 15, 17][:n]
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(sizes)]))
    rows = torch.arange(int(offsets[-1]))
    peers = PeerData(rows, labels[rows], offsets, rows[:0], labels[:0], torch.zeros(n + 1, dtype=torch.long),
                     [torch.arange(C)] * n)
    return World(scenario=s, n_peers=n, n_classes=C, feature_dim=D, features=features, peers=peers,
                 test_features=features[:20], test_labels=labels[:20], init_head=init_head(C, D, seed),
                 byzantine_ids=[], curious_ids=[], honest_ids=list(range(n)), image_shape=(D,))


def group_of(world, peer_ids):
    """A PeerGroup of ``peer_ids`` with the plugins of ``world``'s scenario."""
    return PeerGroup(world, peer_ids, Plugins.build(world.scenario))


def reference_train(world, peer, round_):
    """One peer, plain SGD loop with autograd, batches drawn from the same keyed uniforms."""
    t = world.scenario.training
    head = world.init_head.clone().requires_grad_(True)
    a, b = int(world.peers.train_offsets[peer]), int(world.peers.train_offsets[peer + 1])
    u = rng.uniform(world.seed, [peer], round_, "batch", t.local_steps * t.batch_size)[0]
    positions = a + np.floor(u * (b - a)).astype(np.int64)
    for step in range(t.local_steps):
        pos = torch.as_tensor(positions[step * t.batch_size:(step + 1) * t.batch_size])
        x, y = world.features[world.peers.train_rows[pos]], world.peers.train_labels[pos]
        loss = torch.nn.functional.cross_entropy(head_logits(head, x), y)
        (grad,) = torch.autograd.grad(loss, head)
        head = (head - t.lr * grad).detach().requires_grad_(True)
    return head.detach()


def test_batched_sgd_equals_per_peer_autograd_loop():
    world = make_world()
    group = group_of(world, range(5))
    sent = group.train(round_=2)
    for peer in range(5):
        assert torch.allclose(sent[peer], reference_train(world, peer, 2), atol=1e-6)


def test_grouping_does_not_change_training():
    world = make_world(optimizer="adam")
    whole = group_of(world, range(5)).train(1)
    parts = torch.cat([group_of(world, [0, 1]).train(1), group_of(world, [2, 3, 4]).train(1)])
    assert torch.equal(whole, parts)


def test_mean_merge_with_padding_by_hand():
    world = make_world(n=3, C=1, D=1)
    group = group_of(world, range(3))
    group.heads = torch.tensor([[[1.0, 0.0]], [[2.0, 0.0]], [[4.0, 0.0]]])
    sent = group.heads.clone()
    # peer 0 hears 1 and 2; peer 1 hears 0 only; peer 2 hears nobody (padding -1)
    neighbours = np.array([[1, 2], [0, -1], [-1, -1]])
    stats = group.aggregate(1, torch.cat([sent, torch.zeros(1, 1, 2)]), neighbours,
                            torch.full((4,), -1), {}, honest_bytes=8)
    # (1 + 2 + 4) / 3, (2 + 1) / 2, 4
    assert torch.allclose(group.heads[:, 0, 0], torch.tensor([7 / 3, 1.5, 4.0]))
    assert stats["delivered"] == 3 and stats["dropped"] == 0 and stats["bytes"] == 3 * 8


def test_evaluate_accuracy_by_hand():
    world = make_world(n=2, C=3, D=4)
    group = group_of(world, range(2))
    group.heads = torch.zeros(2, 3, 5)
    group.heads[0, :, -1] = torch.tensor([0.0, 1.0, 0.0])  # always predicts class 1
    feats, labels = torch.randn(4, 4), torch.tensor([1, 1, 0, 2])
    res = group.evaluate(feats, labels)
    assert res["accuracy"][0].item() == 0.5
    # peer 1: all logits 0 -> argmax picks class 0 -> one of four right; loss log(3)
    assert res["accuracy"][1].item() == 0.25
    assert abs(res["loss"][1].item() - np.log(3)) < 1e-6
