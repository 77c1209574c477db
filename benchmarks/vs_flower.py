"""fedsim on Flower's classic workload, next to Flower's own figures (issue 14.5).

The workload: 60,000 training samples of dimension D = 128 in 10 classes, a linear
(softmax) head, every client 10 SGD steps of batch 32 at lr 0.05 per round, N = 20,
100 and 1,000 clients. In fedsim: the synthetic Gaussian-cluster dataset (75,000
samples, 20 % held out for testing, so 60,000 train, ``dim`` 128), identity backbone,
iid partition, no local test set, evaluation on 1,000 test samples at the last round
only (not timed: ``s/round`` is the rounds' time without it, median of ``--repeats``).
Two topologies: ``complete`` with ``mean`` is FedAvg exactly (every peer averages all N
heads, what Flower's server computes, here computed by each of the N peers), and
``random 8-regular`` is fedsim's decentralized gossip.

Flower's figures were measured by ``flwr`` 1.42 (simulation engine) on this machine and
are quoted from issue 14; Flower need not be installed to run this script.

    python benchmarks/vs_flower.py [--rounds 10] [--repeats 3] [--sizes 20 100 1000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_child, table  # noqa: E402

FLOWER_S_PER_ROUND = {20: 0.207, 100: 0.741, 1000: 11.79}   # flwr 1.42, this machine (issue 14)
TOPOLOGIES = {"complete": {"kind": "complete"},
              "random 8-regular": {"kind": "random_regular", "args": {"degree": 8}}}


def scenario(n_clients: int, rounds: int, topology: dict) -> dict:
    return {
        "name": f"flower-workload-{n_clients}", "seed": 0, "rounds": rounds, "eval_every": rounds,
        "eval_samples": 1000,
        "data": {"dataset": "synthetic", "args": {"n_samples": 75000, "dim": 128, "n_classes": 10},
                 "test_fraction": 0.2, "public_fraction": 0.0, "test_per_class": 0, "partition": {"kind": "iid"}},
        "model": {"backbone": "identity", "head": "linear"},
        "training": {"optimizer": "sgd", "lr": 0.05, "local_steps": 10, "batch_size": 32},
        "topology": {**topology, "n_peers": n_clients},
        "defense": {"name": "mean"},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 1000])
    args = p.parse_args()
    rows = []
    for n in args.sizes:
        row = [n, f"{FLOWER_S_PER_ROUND[n]:.3f}" if n in FLOWER_S_PER_ROUND else "-"]
        for topology in TOPOLOGIES.values():
            reports = [run_child(scenario(n, args.rounds, topology)) for _ in range(args.repeats)]
            per_round = statistics.median(r["rounds_time_s"] / r["rounds"] for r in reports)
            peak = max(r["peak_mib"] for r in reports)
            ratio = FLOWER_S_PER_ROUND[n] / per_round if n in FLOWER_S_PER_ROUND else None
            speedup = "" if ratio is None else f" ({ratio:.1f}x faster)" if ratio >= 1 else f" ({1 / ratio:.1f}x slower)"
            row += [f"{per_round:.4f}{speedup}", f"{peak:.0f}"]
        rows.append(row)
        print(f"done {n}", file=sys.stderr)
    print(f"Flower's classic workload, {args.rounds} rounds, median of {args.repeats} (fedsim: loop time per "
          "round without the final evaluation; peak RSS of the run's process)")
    print(table(["clients", "Flower s/round", "fedsim complete (FedAvg) s/round", "peak MiB",
                 "fedsim random 8-regular s/round", "peak MiB"], rows))


if __name__ == "__main__":
    main()
