"""Seconds per round and peak memory from 100 to 100,000 peers.

Workload: random_regular degree 8, iid partition, mean defense, 10 local SGD steps of
batch 32 (lr 0.05), evaluation on a 1,000-image subsample of the test set at the last
round only. Two feature sets:

- ``fashion_mnist``: the cnn backbone's 64-dimensional features (cached after the first
  run); 48,000 private training images, so at most 48,000 peers;
- ``synthetic``: identity features of the synthetic Gaussian-cluster dataset (64
  dimensions, 10 classes, 10 samples per peer), which reaches 100,000 peers.

Each size runs in its own process, so its peak RSS is its own. ``s/round`` is the
median over repeats of the rounds' time without the final evaluation (the last metrics
row's ``wall_time_s`` over the rounds); ``eval`` is that one evaluation of every
honest peer; ``set-up`` is everything before the first round (data, features, graph,
world, backend).

    python benchmarks/scale.py [--rounds 100] [--repeats 3] [--sizes 100 1000 10000]
                               [--dataset fashion_mnist|synthetic] [--kernel exact fast]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_child, table  # noqa: E402


def scenario(n_peers: int, rounds: int, dataset: str = "fashion_mnist", kernel: str = "exact") -> dict:
    data = {"dataset": "fashion_mnist", "test_per_class": 0, "partition": {"kind": "iid"}}
    model = {"backbone": "cnn"}
    if dataset == "synthetic":
        data = {"dataset": "synthetic", "args": {"n_samples": 10 * n_peers, "dim": 64}, "public_fraction": 0.0,
                "test_per_class": 0, "partition": {"kind": "iid"}}
        model = {"backbone": "identity"}
    return {
        "name": f"scale-{dataset}-{n_peers}", "seed": 0, "rounds": rounds, "eval_every": rounds, "eval_samples": 1000,
        "data": data, "model": model,
        "training": {"optimizer": "sgd", "lr": 0.05, "local_steps": 10, "batch_size": 32, "kernel": kernel},
        "topology": {"kind": "random_regular", "n_peers": n_peers, "args": {"degree": 8}},
        "defense": {"name": "mean"},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--dataset", choices=["fashion_mnist", "synthetic"], default="fashion_mnist")
    p.add_argument("--kernel", choices=["exact", "fast"], nargs="+", default=["exact", "fast"],
                   help="training.kernel of the runs (one row per size and kernel)")
    args = p.parse_args()
    if args.dataset == "fashion_mnist":
        run_child(scenario(100, 1))  # warm the feature cache so no size pays for pre-training
    rows = []
    for n, kernel in [(n, k) for n in args.sizes for k in args.kernel]:
        reports = [run_child(scenario(n, args.rounds, args.dataset, kernel)) for _ in range(args.repeats)]
        per_round = statistics.median(r["rounds_time_s"] / r["rounds"] for r in reports)
        evaluation = statistics.median(r["loop_time_s"] - r["rounds_time_s"] for r in reports)
        setup = statistics.median(r["setup_s"] for r in reports)
        rows.append([n, kernel, args.rounds, f"{per_round:.4f}", f"{per_round * args.rounds:.1f}", f"{evaluation:.1f}",
                     f"{setup:.1f}", f"{max(r['peak_mib'] for r in reports):.0f}", f"{reports[0]['accuracy']:.4f}"])
        print(f"done {n} {kernel}", file=sys.stderr)
    print(f"{args.dataset}, random 8-regular, mean, {args.rounds} rounds, median of {args.repeats}")
    print(table(["peers", "kernel", "rounds", "s/round (median)", "s rounds", "s eval", "s set-up", "peak RSS MiB",
                 "final acc"], rows))


if __name__ == "__main__":
    main()
