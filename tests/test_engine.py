"""Engine behaviour that only shows at a boundary: aggregation and evaluation split into
chunks, weight decay in the SGD step, the seeded evaluation subsample, and a topology
redrawn inside a run. Each result is checked against a hand computation."""
import json

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import fedsim
from fedsim import config, rng
from fedsim.engine import peer_group
from fedsim.models.heads import head_logits
from fedsim.results import RunDir
from fedsim.topology import Schedule, neighbour_matrix
from fedsim.world import build_world
from tests.conftest import tiny_scenario
from tests.test_peer_group import group_of, make_world


def with_scenario(world, **changes):
    """``world`` with its scenario's top-level sections updated by ``changes``."""
    s = world.scenario.to_dict()
    for key, value in changes.items():
        s[key] = {**s[key], **value} if isinstance(value, dict) else value
    world.scenario = config.from_dict(s)
    return world


# ------------------------------------------------------------------ chunking
RING5 = neighbour_matrix(nx.cycle_graph(5), 5)[0]  # each peer hears its two ring neighbours


def merge_round(world, chunk_rows=None, monkeypatch=None, rounds=1):
    """Heads after ``rounds`` merges on the ring of a group whose heads start at fixed
    random values; with ``chunk_rows``, aggregation runs in chunks of that many peers."""
    group = group_of(world, range(5))
    C, P = group.heads.shape[1:]
    if chunk_rows is not None:
        # the chunk size is _CHUNK_BYTES // (k * C * P * 4) peers
        monkeypatch.setattr(peer_group, "_CHUNK_BYTES", chunk_rows * RING5.shape[1] * C * P * 4)
    g = torch.Generator().manual_seed(3)
    group.heads = torch.randn(5, C, P, generator=g)
    for r in range(1, rounds + 1):
        group.previous = group.heads - torch.randn(5, C, P, generator=g)  # as if each peer had trained
        sent = torch.cat([group.heads.clone(), torch.zeros(1, C, P)])
        group.aggregate(r, sent, RING5, torch.full((6,), -1), {}, honest_bytes=4)
    return group.heads


def test_aggregation_chunk_boundary_equals_one_chunk_and_the_hand_mean(monkeypatch):
    world = make_world(n=5, C=3, D=4)
    start = torch.randn(5, 3, 5, generator=torch.Generator().manual_seed(3))
    whole = merge_round(world)
    chunked = merge_round(world, chunk_rows=2, monkeypatch=monkeypatch)  # chunks 0-1 | 2-3 | 4
    assert torch.equal(whole, chunked)
    for i in range(5):  # mean of own head and both ring neighbours
        by_hand = (start[i] + start[(i - 1) % 5] + start[(i + 1) % 5]) / 3
        assert torch.allclose(chunked[i], by_hand, atol=1e-6)


@pytest.mark.parametrize("defense", ["fltrust", "foolsgold"])
def test_aggregation_chunks_keep_each_peers_context_and_state(monkeypatch, defense):
    # FLTrust measures updates from the peer's own previous head; FoolsGold keeps a
    # history per peer across rounds: a chunk offset error would hand a peer another's.
    world = make_world(n=5, C=3, D=4, defense=defense)
    whole = merge_round(world, rounds=3)
    chunked = merge_round(world, chunk_rows=2, monkeypatch=monkeypatch, rounds=3)
    single = merge_round(world, chunk_rows=1, monkeypatch=monkeypatch, rounds=3)
    assert torch.equal(whole, chunked) and torch.equal(whole, single)


def test_evaluation_chunk_boundary_equals_one_chunk_and_the_direct_accuracy(monkeypatch):
    world = make_world(n=5, C=3, D=4)
    world.byzantine_ids, world.honest_ids = [2], [0, 1, 3, 4]  # not evaluated
    group = group_of(world, range(5))
    group.heads = torch.randn(5, 3, 5, generator=torch.Generator().manual_seed(5))
    feats, labels = world.test_features, world.test_labels
    whole = group.evaluate(feats, labels)
    m, C = feats.shape[0], 3
    monkeypatch.setattr(peer_group, "_EVAL_CHUNK_BYTES", 3 * m * C * 4)  # chunks of 3 honest peers
    chunked = group.evaluate(feats, labels)
    assert list(chunked["ids"]) == [0, 1, 3, 4]
    assert torch.equal(whole["accuracy"], chunked["accuracy"]) and torch.equal(whole["loss"], chunked["loss"])
    for row, peer in enumerate([0, 1, 3, 4]):
        W, b = group.heads[peer, :, :-1], group.heads[peer, :, -1]
        logits = feats @ W.T + b
        right = sum(int(logits[j].argmax()) == int(labels[j]) for j in range(m))
        assert chunked["accuracy"][row].item() == right / m
        assert chunked["loss"][row].item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)


# ------------------------------------------------------------- weight decay
def test_one_sgd_step_with_weight_decay_is_the_hand_formula():
    world = with_scenario(make_world(n=2, C=3, D=4),
                          training={"local_steps": 1, "batch_size": 4, "lr": 0.1, "weight_decay": 0.2})
    group = group_of(world, range(2))
    group.heads = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(7))
    start = group.heads.clone()
    group.train(round_=3)
    for peer in range(2):
        a, b = int(world.peers.train_offsets[peer]), int(world.peers.train_offsets[peer + 1])
        u = rng.uniform(world.seed, [peer], 3, "batch", 4)[0]  # the documented batch draw
        pos = torch.as_tensor(a + np.floor(u * (b - a)).astype(np.int64))
        x, y = world.features[world.peers.train_rows[pos]], world.peers.train_labels[pos]
        x1 = torch.cat([x, torch.ones(4, 1)], dim=1)
        p = torch.softmax(x1 @ start[peer].T, dim=1)
        grad = (p - F.one_hot(y, 3).float()).T @ x1 / 4  # softmax cross-entropy, batch mean
        expected = start[peer] - 0.1 * (grad + 0.2 * start[peer])
        assert torch.allclose(group.heads[peer], expected, atol=1e-6)
        # the decay term is large enough here that leaving it out would fail the test
        assert not torch.allclose(group.heads[peer], start[peer] - 0.1 * grad, atol=1e-3)


