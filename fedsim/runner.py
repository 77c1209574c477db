"""The round loop: a scenario in, a run directory out."""
from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Optional


import torch

from fedsim import config as cfg
from fedsim import rng
from fedsim.results import RunDir, RunDirError, default_dir
from fedsim.sinks import Sinks
from fedsim.topology import Schedule, honest_components, neighbour_matrix

log = logging.getLogger("fedsim")


def _as_scenario(scenario, overrides) -> cfg.Scenario:
    if isinstance(scenario, cfg.Scenario):
        return cfg.from_dict(scenario.to_dict(), "<scenario>", overrides) if overrides else scenario
    if isinstance(scenario, dict):
        return cfg.from_dict(scenario, "<scenario>", overrides)
    return cfg.load(scenario, overrides)


def make_backend(world):
    name = world.scenario.backend.name
    if name == "ray":
        from fedsim.engine.ray_backend import RayBackend
        return RayBackend(world)
    from fedsim.engine.local import LocalBackend
    return LocalBackend(world)


class _Progress:
    """A tqdm bar on a terminal, plain log lines otherwise."""

    def __init__(self, total: int, start: int, enabled: Optional[bool]):
        tty = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        if tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, unit="round", file=sys.stderr, leave=False)

    def update(self, round_: int, total: int, acc, seconds: float) -> None:
        acc_text = "-" if acc is None else f"{acc:.4f}"
        if self.bar is not None:
            self.bar.set_postfix_str(f"acc {acc_text}, {seconds:.2f} s/round")
            self.bar.update(1)
        else:
            log.info("round %d/%d  accuracy_mean %s  %.3f s/round", round_, total, acc_text, seconds)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _attach_log(run_dir: RunDir) -> logging.Handler:
    handler = logging.FileHandler(run_dir.path / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in log.handlers):
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(stream)
    return handler


def run(scenario, overrides=None, out=None, resume=None, progress: Optional[bool] = None):
    """Run a scenario; returns ``(summary dict, run directory Path)``.

    ``scenario``: a YAML path, a dict or a Scenario. ``out``: the run directory
    (default ``runs/<name>-<timestamp>`` or ``output.dir``). ``resume``: a run
    directory whose run was interrupted; it continues from its last checkpoint.
    """
    from fedsim.world import build_world

    if resume is not None:
        run_dir = RunDir(resume)
        if not run_dir.path.is_dir():
            raise RunDirError(f"{resume}: not a run directory "
                              f"({'not a directory' if run_dir.path.exists() else 'no such directory'})")
        source = str(run_dir.path / "config.yaml")
        if not (run_dir.path / "config.yaml").exists():
            raise RunDirError(f"{resume}: not a run directory (no config.yaml)")
        s = cfg.from_dict(run_dir.read_config(), source, overrides)
    else:
        s = _as_scenario(scenario, overrides)
        run_dir = RunDir(out or s.output.dir or default_dir(s.name))
        source = str(scenario) if isinstance(scenario, (str, Path)) else "<scenario>"
    run_dir.create()
    handler = _attach_log(run_dir)
    try:
        checkpoint = None
        if resume is not None:
            checkpoint = run_dir.latest_checkpoint()
            if checkpoint is not None:
                check_resumable(checkpoint, s, source)
        return _run(s, run_dir, resume is not None, checkpoint, progress, build_world, source)
    except cfg.ScenarioError:
        raise
    except BaseException as exc:  # the full traceback goes to run.log; the terminal gets one line
        handler.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "run failed", (),
                                      sys.exc_info()))
        exc.run_log = handler.baseFilename
        raise
    finally:
        log.removeHandler(handler)
        handler.close()


# What --resume lets a scenario change: nothing the checkpoint's state depends on. The
# number of rounds (to extend a run), how often to evaluate, the output options, the name,
# and the backend (a run's numbers do not depend on it).
RESUME_SAFE_KEYS = ("name", "rounds", "eval_every", "output", "backend.name", "backend.address",
                    "backend.peers_per_actor", "backend.num_cpus")


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict) and value:
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def changed_keys(before: dict, after: dict) -> list[str]:
    """Key paths whose values differ between two resolved scenarios, minus the safe ones.
    A key one side lacks counts as null (a section added to the schema since, absent)."""
    old, new = _flatten(before), _flatten(after)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return [k for k in changed if not any(k == safe or k.startswith(safe + ".") for safe in RESUME_SAFE_KEYS)]


