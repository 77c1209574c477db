"""The Ray backend: GroupHosts (``fedsim.engine.host``) as Ray actors, on this machine
or a cluster.

Honest peers are split by id into actors of ``backend.peers_per_actor`` peers;
Byzantine peers live in one adversary actor (the one whose host crafts); curious peers
(gradient inversion) live in their own actor. Each round:

1. every actor trains its peers; the heads it sends are one object in Ray's object
   store (put once per sending actor per round);
2. the adversary actor gets every actor's heads by reference and crafts its
   messages (one object);
3. every actor gets, by reference, every actor's heads plus the crafted messages,
   and receives and merges with the defense;
4. every actor snapshots its state into the object store (the round snapshot).

The driver only passes references, plus small per-peer metrics. Random draws are
keyed by (seed, peer, round, purpose) (``fedsim.rng``), so the numbers are the same
as the local backend's, whatever ``peers_per_actor`` is.

Faults: actors are created with ``max_restarts=-1``; when one dies mid-round, every
actor is restored from the previous round's snapshot (the restarted one from the
snapshot object, which outlives the dead worker) and the round is run again, which
gives the same numbers as a run without the fault.
"""
from __future__ import annotations

import logging
import os
import time
import uuid

import numpy as np
import torch

from fedsim.engine import exchange
from fedsim.engine.host import GroupHost, consensus_center
from fedsim.world import World

log = logging.getLogger("fedsim")


class RayConnectError(Exception):
    """The Ray cluster named by backend.address cannot be reached (a user error)."""


def _ray():
    import ray
    return ray


def connect(address, num_cpus=None) -> bool:
    """Start or join Ray; returns True when this call started it (so it shuts it down)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    if address not in (None, "auto"):
        check_reachable(address)
    kwargs = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                  configure_logging=True)
    try:
        if address is None:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RayConnectError(f"backend.address: cannot reach Ray at {address!r}: {text}") from None
    return True


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an address nothing listens on (``ray.init`` would retry for minutes)."""
    import socket
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayConnectError(f"backend.address: {address!r} is not auto, host:port or ray://host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RayConnectError(f"backend.address: cannot reach Ray at {address!r}: "
                              f"{exc.strerror or type(exc).__name__}") from None


def _actor_errors() -> tuple:
    """Exceptions that mean an actor died or is restarting (its state is lost)."""
    from ray import exceptions
    return tuple(getattr(exceptions, name) for name in ("RayActorError", "ActorUnavailableError",
                                                         "ActorDiedError") if hasattr(exceptions, name))


_LOST = ("an actor died during {what} of an asynchronous run (its clock state cannot be restored "
         "mid-run); continue it from its last checkpoint with --resume")


def merge_states(states: list[dict]) -> dict:
    """One state of every peer from the states of several groups (ids ascending)."""
    ids = np.concatenate([s["ids"] for s in states])
    order = np.argsort(ids, kind="stable")
    cat = lambda key: None if states[0][key] is None else torch.cat([s[key] for s in states])[torch.as_tensor(order)]
    defense_state = [d for s in states for d in s["defense_state"]]
    return {"ids": ids[order], "heads": cat("heads"), "adam_m": cat("adam_m"), "adam_v": cat("adam_v"),
            "adam_steps": cat("adam_steps"),
            "defense_state": [defense_state[i] for i in order]}


