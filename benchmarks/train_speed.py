"""Local training of one 1,000-peer round against its batched-matmul bound.

Workload (as ``benchmarks/scale.py``): fashion_mnist features (cnn backbone, cached
after the first run), iid partition, random 8-regular, 10 local SGD steps of batch 32.
Only ``PeerGroup.train`` is timed (batch draw, feature gather, the steps, the sent
heads). A step's work is two matmuls per peer, the logits ``[B, D+1] x [D+1, C]`` and
the gradient ``[C, B] x [B, D+1]``: ``4 B (D+1) C`` FLOPs. The bound is the rate
``torch.bmm`` reaches on those two products alone (operands already in place, the faster
of the sample-major and class-major layouts); the ratio
says how far the whole step is from it. One row per ``training.kernel``: ``exact``
(sample-major logits, the numbers of earlier releases bit for bit) and ``fast``
(class-major logits; ``fedsim.models.heads.Head.grad``). Medians over ``--repeats``.

    python benchmarks/train_speed.py [--peers 1000] [--repeats 7] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fedsim, defenses
sys.path.insert(1, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402
from scale import scenario  # noqa: E402

from fedsim import config  # noqa: E402
from fedsim.engine.host import Plugins  # noqa: E402
from fedsim.engine.peer_group import PeerGroup  # noqa: E402
from fedsim.topology import Schedule  # noqa: E402
from fedsim.world import build_world  # noqa: E402


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--peers", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train_s = {}
    for kernel in ("exact", "fast"):
        s = config.from_dict(scenario(args.peers, 1, kernel=kernel))
        world = build_world(s, Schedule(s.topology.kind, s.topology.n_peers, s.seed, s.topology.args))
        group = PeerGroup(world, range(world.n_peers), Plugins.of(world))
        rounds = iter(range(1, 10**9))
        train_s[kernel] = median_time(lambda: group.train(next(rounds)), args.repeats)
    t = world.scenario.training
    n, (C, P) = world.n_peers, group.heads.shape[1:]
    B, steps = t.batch_size, t.local_steps
    flops = 4 * n * B * P * C * steps

    x = torch.randn(n, B, P, dtype=world.features.dtype)
    heads = group.heads.clone()
    dz = torch.randn(n, B, C, dtype=heads.dtype)
    logits, grad = torch.empty(n, B, C, dtype=heads.dtype), torch.empty_like(heads)

    logits_t, dz_t = logits.transpose(1, 2).contiguous(), dz.transpose(1, 2).contiguous()

    def sample_major():
        for _ in range(steps):
            torch.bmm(x, heads.transpose(1, 2), out=logits)
            torch.bmm(dz.transpose(1, 2), x, out=grad)

    def class_major():
        for _ in range(steps):
            torch.bmm(heads, x.transpose(1, 2), out=logits_t)
            torch.bmm(dz_t, x, out=grad)
    # the bound: the faster of the two layouts' matmuls
    bound_s = min(median_time(sample_major, args.repeats), median_time(class_major, args.repeats))
    bound = flops / bound_s / 1e9
    rows = []
    for kernel, seconds in train_s.items():
        achieved = flops / seconds / 1e9
        rows.append([n, kernel, C, P, f"{B} x {steps}", f"{seconds:.4f}", f"{achieved:.2f}", f"{bound_s:.4f}",
                     f"{bound:.2f}", f"{bound / achieved:.2f}"])
    print(table(["peers", "training.kernel", "C", "D+1", "B x steps", "train s", "GFLOP/s", "bmm bound s",
                 "bound GFLOP/s", "bound / achieved"], rows))


if __name__ == "__main__":
    main()
