"""Studies: ``fedsim sweep SWEEP.yaml`` runs a base scenario over a grid of settings and
seeds, then writes tables and figures.

A sweep directory (``--out``, default ``runs/sweeps/<sweep name>``)::

    sweep.json     the sweep: factors, seeds, cells and their run directories
    runs/<run>/    one run directory per (cell, seed): config.yaml, metrics.jsonl, peers.csv, ...
    results.csv    one row per run
    table.csv      one row per cell: mean, std and 95 % CI over seeds
    table.md       the cells as a rows x columns table per metric
    figures/       heatmap, curves, (accuracy vs attacker fraction): PNG and PDF

Running the same sweep into the same directory again skips finished runs (those with a
summary.json), resumes interrupted ones from their checkpoint and rewrites the tables,
so a killed sweep, started again, ends as an unbroken one would.
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Optional

from fedsim import config as cfg
from fedsim.study.execute import Job, Progress, run_local, run_ray, warm_cache
from fedsim.study.spec import PLAN_FILE, Sweep, check_layout, load, plan_dict, read_plan

__all__ = ["load", "run_sweep", "dry_run", "redraw", "is_sweep_dir"]


def default_dir(sweep: Sweep) -> Path:
    return Path("runs") / "sweeps" / sweep.name


def is_sweep_dir(path) -> bool:
    return (Path(path) / PLAN_FILE).exists()


def jobs_of(sweep: Sweep, sweep_dir: Path) -> tuple[list[Job], dict]:
    run_dirs = {(cell.index, seed): f"runs/{cell.run_name(seed)}" for cell, seed in sweep.runs()}
    jobs = [Job(run_dirs[cell.index, seed].split("/", 1)[1], sweep.scenario(cell, seed),
                sweep_dir / run_dirs[cell.index, seed]) for cell, seed in sweep.runs()]
    return jobs, run_dirs


def dry_run(sweep: Sweep, sweep_dir: Path) -> str:
    lines = [f"cell {cell.index}: {cell.label}" for cell in sweep.cells]
    n = len(sweep.cells)
    lines.append(f"{n} cell{'s' if n != 1 else ''} x {len(sweep.seeds)} seed{'s' if len(sweep.seeds) != 1 else ''} "
                 f"({', '.join(map(str, sweep.seeds))}) = {n * len(sweep.seeds)} runs -> {sweep_dir}")
    return "\n".join(lines)


def _check_existing(jobs: list[Job], sweep: Sweep) -> None:
    """A run directory that holds another scenario's run is never overwritten nor resumed."""
    for job in jobs:
        config_path = job.run_dir / "config.yaml"
        if not config_path.exists():
            continue
        try:
            held = cfg.from_dict(cfg.read_yaml(config_path), str(config_path)).to_dict()
        except cfg.ScenarioError:
            held = None
        if held != cfg.from_dict(job.scenario).to_dict():
            raise cfg.ScenarioError(f"{job.run_dir}: holds a run of another scenario than {sweep.path} gives this "
                                    "cell; use another --out or remove that directory")


class _Lock:
    """One sweep at a time in a sweep directory (an flock on ``.lock``)."""

    def __init__(self, sweep_dir: Path):
        self.path = sweep_dir / ".lock"

    def __enter__(self):
        self.fh = open(self.path, "w")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise cfg.ScenarioError(f"{self.path.parent}: another fedsim sweep is running in this directory") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()
        return False


def run_sweep(sweep: Sweep, out=None, jobs: Optional[int] = None, ray: Optional[str] = None,
              rows: Optional[str] = None, cols: Optional[str] = None, progress: Optional[bool] = None) -> Path:
    """Run every unfinished run of ``sweep`` into ``out``; write tables and figures.
    Returns the sweep directory."""
    check_layout(sweep, rows, cols, str(sweep.path), flags=("--rows", "--cols"))
    sweep_dir = Path(out) if out is not None else default_dir(sweep)
    work, run_dirs = jobs_of(sweep, sweep_dir)
    _check_existing(work, sweep)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    from fedsim.results import atomic_write
    with _Lock(sweep_dir):
        atomic_write(sweep_dir / PLAN_FILE,
                     (json.dumps(plan_dict(sweep, run_dirs), indent=1, default=str) + "\n").encode())
        pending = [job for job in work if not (job.run_dir / "summary.json").exists()]
        if pending:
            from fedsim.models.features import cache_dir
            warm_cache([job.scenario for job in pending])
            bar = Progress(len(work), len(work) - len(pending), progress)
            try:
                if ray is not None:
                    run_ray(pending, ray, bar, str(cache_dir()))
                else:
                    run_local(pending, jobs or os.cpu_count() or 1, bar, str(cache_dir()))
            finally:
                bar.close()
        else:
            print(f"sweep: all {len(work)} runs already finished", file=sys.stderr, flush=True)
        redraw(sweep_dir, rows, cols, sweep=sweep)
    return sweep_dir


def redraw(sweep_dir, rows: Optional[str] = None, cols: Optional[str] = None, sweep: Optional[Sweep] = None) -> list:
    """Tables and figures of a sweep directory from its run directories (``fedsim plot``)."""
    from fedsim import tables
    from fedsim.study.figures import draw_figures
    recorded, run_dirs = read_plan(sweep_dir)
    if sweep is not None:
        recorded.base = sweep.base
    check_layout(recorded, rows, cols, str(Path(sweep_dir) / PLAN_FILE), flags=("--rows", "--cols"))
    written = tables.write_tables(recorded, Path(sweep_dir), run_dirs, rows, cols)
    return written + draw_figures(recorded, Path(sweep_dir), run_dirs, rows, cols)
