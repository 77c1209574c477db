"""Does log Z separate honest from Byzantine heads? (issue 15.2; Wortsman et al. 2023)

For every shipped Byzantine attack, a small run (``scenarios/log_z.yaml``: digits, 20 peers
of which 6 Byzantine, random 6-regular graph, Dirichlet 0.5, mean defense, 10 rounds) records, in its last
round, the log Z (``logsumexp`` of the logits, averaged over the global test set) of
every head on the wire: each honest peer's sent head and each message a Byzantine
sender sent (crafted by the attack; the trained head for data-poisoning attacks).
Separation is the AUC of log Z as a detector (the probability that a Byzantine
message's log Z exceeds an honest one's; 0.5 = none, 1 or 0 = perfect), and the honest
peers' mean log Z after merging (the row's ``log_z_mean``) against the clean run's,
and their mean accuracy (to compare ``--z-loss 1e-4``, the paper's weight, with 0).
3 seeds, mean ± std.

    python benchmarks/log_z_separation.py [--seeds 0 1 2] [--rounds 10] [--z-loss 0]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fedsim, attacks, defenses
sys.path.insert(1, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402
import yaml  # noqa: E402

from fedsim import config  # noqa: E402
from fedsim.engine.local import LocalBackend  # noqa: E402
from fedsim.models.heads import head_logits, log_partition  # noqa: E402
from fedsim.registry import names  # noqa: E402
from fedsim.topology import Schedule, neighbour_matrix  # noqa: E402
from fedsim.world import build_world  # noqa: E402

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "log_z.yaml"


def scenario(attack, seed: int, rounds: int, z_loss: float) -> dict:
    """``scenarios/log_z.yaml`` with this attack (None: no adversary), seed, rounds and z-loss."""
    s = yaml.safe_load(SCENARIO.read_text())
    s.update(seed=seed, rounds=rounds)
    s["training"]["z_loss"] = z_loss
    if attack:
        s["adversary"]["attack"] = {"name": attack}
    else:
        del s["adversary"]
    return s


def log_z(heads: torch.Tensor, features: torch.Tensor) -> np.ndarray:
    return log_partition(head_logits(heads, features)).double().mean(dim=-1).numpy()


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(positive > negative) + P(equal) / 2 over all pairs (Mann-Whitney)."""
    p, n = positive[:, None], negative[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def measure(attack, seed: int, rounds: int, z_loss: float) -> tuple[float, float, float]:
    """(AUC of the last round's messages, honest mean log Z after the last merge, honest
    mean accuracy after the last merge)."""
    s = config.from_dict(scenario(attack, seed, rounds, z_loss))
    schedule = Schedule(s.topology.kind, s.topology.n_peers, s.seed, s.topology.args)
    world = build_world(s, schedule)
    host = LocalBackend(world).host
    neighbours = neighbour_matrix(schedule.graph(1), world.n_peers)[0]
    byzantine = sorted(world.byzantine_ids)
    for r in range(1, rounds + 1):
        ids, sent = host.train(r)
        crafted = host.craft(r, schedule.graph(r), (ids, sent))
        host.aggregate(r, neighbours, crafted, (ids, sent))
    honest_sent = log_z(sent[torch.as_tensor(world.honest_ids)], world.test_features)
    bad = [obj for (sender, _), obj in crafted.items() if torch.is_tensor(obj) and obj.shape == sent.shape[1:]]
    bad = torch.stack(bad) if bad else sent[torch.as_tensor(byzantine)] if byzantine else None
    separation = auc(log_z(bad, world.test_features), honest_sent) if bad is not None else float("nan")
    res = host.evaluate(world.test_features, world.test_labels)
    return separation, float(res["log_z"].mean()), float(res["accuracy"].mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--z-loss", type=float, default=0.0)
    p.add_argument("--attacks", nargs="+", default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    fmt = lambda xs: f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"
    rows = []
    for attack in [None] + (args.attacks or names("attacks")):
        results = [measure(attack, seed, args.rounds, args.z_loss) for seed in args.seeds]
        aucs = [r[0] for r in results]
        rows.append([attack or "(none)", "-" if attack is None else fmt(aucs), fmt([r[1] for r in results]),
                     fmt([r[2] for r in results])])
        print(f"done {attack}", file=sys.stderr)
    print(table(["attack", "AUC of log Z (Byzantine > honest)", "honest log_z_mean after merge",
                 "honest accuracy"], rows))


if __name__ == "__main__":
    main()
