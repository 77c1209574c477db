"""Asynchronous gossip on a simulated clock (``network.mode: async``): hand-worked event
times, message loss, churn, staleness, determinism and resume."""
import json
import shutil

import numpy as np
import pytest
import torch

from fedsim import config
from fedsim.engine.async_engine import AsyncGossip
from fedsim.engine.local import LocalBackend
from fedsim.plugins import Plugins
from fedsim.runner import run
from fedsim.topology import Schedule
from tests.conftest import tiny_scenario
from tests.test_peer_group import group_of, make_world


def gossip_world(n, network, **training):
    world = make_world(n=n)
    s = world.scenario.to_dict()
    s["network"] = {"mode": "async", **network}
    s["training"].update(training)
    world.scenario = config.from_dict(s)
    return world


class Recorder(LocalBackend):
    """The local backend, also noting every merge: (tick, receiver, senders, ages)."""

    def __init__(self, world):
        super().__init__(world)
        self.merges = []

    def merge_async(self, tick, peers, received, mask, senders, ages, degrees):
        for r, peer in enumerate(peers):
            m = mask[r]
            self.merges.append((tick, int(peer), senders[r][m].tolist(), ages[0][r][m].tolist(),
                                ages[1][r][m].tolist()))
        super().merge_async(tick, peers, received, mask, senders, ages, degrees)


def gossip(world, backend=None):
    s = world.scenario
    backend = backend or LocalBackend(world)
    schedule = Schedule(s.topology.kind, s.topology.n_peers, s.seed, s.topology.args, s.topology.resample_every)
    engine = AsyncGossip(s, world, backend, schedule)
    while engine.tick < engine.n_ticks:
        engine.step()
    return engine, backend


def test_two_peer_line_merges_at_the_expected_times():
    # Peer 0 updates every 1.0 s (at 1, 2, 3, 4), peer 1 every 1.5 s (at 1.5, 3.0, 4.5); latency 0.3 s.
    world = gossip_world(2, {"compute_per_peer": [1.0, 1.5], "links": {"latency": {"mean": 0.3}},
                             "tick": 0.05, "duration_s": 4.6}, local_steps=1)
    engine, backend = gossip(world, Recorder(world))
    tick = lambda t: int(np.floor(t / 0.05 + 1e-9)) + 1  # noqa: E731  the tick holding time t
    # (tick, receiver, senders, age in s, age in sender updates), by hand:
    expected = [
        (tick(1.5), 1, [0], [0.5], [0]),   # 0's update 1 (sent 1.0, arrived 1.3)
        (tick(2.0), 0, [1], [0.5], [0]),   # 1's update 1 (sent 1.5, arrived 1.8)
        # at 3.0 both update in one tick: 0 has nothing new (1's update 2 is sent in this tick);
        (tick(3.0), 1, [0], [1.0], [1]),   # 0's update 2 (sent 2.0); 0 has made update 3 since
        (tick(4.0), 0, [1], [1.0], [0]),   # 1's update 2 (sent 3.0)
        (tick(4.5), 1, [0], [0.5], [0]),   # 0's update 4 (sent 4.0); update 3 (sent 3.0) is stale
    ]
    got = [(t, r, s, [round(a, 9) for a in age], u) for t, r, s, age, u in backend.merges]
    assert got == expected
    assert engine.update_count.tolist() == [4, 3]
    assert engine.totals["messages_sent"] == 7 and engine.totals["messages_delivered"] == 5
    assert engine.totals["messages_stale"] == 1 and engine.totals["messages_lost"] == 0
    row = engine.row()
    assert row["staleness_s_mean"] == pytest.approx((0.5 + 0.5 + 1.0 + 1.0 + 0.5) / 5)
    assert row["staleness_updates_mean"] == pytest.approx(1 / 5)
    # 0's update 4 (sent at 4.0) and 1's update 3 (sent at 4.5, arriving 4.8) are still in flight
    assert sorted(engine.pending["sender"].tolist()) == [1]


def trained_only(world, counts):
    """Heads after each peer's ``counts[p]`` updates of local training alone (no merge)."""
    group = group_of(world, range(world.n_peers))
    for k in range(1, max(counts) + 1):
        rows = [p for p in range(world.n_peers) if counts[p] >= k]
        group.train(k, rows=torch.as_tensor(rows), draw_keys=np.full(len(rows), k))
    return group.heads


def test_loss_one_no_head_ever_changes_by_merging():
    world = gossip_world(5, {"compute": {"kind": "lognormal", "mean": 1.0, "sigma": 0.5},
                             "links": {"loss": 1.0}, "tick": 0.1, "duration_s": 12.0})
    engine, backend = gossip(world)
    counts = engine.update_count.tolist()
    assert min(counts) >= 2 and len(set(counts)) > 1  # peers update at different rates
    assert engine.totals["messages_lost"] == engine.totals["messages_sent"] > 0
    assert engine.totals["messages_delivered"] == 0
    assert torch.equal(backend.heads(), trained_only(world, counts))


