"""Milliseconds per peer of each aggregation rule's batched form (``aggregate_group``),
next to mean's, at 1,000 peers of degree 8.

Heads are ``[C, D+1] = [10, 65]`` (fashion_mnist's cnn features); every peer receives 8
heads near its own (own + N(0, 0.1^2)), all delivered. Bristle's contexts (local test
sets, class overlaps) come from a 1,000-peer synthetic world (iid, 2 test samples per
class) and are built once, outside the timing. Median of ``--repeats`` calls, one
torch thread unless ``--threads`` says otherwise.

    python benchmarks/rules.py [--peers 1000] [--degree 8] [--repeats 5] [--rules mean median ...]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fedsim, defenses
sys.path.insert(1, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402

RULES = {
    "mean": {}, "median": {}, "trimmed_mean": {"f": 2}, "bridge": {"b": 2},
    "krum": {"f": 2}, "multi_krum": {"f": 2}, "bulyan": {"f": 1}, "geometric_median": {},
    "centered_clipping": {"tau": 1.0, "iterations": 3}, "clipped_gossip": {"f": 2},
    "bristle": {},
}


def contexts(peers: int, degree: int, neighbours: torch.Tensor, mask: torch.Tensor):
    """One PeerContext per peer from a synthetic world of ``peers`` peers."""
    from fedsim.config import from_dict
    from fedsim.engine.peer_group import PeerGroup
    from fedsim.plugins import Plugins
    from fedsim.topology import Schedule
    from fedsim.world import build_world
    from fedsim.engine import exchange
    scenario = from_dict({
        "name": "rules-bench", "seed": 0, "rounds": 1,
        "data": {"dataset": "synthetic", "args": {"n_samples": 40 * peers, "dim": 64},
                 "public_fraction": 0.0, "test_per_class": 2, "partition": {"kind": "iid"}},
        "model": {"backbone": "identity"},
        "topology": {"kind": "random_regular", "n_peers": peers, "args": {"degree": degree}},
        "defense": {"name": "bristle"},
    })
    world = build_world(scenario, Schedule("random_regular", peers, 0, {"degree": degree}))
    group = PeerGroup(world, range(peers), Plugins.of(world))
    claimed = exchange.claimed_classes(world, None)
    degrees = torch.full((peers,), degree, dtype=torch.long)
    return [group.context(1, r, neighbours[r], mask[r], claimed, degrees) for r in range(peers)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--peers", type=int, default=1000)
    p.add_argument("--degree", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rules", nargs="+", default=list(RULES))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from fedsim.registry import create
    import defenses  # noqa: F401  (registers the rules)

    n, k, C, P = args.peers, args.degree, 10, 65
    g = torch.Generator().manual_seed(0)
    own = torch.randn(n, C, P, generator=g) * 0.5
    received = own.unsqueeze(1) + 0.1 * torch.randn(n, k, C, P, generator=g)
    mask = torch.ones(n, k, dtype=torch.bool)
    neighbours = torch.as_tensor(np.sort(np.random.default_rng(0).choice(n, size=(n, k)), axis=1))
    ctxs = contexts(n, k, neighbours, mask) if "bristle" in args.rules else None
    rows, mean_ms = [], None
    for name in args.rules:
        rule = create("defenses", name, **RULES.get(name, {}))
        rule_ctxs = ctxs if rule.needs_context else None
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            rule.aggregate_group(own, received, mask, rule_ctxs)
            times.append(time.perf_counter() - start)
        ms = 1000 * statistics.median(times) / n
        mean_ms = ms if name == "mean" else mean_ms
        ratio = f"{ms / mean_ms:.1f}x" if mean_ms else "-"
        rows.append([name, str(RULES.get(name, {})), f"{ms:.4f}", ratio])
        print(f"done {name}", file=sys.stderr)
    print(f"{n} peers, degree {k}, heads [{C}, {P}], {args.threads} thread(s), median of {args.repeats}")
    print(table(["rule", "args", "ms per peer", "vs mean"], rows))


if __name__ == "__main__":
    main()
