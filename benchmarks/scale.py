"""Seconds per round and peak memory at 100, 1,000 and 10,000 peers.

Workload: fashion_mnist features (cnn backbone, cached after the first run), iid
partition, random_regular degree 8, mean defense, 10 local SGD steps of batch 32,
evaluation on a 1,000-image subsample of the test set at the last round only.
Each size runs in its own process, so its peak RSS is its own. Times are the median
over repeats of the loop time per round (set-up excluded).

    python benchmarks/scale.py [--rounds 100] [--repeats 3] [--sizes 100 1000 10000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_child, table  # noqa: E402


def scenario(n_peers: int, rounds: int) -> dict:
    return {
        "name": f"scale-{n_peers}", "seed": 0, "rounds": rounds, "eval_every": rounds, "eval_samples": 1000,
        "data": {"dataset": "fashion_mnist", "test_per_class": 0, "partition": {"kind": "iid"}},
        "model": {"backbone": "cnn"},
        "training": {"optimizer": "sgd", "lr": 0.05, "local_steps": 10, "batch_size": 32},
        "topology": {"kind": "random_regular", "n_peers": n_peers, "args": {"degree": 8}},
        "defense": {"name": "mean"},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    args = p.parse_args()
    run_child(scenario(100, 1))  # warm the feature cache so no size pays for pre-training
    rows = []
    for n in args.sizes:
        reports = [run_child(scenario(n, args.rounds)) for _ in range(args.repeats)]
        per_round = statistics.median(r["loop_time_s"] / r["rounds"] for r in reports)
        rows.append([n, args.rounds, f"{per_round:.4f}", f"{per_round * args.rounds:.1f}",
                     f"{max(r['peak_mib'] for r in reports):.0f}", f"{reports[0]['accuracy']:.4f}"])
        print(f"done {n}", file=sys.stderr)
    print(table(["peers", "rounds", "s/round (median)", "s total", "peak RSS MiB", "final acc"], rows))


if __name__ == "__main__":
    main()
