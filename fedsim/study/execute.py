"""Running a sweep's runs: in a pool of worker processes, or as Ray tasks.

Every run is :func:`run_job`: a fresh run into its directory, or, when the directory
already holds a config.yaml (a sweep killed mid-run), ``fedsim.runner.run(resume=dir)``,
which continues from the last checkpoint. Before any worker starts, :func:`warm_cache`
builds the world of each distinct (data, model, seed) setting once in this process, so
the pre-trained backbones and features are on disk (``$FEDSIM_CACHE``) and every run
loads them instead of computing them again, several at a time.

Ray: ``ray.tune`` needs packages that fedsim does not install (``ray[tune]`` pulls in
pandas, pyarrow and fsspec), and a sweep's cells are independent runs with nothing to
tune, so each run is a plain Ray task (``num_cpus=1``, retried on node failure, and a
retried run resumes from its checkpoint). The sweep directory and the feature cache
must be reachable at the same paths from every node (one machine, or a shared file
system).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fedsim import config as cfg


@dataclass
class Job:
    name: str              # the run directory's name
    scenario: dict         # the cell's scenario with its seed
    run_dir: Path


def _quiet_log() -> None:
    """Warnings of the runs on stderr, their per-round lines only in each run.log: the
    runner adds its own stderr handler only when the ``fedsim`` logger has none."""
    log = logging.getLogger("fedsim")
    if not any(type(h) is logging.StreamHandler for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        log.addHandler(handler)


def run_job(scenario: dict, run_dir: str, threads: Optional[int], cache: str) -> float:
    """Run (or resume) one run; returns its wall time in seconds."""
    os.environ["FEDSIM_CACHE"] = cache
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    _quiet_log()
    from fedsim.runner import run
    started = time.perf_counter()
    path = Path(run_dir)
    if (path / "config.yaml").exists():
        run(None, resume=path, progress=False)
    else:
        run(scenario, out=path, progress=False)
    return time.perf_counter() - started


def warm_cache(scenarios: list[dict]) -> int:
    """Build the world of every distinct (data, model, seed) setting once, which fills the
    feature cache; returns how many settings there were."""
    import json

    from fedsim.topology import Schedule
    from fedsim.world import build_world
    seen = set()
    for data in scenarios:
        s = cfg.from_dict(data)
        key = json.dumps([s.data.model_dump(mode="json"), s.model.model_dump(mode="json"), s.seed], sort_keys=True)
        if key not in seen:
            seen.add(key)
            t = s.topology
            build_world(s, Schedule(t.kind, t.n_peers, s.seed, t.args, t.resample_every))
    return len(seen)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Runs done / total and the time left: a tqdm bar on a terminal, else one log line per
    finished run (the estimate: mean time per run finished so far x runs left / workers
    is what tqdm's rate gives; the plain line uses the same rate)."""

    def __init__(self, total: int, done: int, enabled: Optional[bool] = None):
        self.total, self.done, self.ran = total, done, 0
        self.started = time.perf_counter()
        tty = sys.stderr.isatty() if enabled is None else enabled
        self.bar = None
        if tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, unit="run", desc="sweep", file=sys.stderr)
        elif done:
            print(f"sweep: {done}/{total} runs already finished", file=sys.stderr, flush=True)

    def finished(self, name: str, seconds: float) -> None:
        self.done += 1
        self.ran += 1
        if self.bar is not None:
            self.bar.set_postfix_str(name[:40])
            self.bar.update(1)
            return
        rate = (time.perf_counter() - self.started) / self.ran
        print(f"sweep: {self.done}/{self.total} runs done ({name}, {seconds:.1f} s); "
              f"about {_duration(rate * (self.total - self.done))} left", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_local(jobs: list[Job], workers: int, progress: Progress, cache: str) -> None:
    """``workers`` processes (spawned: a fork of a process that ran torch can deadlock),
    each with an equal share of the cores as torch threads; one worker runs in-process."""
    if workers <= 1:
        for job in jobs:
            progress.finished(job.name, run_job(job.scenario, str(job.run_dir), None, cache))
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(run_job, job.scenario, str(job.run_dir), threads, cache): job for job in jobs}
        try:
            for future in as_completed(futures):
                progress.finished(futures[future].name, future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise


class RayConnectError(cfg.ScenarioError):
    """``--ray ADDRESS`` names no reachable cluster: a user error."""


def run_ray(jobs: list[Job], address: str, progress: Progress, cache: str) -> None:
    """One Ray task per run on the cluster at ``address`` (``auto``: the one this machine
    belongs to), or on the Ray instance this process already joined."""
    import ray
    started_here = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayConnectError(f"--ray {address}: cannot join a Ray cluster "
                                  f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        started_here = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=2)(run_job)
        pending = {remote.remote(job.scenario, str(job.run_dir.resolve()), 1, cache): job for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                progress.finished(job.name, ray.get(ref))
    finally:
        if started_here:
            ray.shutdown()