# ------------------------------------------------------------- eval_samples
@pytest.mark.slow
def test_eval_samples_is_the_seeded_subsample_and_accuracy_is_computed_on_it(tmp_path):
    sc = tiny_scenario(**{"rounds": 2, "eval_samples": 50})
    s = config.from_dict(sc)
    schedule = Schedule(s.topology.kind, s.topology.n_peers, s.seed, s.topology.args)
    full = build_world(config.from_dict(tiny_scenario(rounds=2)), schedule)
    sub = build_world(s, schedule)
    M = full.test_labels.shape[0]
    assert M > 50 and sub.test_labels.shape[0] == 50
    # the subsample: the 50 smallest of the uniforms keyed (seed, 0, 0, "eval_subsample"),
    # kept in the test set's order
    u = rng.uniform(s.seed, [0], 0, "eval_subsample", M)[0]
    keep = np.sort(np.argsort(u)[:50])
    assert torch.equal(sub.test_features, full.test_features[keep])
    assert torch.equal(sub.test_labels, full.test_labels[keep])

    _, run_dir = fedsim.run(sc, out=tmp_path / "run", progress=False)
    last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    heads = RunDir(run_dir).latest_checkpoint()["peers"]["heads"]
    accuracies = [(head_logits(heads[i], sub.test_features).argmax(dim=1) == sub.test_labels).double().mean()
                  for i in sub.honest_ids]
    assert last["accuracy_mean"] == pytest.approx(float(np.mean(accuracies)), abs=1e-12)
    full_accuracies = [(head_logits(heads[i], full.test_features).argmax(dim=1) == full.test_labels)
                       .double().mean() for i in sub.honest_ids]
    assert float(np.mean(full_accuracies)) != float(np.mean(accuracies))  # the test can tell


# ----------------------------------------------------- resample_every in a run
def metrics(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k != "wall_time_s"}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def write_edges(path, graph):
    path.write_text("".join(f"{u} {v}\n" for u, v in sorted(graph.edges)))
    return str(path)


@pytest.mark.slow
def test_resample_every_redraws_the_graph_at_period_starts_and_peers_merge_over_it(tmp_path):
    topology = {"kind": "erdos_renyi", "n_peers": 8, "args": {"p": 0.5}, "resample_every": 2}
    sc = tiny_scenario(**{"rounds": 4, "topology": topology, "output.checkpoint_every": 2})
    schedule = Schedule("erdos_renyi", 8, 0, {"p": 0.5}, resample_every=2)
    g0 = schedule.graph(1)
    assert schedule.graph(2) is g0
    g1 = schedule.graph(3)
    assert schedule.graph(4) is g1
    assert set(g0.edges) != set(g1.edges) and g0.number_of_edges() != g1.number_of_edges()
    _, run_dir = fedsim.run(sc, out=tmp_path / "resampled", progress=False)
    rows = metrics(run_dir)

    # Bytes are counted where messages arrive: each round adds every edge twice (no
    # adversary), one float32 head per message, over the graph of the round's period.
    C, P = RunDir(run_dir).latest_checkpoint()["peers"]["heads"].shape[1:]
    sent = [rows[0]["bytes_sent"]] + [b["bytes_sent"] - a["bytes_sent"] for a, b in zip(rows, rows[1:])]
    edges = [g.number_of_edges() for g in (g0, g0, g1, g1)]
    assert sent == [2 * e * C * P * 4 for e in edges]

    # The same run on the fixed graph g0 for rounds 1-2, resumed with the edge file now
    # holding g1 for rounds 3-4, gives the same numbers: peers merged over g0, then g1.
    edges_file = tmp_path / "edges.txt"
    static = {"kind": "edgelist", "n_peers": 8, "args": {"path": write_edges(edges_file, g0)}}
    _, cut = fedsim.run(dict(sc, rounds=2, topology=static), out=tmp_path / "switched", progress=False)
    saved = yaml.safe_load((cut / "config.yaml").read_text())
    saved["rounds"] = 4
    (cut / "config.yaml").write_text(yaml.safe_dump(saved))
    write_edges(edges_file, g1)
    fedsim.run(None, resume=cut, progress=False)
    assert metrics(cut) == rows
    write_edges(edges_file, g0)
    # ... and staying on g0 does not (so the comparison above can fail)
    _, fixed = fedsim.run(dict(sc, topology=static), out=tmp_path / "fixed", progress=False)
    assert metrics(fixed)[:2] == rows[:2] and metrics(fixed)[2:] != rows[2:]


def test_each_schedule_period_is_built_from_its_documented_seed():
    # fedsim.rng.topology_seed: seed + 7919 * period; changing it would change every
    # resampled run's numbers
    from fedsim.topology import build
    schedule = Schedule("erdos_renyi", 12, 5, {"p": 0.3}, resample_every=3)
    for round_, period in ((1, 0), (3, 0), (4, 1), (9, 2), (10, 3)):
        expected = build("erdos_renyi", 12, 5 + 7919 * period, {"p": 0.3})
        assert set(schedule.graph(round_).edges) == set(expected.edges)
    first, second = (build("erdos_renyi", 12, seed, {"p": 0.3}) for seed in (5, 5 + 7919))
    assert set(first.edges) != set(second.edges)  # the periods do differ
