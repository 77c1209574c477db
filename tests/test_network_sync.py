"""Synchronous rounds on the simulated network (``network.mode: sync``): participation,
message loss and churn, checked against what each peer must do by hand."""
import json

import networkx as nx
import numpy as np
import pytest
import torch

from fedsim import config, rng
from fedsim.engine.local import LocalBackend
from fedsim.network.churn import Presence, trace_toggles
from fedsim.network.sync import compact, participants, plan_round
from fedsim.runner import run
from fedsim.topology import neighbour_matrix
from tests.conftest import tiny_scenario
from tests.test_peer_group import group_of, make_world

N = 5
COMPLETE = neighbour_matrix(nx.complete_graph(N), N)[0]


def network(**changes):
    return config.Network(**changes)


def trained_alone(world, round_, ids):
    """Heads of peers ``ids`` after round ``round_``'s local training only (no merge)."""
    group = group_of(world, range(N))
    rows = torch.as_tensor(ids, dtype=torch.long)
    group.train(round_, rows=rows)
    return group.heads


def test_loss_one_means_no_head_changes_by_merging():
    world = make_world(n=N)
    plan = plan_round(network(links=config.Links(loss=1.0)), world.seed, 1, COMPLETE, Presence(None))
    assert plan.counts["messages_sent"] == N * (N - 1) == plan.counts["messages_lost"]
    assert (plan.neighbours == -1).all()
    backend = LocalBackend(world)
    stats = backend.round(1, nx.complete_graph(N), COMPLETE, plan)
    assert stats["delivered"] == 0
    assert torch.equal(backend.heads(), trained_alone(world, 1, range(N)))


def test_every_peer_offline_nothing_trains():
    world = make_world(n=N, optimizer="adam")
    offline = Presence(trace_toggles({p: [(50.0, 60.0)] for p in range(N)}, N))
    plan = plan_round(network(), world.seed, 3, COMPLETE, offline)
    assert len(plan.active) == 0 and plan.counts["messages_sent"] == 0
    backend = LocalBackend(world)
    backend.round(3, nx.complete_graph(N), COMPLETE, plan)
    assert torch.equal(backend.heads(), world.init_head.expand(N, -1, -1))
    assert int(backend.state_dict()["adam_steps"].sum()) == 0


def test_participation_draws_the_smallest_keyed_uniforms_and_the_rest_sit_out():
    world = make_world(n=N)
    u = rng.uniform(world.seed, np.arange(N), 2, "participation", 1)[:, 0]
    expected = np.sort(np.argsort(u)[:2])  # round(0.4 * 5) = 2 peers
    assert participants(world.seed, 2, np.arange(N), 0.4).tolist() == expected.tolist()
    plan = plan_round(network(participation=0.4), world.seed, 2, COMPLETE, Presence(None))
    assert plan.active.tolist() == expected.tolist()
    assert plan.counts["messages_sent"] == 2 * (N - 1) and plan.counts["messages_lost"] == 2 * (N - 2)
    backend = LocalBackend(world)
    backend.round(2, nx.complete_graph(N), COMPLETE, plan)
    trained = trained_alone(world, 2, expected)
    a, b = expected
    mean = (trained[a] + trained[b]) / 2  # each of the two hears the other only
    heads = backend.heads()
    for peer in range(N):
        want = mean if peer in expected else world.init_head
        torch.testing.assert_close(heads[peer], want, rtol=0, atol=1e-6)


def test_lossy_links_merge_only_what_arrived():
    world = make_world(n=N)
    plan = plan_round(network(links=config.Links(loss=0.5)), world.seed, 1, COMPLETE, Presence(None))
    arrived = plan.neighbours
    assert 0 < plan.counts["messages_lost"] < N * (N - 1)
    backend = LocalBackend(world)
    backend.round(1, nx.complete_graph(N), COMPLETE, plan)
    trained = trained_alone(world, 1, range(N))
    for peer in range(N):
        senders = [int(j) for j in arrived[peer] if j >= 0]
        want = torch.stack([trained[peer]] + [trained[j] for j in senders]).mean(dim=0)
        torch.testing.assert_close(backend.heads()[peer], want, rtol=0, atol=1e-6)


def test_compact_keeps_ascending_order_and_pads_right():
    nbr = np.array([[0, 2, 5, -1], [1, 3, 4, 6]])
    keep = np.array([[True, False, True, False], [False, True, False, True]])
    assert compact(nbr, keep).tolist() == [[0, 5, -1, -1], [3, 6, -1, -1]]


def test_churn_in_rounds_follows_the_clock():
    world = make_world(n=N)
    presence = Presence(trace_toggles({0: [(0.0, 2.5)], 1: [(3.0, 10.0)]}, N))
    online = [plan_round(network(round_s=1.0), world.seed, r, COMPLETE, presence).active.tolist()
              for r in (1, 3, 4, 5)]  # times 0, 2, 3, 4
    assert online == [[0, 2, 3, 4], [0, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]]


def test_time_plots_draw_accuracy_against_simulated_time_and_online_peers(tmp_path):
    from fedsim.plots import time_plots
    rows = [{"sim_time_s": t, "accuracy_mean": 0.5, "accuracy_min": 0.4, "accuracy_max": 0.6, "online_peers": n}
            for t, n in ((1.0, 5), (2.0, 3), (3.0, 4))]
    written = time_plots(rows, tmp_path, "t")
    assert [p.name for p in written] == ["accuracy_time.png", "online_peers.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)


@pytest.mark.slow
def test_a_default_sync_network_changes_no_number(tmp_path):
    # network: {} is sync mode with every peer online, taking part, and every message arriving
    plain = tiny_scenario(**{"adversary": {"count": 2, "attack": {"name": "sign_flip"}},
                             "defense": {"name": "trimmed_mean", "args": {"f": 1}}})
    _, a = run(plain, out=tmp_path / "a", progress=False)
    _, b = run({**plain, "network": {}}, out=tmp_path / "b", progress=False)
    rows = [[json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b)]
    for x, y in zip(*rows, strict=True):
        added = set(y) - set(x)
        assert added == {"sim_time_s", "online_peers", "active_peers", "messages_sent", "messages_lost",
                         "messages_delivered"}
        assert y["messages_lost"] == 0 and y["active_peers"] == 8
        assert {k: v for k, v in x.items() if k != "wall_time_s"} == \
            {k: v for k, v in y.items() if k in x and k != "wall_time_s"}
