"""Seconds per round: local backend vs Ray with 1, 2 and 4 actors, at 100 and 1,000 peers.

Same workload as scale.py (fashion_mnist features, iid, random_regular degree 8, mean
defense). Ray runs use a local multi-process instance started by the run
(``backend.address: null``), or with ``--cluster`` a two-node
``ray.cluster_utils.Cluster`` (two raylets of ``--cpus-per-node`` CPUs on this machine,
joined by address: what a two-machine cluster runs, without the network); actor
start-up is set-up, not loop time. Median over repeats of loop time per round.

    python benchmarks/ray_overhead.py [--rounds 20] [--repeats 3] [--cluster] [--cpus-per-node 1]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import run_child, table  # noqa: E402
from scale import scenario  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    p.add_argument("--cluster", action="store_true", help="run Ray on a two-node cluster_utils.Cluster")
    p.add_argument("--cpus-per-node", type=int, default=1)
    args = p.parse_args()
    address, cluster = None, None
    if args.cluster:
        from ray.cluster_utils import Cluster
        # health checks that tolerate a loaded machine (tests/conftest.py two_node_cluster)
        config = {"health_check_failure_threshold": 60, "health_check_period_ms": 3000}
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.cpus_per_node,
                                                                "_system_config": config})
        cluster.add_node(num_cpus=args.cpus_per_node)
        cluster.wait_for_nodes()
        address = cluster.address
    try:
        measure(args, address)
    finally:
        if cluster is not None:
            cluster.shutdown()


def measure(args, address) -> None:
    run_child(scenario(100, 1))  # warm the feature cache
    rows = []
    for n in args.sizes:
        base = scenario(n, args.rounds)
        local = statistics.median(run_child(base)["loop_time_s"] / args.rounds for _ in range(args.repeats))
        row = [n, f"{local:.4f}"]
        for actors in (1, 2, 4):
            sc = dict(base, backend={"name": "ray", "peers_per_actor": math.ceil(n / actors), "address": address})
            t = statistics.median(run_child(sc)["loop_time_s"] / args.rounds for _ in range(args.repeats))
            row += [f"{t:.4f} ({t / local:.2f}x)"]
        rows.append(row)
        print(f"done {n}", file=sys.stderr)
    where = "two-node cluster" if address else "local Ray instance"
    print(f"{where}, {args.rounds} rounds, median of {args.repeats}")
    print(table(["peers", "local s/round", "ray 1 actor", "ray 2 actors", "ray 4 actors"], rows))


if __name__ == "__main__":
    main()
