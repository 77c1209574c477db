"""How much faster a sweep's worker pool runs 12 short runs than running them one by one.

Workload: the quickstart (digits, 20 peers) shortened to ``--rounds`` rounds, 12 cells
(3 defenses x 4 learning rates, one seed, so one cached feature set). The baseline is
what a user would type: ``fedsim run`` once per cell, one after another; here one such
run is timed (median of ``--repeats``) and multiplied by 12. The sweep is
``fedsim sweep --jobs 2`` of the same 12 cells. Both are fresh processes timed on the
wall clock, with the feature cache warmed first. A ratio below 1 means the sweep is
faster; 0.5 would be perfect use of 2 workers with nothing shared.

    python benchmarks/sweep_speed.py [--rounds 10] [--jobs 2] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
DEFENSES = ["mean", "median", "trimmed_mean"]
LEARNING_RATES = [0.01, 0.05, 0.1, 0.2]


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    short = ["--set", f"rounds={args.rounds}", "--set", "output.plots=false"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sweep = tmp / "sweep.yaml"
        sweep.write_text(yaml.safe_dump({"name": "sweep_speed", "base": str(QUICKSTART),
                                         "axes": {"defense.name": DEFENSES, "training.lr": LEARNING_RATES}}))
        fedsim = [sys.executable, "-m", "fedsim.cli"]
        timed(fedsim + ["run", str(QUICKSTART), *short, "--set", "rounds=1", "--out", str(tmp / "warm")])
        one = statistics.median(timed(fedsim + ["run", str(QUICKSTART), *short, "--set", "defense.name=median",
                                                "--out", str(tmp / f"one-{k}")]) for k in range(args.repeats))
        inside = statistics.median(json.loads((tmp / f"one-{k}" / "summary.json").read_text())["wall_time_s"]
                                   for k in range(args.repeats))
        swept = timed(fedsim + ["sweep", str(sweep), *short, "--jobs", str(args.jobs), "--out", str(tmp / "sweep"),
                                "--no-progress"])
    cells = len(DEFENSES) * len(LEARNING_RATES)
    print(table(["what", "seconds"], [
        [f"one `fedsim run` process ({args.rounds} rounds, median of {args.repeats})", f"{one:.1f}"],
        ["  of which the run itself (summary.json wall_time_s: no interpreter or import start-up)", f"{inside:.1f}"],
        [f"{cells} x one `fedsim run` process", f"{cells * one:.1f}"],
        [f"`fedsim sweep --jobs {args.jobs}` of the {cells} cells (tables and figures included)", f"{swept:.1f}"]]))
    print(f"\nratio sweep / ({cells} x one fedsim run process): {swept / (cells * one):.2f}")
    print(f"ratio sweep / ({cells} x one run without process start-up): {swept / (cells * inside):.2f}")


if __name__ == "__main__":
    main()