def test_every_peer_offline_nothing_trains(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("".join(f"{p},100,200\n" for p in range(5)))  # online only after the run ends
    world = gossip_world(5, {"churn": {"trace": str(trace)}, "duration_s": 5.0, "tick": 0.5})
    engine, backend = gossip(world)
    assert engine.update_count.sum() == 0 and engine.totals["messages_sent"] == 0
    assert torch.equal(backend.heads(), world.init_head.expand(5, -1, -1))
    assert engine.row()["online_peers"] == 0


def test_messages_to_an_offline_peer_are_lost_or_queued(tmp_path):
    # Peer 1 is offline during [0.5, 3.2): 0's updates at 1, 2, 3 (latency 0.1) all reach it while away.
    trace = tmp_path / "trace.csv"
    trace.write_text("1,0,0.5\n1,3.2,100\n")
    network = {"compute_per_peer": [1.0, 4.0], "links": {"latency": {"mean": 0.1}}, "tick": 0.1,
               "duration_s": 3.5}
    lost_world = gossip_world(2, {**network, "churn": {"trace": str(trace)}}, local_steps=1)
    engine, _ = gossip(lost_world)
    assert engine.totals["messages_sent"] == 3 and engine.totals["messages_lost"] == 3
    queued_world = gossip_world(2, {**network, "churn": {"trace": str(trace), "queue": True}}, local_steps=1)
    engine, _ = gossip(queued_world)
    assert engine.totals["messages_lost"] == 0
    assert engine.pending["arrival"].tolist() == [3.2, 3.2, 3.2]  # waiting for 1 to come back


def _async_scenario(tmp_path, **extra):
    s = tiny_scenario(**{"output.dir": None, "output.checkpoint_every": 1})
    s["network"] = {"mode": "async", "tick": 0.25, "duration_s": 6.0, "eval_every_s": 1.5,
                    "compute": {"kind": "pareto", "mean": 0.2, "alpha": 2.5},
                    "links": {"loss": 0.2, "latency": {"kind": "lognormal", "mean": 0.3}},
                    "churn": {"up_mean": 4.0, "down_mean": 1.0}}
    s["adversary"] = {"count": 2, "attack": {"name": "sign_flip"}}
    s["defense"] = {"name": "trimmed_mean", "args": {"f": 1}}
    s.update(extra)
    return s


def _rows(path):
    return [{k: v for k, v in json.loads(line).items() if k != "wall_time_s"}
            for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_async_run_is_deterministic_and_resumes_to_the_same_final_row(tmp_path):
    s = _async_scenario(tmp_path)
    _, a = run(s, out=tmp_path / "a", progress=False)
    _, b = run(s, out=tmp_path / "b", progress=False)
    rows = _rows(a)
    assert rows == _rows(b)
    assert [r["sim_time_s"] for r in rows] == [1.5, 3.0, 4.5, 6.0] and [r["round"] for r in rows] == [6, 12, 18, 24]
    assert rows[-1]["messages_delivered"] > 0 and rows[-1]["messages_lost"] > 0
    # killed after the third row: its checkpoint is the latest one left
    c = tmp_path / "c"
    shutil.copytree(a, c)
    (c / "checkpoints" / "round_00024.pt").unlink()
    (c / "checkpoints" / "latest").write_text("round_00018.pt\n")
    run(None, resume=c, progress=False)
    assert _rows(c) == rows


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_ray_with_one_and_four_peers_per_actor_gives_the_local_metrics(tmp_path, mode):
    ray = pytest.importorskip("ray")
    s = _async_scenario(tmp_path)
    s["network"]["duration_s"] = 3.0
    if mode == "sync":  # participation, loss and churn in rounds
        s["network"] = {"mode": "sync", "participation": 0.6, "links": {"loss": 0.3},
                        "churn": {"up_mean": 3.0, "down_mean": 1.0}}
    _, local = run(s, out=tmp_path / "local", progress=False)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for per_actor in (1, 4):
            s_ray = {**s, "backend": {"name": "ray", "peers_per_actor": per_actor}}
            _, out = run(s_ray, out=tmp_path / f"ray{per_actor}", progress=False)
            assert _rows(out)[-1]["messages_lost"] > 0
            for x, y in zip(_rows(local), _rows(out), strict=True):
                # consensus_distance: a float64 sum over groups whose order differs between layouts
                assert x.pop("consensus_distance") == pytest.approx(y.pop("consensus_distance"), rel=1e-9)
                assert x == y
    finally:
        if started:
            ray.shutdown()


class HeadRecorder(LocalBackend):
    """The local backend, also keeping each merge's received heads and previous head."""

    def __init__(self, world):
        super().__init__(world)
        self.seen = []

    def merge_async(self, tick, peers, received, mask, senders, ages, degrees):
        for r, peer in enumerate(peers):
            self.seen.append((int(peer), senders[r][mask[r]].tolist(), received[r][mask[r]].clone(),
                              self.host.group.previous[int(peer)].clone()))
        super().merge_async(tick, peers, received, mask, senders, ages, degrees)


def test_stateful_rule_keeps_its_history_across_asynchronous_merges():
    # FoolsGold sums each sender's updates (received - previous head) over the merges.
    world = gossip_world(2, {"compute_per_peer": [1.0, 1.5], "links": {"latency": {"mean": 0.3}},
                             "tick": 0.05, "duration_s": 4.6}, local_steps=1)
    s = world.scenario.to_dict()
    s["defense"] = {"name": "foolsgold", "args": {}}
    world.scenario = config.from_dict(s)
    _, backend = gossip(world, HeadRecorder(world))
    state = backend.host.group.defense_state
    for peer, sender in ((0, 1), (1, 0)):
        merges = [(heads, prev) for p, senders, heads, prev in backend.seen if p == peer]
        assert len(merges) == (2 if peer == 0 else 3)
        want = sum((heads[0].double() - prev.double()).flatten() for heads, prev in merges)
        assert set(state[peer]["foolsgold_history"]) == {sender}
        torch.testing.assert_close(state[peer]["foolsgold_history"][sender], want)


@pytest.mark.parametrize("transform,size", [("none", 60), ("topk", 24)])
def test_sender_side_compression_shortens_the_transfer(transform, size):
    # 3 x 5 float32 head = 60 bytes; topk keeps 3 of its 15 values at 8 bytes each = 24 bytes.
    world = gossip_world(2, {"compute_per_peer": [1.0, 10.0], "links": {"bandwidth": 100.0},
                             "tick": 0.05, "duration_s": 1.05}, local_steps=1)
    s = world.scenario.to_dict()
    s["privacy"] = {"curious": [1], "defense": {"name": transform, "args": {"k": 3} if transform == "topk" else {}}}
    world.scenario = config.from_dict(s)
    world.plugins = Plugins.build(world.scenario)
    engine, _ = gossip(world)
    assert engine.totals["bytes_on_wire"] == size
    assert engine.pending["arrival"].tolist() == [pytest.approx(1.0 + size / 100.0)]


@pytest.mark.slow
def test_async_run_killed_by_sigkill_resumes_to_the_unbroken_final_row(tmp_path):
    import subprocess
    import sys
    import time
    s = _async_scenario(tmp_path)
    s["network"]["duration_s"] = 12.0
    _, whole = run(s, out=tmp_path / "whole", progress=False)
    broken = tmp_path / "broken"
    child = subprocess.Popen([sys.executable, "-c", "import json, sys, fedsim; "
                              "fedsim.run(json.loads(sys.argv[1]), out=sys.argv[2], progress=False)",
                              json.dumps(s), str(broken)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (broken / "checkpoints" / "latest").exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    child.kill()
    child.wait()
    rows_at_kill = len(_rows(broken))
    run(None, resume=broken, progress=False)
    assert rows_at_kill < len(_rows(whole))  # it was killed mid-way
    assert _rows(broken) == _rows(whole)


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_ray_async_run_stops_when_an_actor_restarted_empty(tmp_path):
    ray = pytest.importorskip("ray")
    from fedsim.engine.ray_backend import RayBackend
    from fedsim.world import build_world
    s = config.from_dict(_async_scenario(tmp_path, backend={"name": "ray", "peers_per_actor": 4}))
    schedule = Schedule(s.topology.kind, s.topology.n_peers, s.seed, s.topology.args, s.topology.resample_every)
    world = build_world(s, schedule)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    backend = RayBackend(world)
    try:
        engine = AsyncGossip(s, world, backend, schedule)
        engine.step()
        backend.evaluate(world.test_features, world.test_labels)  # all actors as they started
        ray.kill(backend.actors[0], no_restart=False)  # Ray restarts it with the initial heads
        with pytest.raises(RuntimeError, match="--resume"):
            for _ in range(3):
                engine.step()
            backend.evaluate(world.test_features, world.test_labels)
    finally:
        backend.close()
        if started and ray.is_initialized():
            ray.shutdown()


def test_async_numbers_do_not_depend_on_the_thread_count(tmp_path):
    # A tick trains few peers; with more threads than peers a batched matmul is split
    # inside each product, which moved the last bits (1e-9) between a run and its
    # resumption in a process with another thread count. Subsets train with one thread.
    import torch
    s = _async_scenario(tmp_path)
    before = torch.get_num_threads()
    rows = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            _, out = run(s, out=tmp_path / f"threads{threads}", progress=False)
            rows[threads] = _rows(out)
    finally:
        torch.set_num_threads(before)
    assert rows[1] == rows[2]
