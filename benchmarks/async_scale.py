"""Asynchronous gossip against synchronous rounds: wall time per 1,000 peer-updates and
simulated seconds per wall second, at 1,000 and 10,000 peers.

Workload (as benchmarks/scale.py): fashion_mnist features (cnn backbone, cached after
the first run), iid partition, random_regular degree 8, mean defense, 10 local SGD
steps of batch 32, one evaluation on a 1,000-image subsample at the end. Synchronous:
``--rounds`` rounds, N * rounds peer-updates. Asynchronous (``network.mode: async``):
every peer's step takes a lognormal 0.1 s (sigma 0.3) so an update takes ~1 s,
latency 0.05 s, ticks of ``--tick`` s, for ``--rounds`` simulated seconds, so about
the same number of peer-updates. Each run is its own process; the figure is the median
over ``--repeats`` of the loop time (set-up excluded) per 1,000 peer-updates.

    python benchmarks/async_scale.py [--sizes 1000 10000] [--rounds 5] [--tick 0.1] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402

CHILD = r"""
import json, sys
import fedsim
summary, run_dir = fedsim.run(json.loads(sys.argv[1]), progress=False)
final = summary["final"]
print(json.dumps({"loop_time_s": summary["loop_time_s"], "updates": final.get("updates"),
                  "sim_time_s": final.get("sim_time_s"), "accuracy": final["accuracy_mean"]}))
"""


def scenario(n_peers: int, rounds: int, tick: float, mode: str) -> dict:
    s = {
        "name": f"async-scale-{mode}-{n_peers}", "seed": 0, "rounds": rounds, "eval_every": rounds,
        "eval_samples": 1000,
        "data": {"dataset": "fashion_mnist", "test_per_class": 0, "partition": {"kind": "iid"}},
        "model": {"backbone": "cnn"},
        "training": {"optimizer": "sgd", "lr": 0.05, "local_steps": 10, "batch_size": 32},
        "topology": {"kind": "random_regular", "n_peers": n_peers, "args": {"degree": 8}},
        "defense": {"name": "mean"},
    }
    if mode == "async":
        s["network"] = {"mode": "async", "tick": tick, "duration_s": float(rounds), "eval_every_s": float(rounds),
                        "compute": {"kind": "lognormal", "mean": 0.1, "sigma": 0.3},
                        "links": {"latency": {"mean": 0.05}}}
    return s


def run_child(s: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        s = {**s, "output": {"dir": str(Path(tmp) / "run"), "plots": False, "checkpoint_every": 0}}
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(s)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--rounds", type=int, default=5, help="sync rounds = async simulated seconds")
    p.add_argument("--tick", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    run_child(scenario(100, 1, args.tick, "sync"))  # warm the feature cache
    rows = []
    for n in args.sizes:
        figures = {}
        for mode in ("sync", "async"):
            reports = [run_child(scenario(n, args.rounds, args.tick, mode)) for _ in range(args.repeats)]
            updates = reports[0]["updates"] if mode == "async" else n * args.rounds
            per_k = statistics.median(r["loop_time_s"] for r in reports) / updates * 1000
            figures[mode] = per_k
            sim_rate = f"{args.rounds / statistics.median(r['loop_time_s'] for r in reports):.2f}" \
                if mode == "async" else "-"
            rows.append([n, mode, updates, f"{per_k:.3f}", sim_rate,
                         f"{per_k / figures['sync']:.2f}", f"{reports[0]['accuracy']:.4f}"])
            print(f"done {n} {mode}", file=sys.stderr)
    print(table(["peers", "engine", "peer-updates", "wall s / 1,000 updates", "sim s / wall s",
                 "x sync", "final acc"], rows))


if __name__ == "__main__":
    main()