def check_resumable(checkpoint: dict, s: cfg.Scenario, source: str) -> None:
    """Refuse to resume when the scenario (edited config.yaml or --set) changes anything
    the checkpoint depends on, or ends before the round the checkpoint reached."""
    changed = changed_keys(checkpoint["scenario"], s.to_dict())
    if changed:
        raise cfg.ScenarioError(f"{source}: cannot resume: the scenario changed since the checkpoint in "
                                f"{', '.join(changed)} (only {', '.join(RESUME_SAFE_KEYS)} may change)")
    if "gossip" not in checkpoint and s.rounds < checkpoint["round"]:
        raise cfg.ScenarioError(f"{source}: rounds: must be >= {checkpoint['round']}, the round the checkpoint "
                                f"reached, to resume; got {s.rounds}")


def _run(s, run_dir: RunDir, resuming: bool, checkpoint, progress, build_world, source: str):
    t_start = time.perf_counter()
    schedule = Schedule(s.topology.kind, s.topology.n_peers, s.seed, s.topology.args, s.topology.resample_every)
    world = build_world(s, schedule, keep_images=s.privacy is not None, source=source)
    run_dir.write_config(s.to_dict())  # only now: a scenario that fails to build leaves the directory as it was
    log.info("set-up %.2f s (features %s)", world.info["setup_seconds"],
             "from cache" if world.info["from_cache"] else "computed")
    warnings = []
    components = honest_components(schedule.graph(1), world.honest_ids)
    if components > 1:
        text = f"the honest peers' subgraph is disconnected ({components} components) in round 1"
        warnings.append(text)
        log.warning("warning: %s", text)

    backend = make_backend(world)
    privacy = None
    asynchronous = s.network is not None and s.network.mode == "async"
    if s.privacy is not None and not asynchronous:
        from fedsim.privacy import PrivacyRecorder
        privacy = PrivacyRecorder(world)
    elif s.privacy is not None:
        text = "privacy: in async mode only the sender-side transform applies; curious peers do not reconstruct"
        warnings.append(text)
        log.warning("warning: %s", text)
    totals = {"bytes_sent": 0, "messages_dropped": 0, "messages_nonfinite": 0}
    network = gossip = None
    if asynchronous:
        from fedsim.engine.async_engine import AsyncGossip
        gossip = AsyncGossip(s, world, backend, schedule)
    elif s.network is not None:
        from fedsim.network.run import SyncNetwork
        network = SyncNetwork(s, world)
        totals.update(network.totals())
    start_round, elapsed_before = 1, 0.0
    rows = []
    if resuming:
        state = checkpoint
        if state is not None:
            backend.load_state_dict(state["peers"])
            start_round = state["round"] + 1
            totals = dict(state["totals"])
            elapsed_before = state["wall_time_s"]
            if privacy is not None:
                privacy.load_state_dict(state.get("privacy"))
            if gossip is not None:
                gossip.load_state_dict(state["gossip"])
            rows = [r for r in run_dir.read_metrics() if r["round"] <= state["round"]]
        run_dir.rewrite_metrics(rows)
        log.info("resuming at round %d", start_round)
    elif (run_dir.path / "metrics.jsonl").exists():
        run_dir.rewrite_metrics([])

    saved_ids = sampled_honest_ids(world, s.output.save_heads)
    bar = _Progress(s.rounds, start_round - 1, progress) if gossip is None else \
        _Progress(gossip.n_evaluations(), len(rows), progress)
    sinks = Sinks(s, run_dir.path, world, schedule.graph(1), start_round)
    t_loop = time.perf_counter()
    neighbours_cache: dict = {}
    try:
        if gossip is not None:
            _run_gossip(s, gossip, world, backend, run_dir, rows, totals, sinks, bar, elapsed_before, t_loop)
        for r in range(start_round, s.rounds + 1) if gossip is None else ():
            t_round = time.perf_counter()
            graph = schedule.graph(r)
            period = schedule.period(r)
            if period not in neighbours_cache:
                neighbours_cache = {period: neighbour_matrix(graph, world.n_peers)[0]}
                if r > 1 and honest_components(graph, world.honest_ids) > 1:
                    text = f"the honest peers' subgraph is disconnected in round {r}"
                    warnings.append(text)
                    log.warning("warning: %s", text)
            if network is None:
                stats = backend.round(r, graph, neighbours_cache[period])
            else:
                plan = network.plan(r, neighbours_cache[period])
                stats = backend.round(r, graph, neighbours_cache[period], plan)
                network.record(plan, stats, totals)
            if privacy is not None:
                privacy.record(r, graph, stats["sent"], backend)
            totals["bytes_sent"] += stats["bytes"]
            totals["messages_dropped"] += stats["dropped"]
            totals["messages_nonfinite"] += stats["nonfinite"]
            acc = None
            elapsed = elapsed_before + (time.perf_counter() - t_loop)
            if r % s.eval_every == 0 or r == s.rounds:
                row = evaluate_row(world, backend, r, totals, elapsed, sinks,
                                   None if network is None else network.row(totals))
                rows.append(row)
                run_dir.append_metrics(row)
                acc = row["accuracy_mean"]
                if saved_ids:
                    run_dir.save_heads(r, saved_ids, backend.heads()[torch.as_tensor(saved_ids)])
            if (s.output.checkpoint_every and r % s.output.checkpoint_every == 0) or r == s.rounds:
                state = {"round": r, "peers": backend.state_dict(), "totals": dict(totals),
                         "wall_time_s": elapsed_before + (time.perf_counter() - t_loop), "scenario": s.to_dict()}
                if privacy is not None:
                    state["privacy"] = privacy.state_dict()
                run_dir.save_checkpoint(r, state)
            bar.update(r, s.rounds, acc, time.perf_counter() - t_round)
        loop_seconds = elapsed_before + time.perf_counter() - t_loop  # before shutting the backend down
    finally:
        bar.close()
        sinks.close()
        backend.close()

    summary = make_summary(s, world, rows, totals, warnings, loop_seconds, time.perf_counter() - t_start)
    if privacy is not None:
        summary["privacy"] = privacy.finish(run_dir)
    run_dir.write_summary(summary)
    if s.output.plots:
        from fedsim import plots
        plots.draw_all(run_dir.path, world=world, graph=schedule.graph(1))
    log.info("final accuracy_mean %.4f", rows[-1]["accuracy_mean"] if rows else float("nan"))
    return summary, run_dir.path