class RayBackend:
    name = "ray"

    def __init__(self, world: World):
        ray = _ray()
        b = world.scenario.backend
        self.world = world
        self.started = connect(b.address, b.num_cpus)
        self.run_id = uuid.uuid4().hex[:8]
        byz, cur = set(world.byzantine_ids), set(world.curious_ids)
        plain = [i for i in range(world.n_peers) if i not in byz and i not in cur]
        self.layout = [("group", plain[a:a + b.peers_per_actor]) for a in range(0, len(plain), b.peers_per_actor)]
        if cur:
            self.layout.append(("curious", sorted(cur)))
        if byz:
            self.layout.append(("adversary", sorted(byz)))
        cpus = int(ray.cluster_resources().get("CPU", 1))
        threads = max(1, cpus // len(self.layout))
        world_ref = self.world_ref = ray.put(world)
        actor_cls = ray.remote(GroupHost)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        # Actors go round-robin over the nodes that have CPUs (soft: Ray may move an
        # actor elsewhere if its node goes away).
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0)
        # A node that joined moments ago may be known to the GCS before the scheduler
        # sees its resources; a soft affinity would then fall back to another node.
        wanted = sum(n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"])
        deadline = time.time() + 10
        while ray.available_resources().get("CPU", 0) < wanted and time.time() < deadline:
            time.sleep(0.2)
        self.actors = []
        for k, (role, ids) in enumerate(self.layout):
            strategy = NodeAffinitySchedulingStrategy(node_id=nodes[k % len(nodes)], soft=True) if nodes else "SPREAD"
            actor = actor_cls.options(
                name=f"fedsim-{self.run_id}-{role}-{k}", num_cpus=0, max_restarts=-1,
                scheduling_strategy=strategy, max_concurrency=1,
            ).remote(world_ref, ids, threads)
            self.actors.append(actor)
        self.pids = ray.get([a.pid.remote() for a in self.actors])  # actors up before round 1 is timed
        # Asynchronous gossip keeps no per-tick snapshot to restore a dead actor from: the
        # run stops instead and --resume continues it from its last checkpoint.
        self.asynchronous = world.scenario.network is not None and world.scenario.network.mode == "async"
        self.adversary = self.actors[-1] if byz else None
        self.snapshot = None
        self.graph_refs: dict = {}

    def _graph_refs(self, graph, neighbours):
        key = id(neighbours)
        if key not in self.graph_refs:
            ray = _ray()
            self.graph_refs = {key: (ray.put(graph), ray.put(neighbours))}
        return self.graph_refs[key]

    def _retrying(self, what: str, call):
        """Run ``call()``; when an actor died meanwhile, restore every actor from the last
        round snapshot and run it again (the same numbers come out: draws are keyed)."""
        for _ in range(5):
            try:
                return call()
            except _actor_errors() as exc:
                if self.asynchronous:
                    raise RuntimeError(_LOST.format(what=what)) from exc
                log.warning("warning: an actor died during %s (%s); restoring the round snapshot",
                            what, type(exc).__name__)
                self._restore()
        raise RuntimeError(f"{what} failed five times: actors keep dying")

    def round(self, round_: int, graph, neighbours, plan=None) -> dict:
        """As ``LocalBackend.round``; ``plan``: the round on the simulated network."""
        return self._retrying(f"round {round_}", lambda: self._round(round_, graph, neighbours, plan))

    def _round(self, round_, graph, neighbours, plan=None) -> dict:
        ray = _ray()
        graph_ref, nbr_ref = self._graph_refs(graph, neighbours)
        if plan is None:
            sent_refs = [a.train.remote(round_) for a in self.actors]
            crafted = self.adversary.craft.remote(round_, graph_ref, *sent_refs) if self.adversary else {}
            stats_list = ray.get([a.aggregate.remote(round_, nbr_ref, crafted, *sent_refs) for a in self.actors])
        else:
            active, effective = ray.put(plan.active), ray.put(plan.neighbours)
            sent_refs = [a.train.remote(round_, active=active) for a in self.actors]
            crafted = self.adversary.craft.remote(round_, graph_ref, *sent_refs, active=active) \
                if self.adversary else {}
            stats_list = ray.get([a.aggregate.remote(round_, effective, crafted, *sent_refs, active=active,
                                                     degrees=plan.degrees) for a in self.actors])
        snapshot = [a.state_dict.remote() for a in self.actors]
        ray.get(snapshot)  # raises here, inside the retried round, if an actor died
        self.snapshot = snapshot
        stats = {k: sum(s[k] for s in stats_list) for k in stats_list[0]}
        stats["sent"] = sent_refs
        return stats

    def _restore(self) -> None:
        ray = _ray()
        deadline = time.time() + 60
        while True:
            try:
                if self.snapshot is None:
                    state = None
                else:
                    state = merge_states(ray.get(self.snapshot))
                if state is None:
                    ray.get([a.pid.remote() for a in self.actors])  # restarted actors start fresh
                    # Round 1 failed: a fresh actor already holds the initial state,
                    # but the others trained; rebuild from the initial heads.
                    state = GroupHost(self.world, range(self.world.n_peers)).state_dict()
                ray.get([a.load_state_dict.remote(state) for a in self.actors])
                return
            except _actor_errors():
                if time.time() > deadline:
                    raise
                time.sleep(0.5)

    # ------------------------------------------- asynchronous gossip (fedsim.engine.async_engine)
    def _check_actors(self, what: str) -> None:
        """Stop an async run whose actors restarted (empty) since they started."""
        try:
            same = _ray().get([a.pid.remote() for a in self.actors]) == self.pids
        except _actor_errors() as exc:
            raise RuntimeError(_LOST.format(what=what)) from exc
        if not same:
            raise RuntimeError(_LOST.format(what=what))

    def train_async(self, tick: int, peers, draw_keys: dict):
        """As ``LocalBackend.train_async``: every actor trains its peers among ``peers``;
        the sent heads come back in ascending id order."""
        return self._retrying(f"tick {tick}", lambda: self._train_async(tick, peers, draw_keys))

    def _train_async(self, tick: int, peers, draw_keys: dict):
        ray = _ray()
        peers_ref, keys_ref = ray.put(np.asarray(peers, dtype=np.int64)), ray.put(draw_keys)
        parts = ray.get([a.train.remote(tick, active=peers_ref, draw_keys=keys_ref) for a in self.actors])
        ids = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in parts])
        order = torch.as_tensor(np.argsort(ids, kind="stable"))
        return ids[order.numpy()], torch.cat([h for _, h in parts])[order]

    def craft_async(self, tick: int, graph, byzantine, last_sent: torch.Tensor) -> dict:
        """As ``LocalBackend.craft_async``, on the adversary's actor."""
        active = np.union1d(np.asarray(byzantine, dtype=np.int64), np.asarray(self.world.honest_ids, dtype=np.int64))
        return self._retrying(f"tick {tick}", lambda: _ray().get(self.adversary.craft.remote(
            tick, graph, (np.arange(self.world.n_peers), last_sent), active=active)))

    def merge_async(self, tick: int, peers, received, mask, senders, ages, degrees) -> None:
        """Every actor merges its rows of what arrived (one object-store copy of each input)."""
        ray = _ray()
        refs = [ray.put(x) for x in (np.asarray(peers), received, mask, senders, ages, degrees)]
        self._retrying(f"tick {tick}", lambda: ray.get([a.merge.remote(tick, *refs) for a in self.actors]))

    def sent_heads(self, sent_refs, ids) -> torch.Tensor:
        """Rows ``ids`` of the heads sent this round (fetched by reference)."""
        sent = _ray().get(list(sent_refs))
        return exchange.gather_sent(self.world.n_peers, sent)[torch.as_tensor(list(ids), dtype=torch.long)]

    def evaluate(self, features, labels, backdoor=None, target=None) -> dict:
        if self.asynchronous:  # before a row is written: no actor restarted empty meanwhile
            self._check_actors("evaluate")
        return self._retrying("evaluate", lambda: self._evaluate(features, labels, backdoor, target))

    def _evaluate(self, features, labels, backdoor=None, target=None) -> dict:
        ray = _ray()
        refs = [ray.put(x) for x in (features, labels, backdoor)]
        parts = ray.get([a.evaluate.remote(refs[0], refs[1], refs[2], target) for a in self.actors])
        byzantine_log_z = torch.cat([p["byzantine_log_z"] for p in parts])
        parts = [p for p in parts if len(p["ids"])]
        ids = np.concatenate([p["ids"] for p in parts])
        order = torch.as_tensor(np.argsort(ids, kind="stable"))
        out = {"ids": ids[order.numpy()]}
        for key in ("accuracy", "loss", "log_z", "asr"):
            if key in parts[0]:
                out[key] = torch.cat([p[key] for p in parts])[order]
        out["byzantine_log_z"] = byzantine_log_z
        return out

    def consensus_distance(self) -> float:
        return self._retrying("consensus_distance", lambda: self._consensus_distance())

    def _consensus_distance(self) -> float:
        ray = _ray()
        center = consensus_center(ray.get([a.honest_sum.remote() for a in self.actors]))
        center_ref = ray.put(center)
        dists = torch.cat(ray.get([a.distances_to.remote(center_ref) for a in self.actors]))
        return float(dists.mean())

    def heads(self) -> torch.Tensor:
        return self._retrying("heads", self._heads)

    def _heads(self) -> torch.Tensor:
        ray = _ray()
        C, P = self.world.init_head.shape
        out = torch.zeros(self.world.n_peers, C, P)
        for ids, heads in ray.get([a.heads.remote() for a in self.actors]):
            out[torch.as_tensor(np.array(ids))] = heads
        return out

    def state_dict(self) -> dict:
        return self._retrying("state_dict", self._state_dict)

    def _state_dict(self) -> dict:
        ray = _ray()
        refs = self.snapshot or [a.state_dict.remote() for a in self.actors]
        return merge_states(ray.get(refs))

    def load_state_dict(self, state: dict) -> None:
        ray = _ray()
        ref = ray.put(state)
        ray.get([a.load_state_dict.remote(ref) for a in self.actors])

    def close(self) -> None:
        ray = _ray()
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # already gone
                pass
        self.actors = []
        if self.started:
            ray.shutdown()