def _run_gossip(s, gossip, world, backend, run_dir, rows, totals, sinks, bar, elapsed_before, t_loop) -> None:
    """The loop of asynchronous gossip (``fedsim.engine.async_engine``): ticks until
    ``network.duration_s``; a metrics row every ``network.eval_every_s`` simulated seconds
    (its ``round`` is the tick), a checkpoint every ``output.checkpoint_every`` rows and
    at the end."""
    t_eval = time.perf_counter()
    while gossip.tick < gossip.n_ticks:
        gossip.step()
        if not gossip.eval_due():
            continue
        for key in ("bytes_sent", "messages_dropped", "messages_nonfinite"):
            totals[key] = gossip.totals[key]
        elapsed = elapsed_before + (time.perf_counter() - t_loop)
        row = evaluate_row(world, backend, gossip.tick, totals, elapsed, sinks, gossip.row())
        rows.append(row)
        run_dir.append_metrics(row)
        every = s.output.checkpoint_every
        if (every and len(rows) % every == 0) or gossip.tick == gossip.n_ticks:
            run_dir.save_checkpoint(gossip.tick, {
                "round": gossip.tick, "peers": backend.state_dict(), "totals": dict(totals),
                "gossip": gossip.state_dict(), "wall_time_s": elapsed_before + (time.perf_counter() - t_loop),
                "scenario": s.to_dict()})
        bar.update(len(rows), gossip.n_evaluations(), row["accuracy_mean"], time.perf_counter() - t_eval)
        t_eval = time.perf_counter()


def evaluate_row(world, backend, round_: int, totals: dict, elapsed: float, sinks=None,
                 network_row: Optional[dict] = None) -> dict:
    """The metrics row of ``round_``; ``network_row``: the simulated network's keys
    (``fedsim.network.run``), added after the others."""
    res = backend.evaluate(world.test_features, world.test_labels, world.backdoor_features, world.backdoor_target)
    acc = res["accuracy"].numpy()
    row = {
        "round": round_,
        "accuracy_mean": float(acc.mean()),
        "accuracy_min": float(acc.min()),
        "accuracy_max": float(acc.max()),
        "accuracy_std": float(acc.std()),
        "loss_mean": float(res["loss"].numpy().mean()),
        "consensus_distance": backend.consensus_distance(),
        "bytes_sent": int(totals["bytes_sent"]),
        "messages_dropped": int(totals["messages_dropped"]),
        "messages_nonfinite": int(totals["messages_nonfinite"]),
    }
    if "asr" in res:
        row["attack_success_rate"] = float(res["asr"].numpy().mean())
    row.update(network_row or {})
    # log Z of the heads on the test set (each peer's mean over the samples): a cheap
    # signal of poisoned or diverging heads (Wortsman et al. 2023; training.z_loss).
    row["log_z_mean"] = float(res["log_z"].numpy().mean())
    row["log_z_max"] = float(res["log_z"].numpy().max())
    if len(res["byzantine_log_z"]):
        row["byzantine_log_z_mean"] = float(res["byzantine_log_z"].numpy().mean())
    row["wall_time_s"] = round(elapsed, 4)
    if sinks is not None:
        sinks.record(row, res)  # peers.csv, TensorBoard
    return row


def sampled_honest_ids(world, count: int) -> list[int]:
    """``count`` honest peers (all if fewer), drawn once from the run's seed, ascending:
    the peers whose heads ``output.save_heads`` saves."""
    honest = list(world.honest_ids)
    if count >= len(honest):
        return honest
    draw = rng.numpy_rng(world.seed, -1, 0, "save_heads").choice(len(honest), size=count, replace=False)
    return sorted(honest[i] for i in draw)


def rounds_to_fraction(rows: list[dict], fraction: float = 0.9) -> Optional[int]:
    """First evaluated round whose accuracy_mean reaches ``fraction`` of the final one."""
    if not rows:
        return None
    goal = fraction * rows[-1]["accuracy_mean"]
    return next(r["round"] for r in rows if r["accuracy_mean"] >= goal)


def rounds_to_accuracy(rows: list[dict], target: float) -> Optional[int]:
    """First evaluated round whose accuracy_mean is at least ``target``; None if none is."""
    return next((r["round"] for r in rows if r["accuracy_mean"] >= target), None)


def make_summary(s, world, rows, totals, warnings, loop_seconds, total_seconds) -> dict:
    adv = s.adversary
    final = rows[-1] if rows else {}
    return {
        "name": s.name,
        "seed": s.seed,
        "rounds": s.rounds,
        "n_peers": s.topology.n_peers,
        "n_byzantine": len(world.byzantine_ids),
        "byzantine_ids": world.byzantine_ids,
        "defense": s.defense.name,
        "attack": adv.attack.name if adv is not None else None,
        "final": final,
        "best_accuracy_mean": max((r["accuracy_mean"] for r in rows), default=math.nan),
        "rounds_to_90pct_final": rounds_to_fraction(rows),
        "target_accuracy": s.output.target_accuracy,
        "rounds_to_accuracy": rounds_to_accuracy(rows, s.output.target_accuracy),
        "wall_time_s": round(total_seconds, 3),
        "loop_time_s": round(loop_seconds, 3),
        "bytes_sent": int(totals["bytes_sent"]),
        "backend": s.backend.name,
        "dataset": s.data.dataset,
        "dataset_source": world.info["dataset_source"],
        "features_from_cache": world.info["from_cache"],
        "pretrain": world.info["pretrain"],
        "warnings": warnings,
    }
