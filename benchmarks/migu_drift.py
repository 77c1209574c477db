"""MIGU against plain local training when peers' class sets drift (issue 15.3).

Scenario ``scenarios/drift_migu.yaml``: digits, 10 peers on a random 4-regular graph,
mean merging, the ``drift`` partition with stagger 0: every peer trains on classes 0-4
in rounds 1-10, 5-9 in rounds 11-20, 0-4 in 21-30 and 5-9 in 31-40 (class-incremental
continual learning, the federation moving on together). ``--head-init``: a random
common head or one fitted on the public split (a pre-trained output layer, as MIGU
fine-tunes pre-trained models). MIGU (Du et al. 2024) at ``training.migu_quantile`` q
updates, at each local step, only the head rows whose output magnitude on the batch is
at least the q-quantile (the paper's q is 0.7).

Measured at the end of every phase on the global test set, honest peers' mean: the
accuracy on the classes just trained ("current") and on the other five ("previous");
forgetting is a class set's accuracy at the end of its phase minus its accuracy at the
end of the next phase (mean over the 3 switches). Reported per q over the seeds
(mean ± std), with the final accuracy on all classes.

    python benchmarks/migu_drift.py [--seeds 0 1 2] [--quantiles 0 0.5 0.7] [--head-init public]
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fedsim, attacks, defenses
sys.path.insert(1, str(Path(__file__).resolve().parent))
from _common import table  # noqa: E402

from fedsim import config  # noqa: E402
from fedsim.data.partition import drift_classes, drift_phase  # noqa: E402
from fedsim.engine.local import LocalBackend  # noqa: E402
from fedsim.topology import Schedule, neighbour_matrix  # noqa: E402
from fedsim.world import build_world  # noqa: E402

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "drift_migu.yaml"


def measure(q: float, seed: int, head_init: str) -> tuple[float, float, float, float]:
    """(final accuracy, mean current-class accuracy, mean previous-class accuracy,
    mean forgetting) of one run."""
    raw = yaml.safe_load(SCENARIO.read_text())
    raw.update(seed=seed)
    raw["model"]["head_init"] = head_init
    raw["training"]["migu_quantile"] = q
    s = config.from_dict(raw)
    part = s.data.partition
    schedule = Schedule(s.topology.kind, s.topology.n_peers, s.seed, s.topology.args)
    world = build_world(s, schedule)
    backend = LocalBackend(world)
    neighbours = neighbour_matrix(schedule.graph(1), world.n_peers)[0]
    phase_classes = [drift_classes(0, p, world.n_classes, part.classes_per_peer, part.stagger)
                     for p in range(part.phases)]

    def accuracy(classes) -> float:
        keep = torch.as_tensor(np.isin(world.test_labels.numpy(), classes))
        return float(backend.evaluate(world.test_features[keep], world.test_labels[keep])["accuracy"].mean())

    current, previous, at_end = [], [], []
    for r in range(1, s.rounds + 1):
        backend.round(r, schedule.graph(r), neighbours)
        if r % part.drift_every == 0:
            phase = int(drift_phase(r, part.drift_every, part.phases))
            now = {p: accuracy(phase_classes[p]) for p in range(part.phases)}
            current.append(now[phase])
            previous.append(now[(phase - 1) % part.phases])
            at_end.append((phase, now))
    # a class set's accuracy at the end of its phase minus at the end of the next phase
    forgetting = [at_end[i][1][at_end[i][0]] - at_end[i + 1][1][at_end[i][0]] for i in range(len(at_end) - 1)]
    final = float(backend.evaluate(world.test_features, world.test_labels)["accuracy"].mean())
    return final, statistics.mean(current), statistics.mean(previous), statistics.mean(forgetting)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quantiles", type=float, nargs="+", default=[0.0, 0.5, 0.7])
    p.add_argument("--head-init", choices=["random", "public"], default="random",
                   help="common initial head: random, or fitted on the public split (a pre-trained output layer)")
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("fedsim").setLevel(logging.WARNING)
    fmt = lambda xs: f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"
    rows = []
    for q in args.quantiles:
        results = [measure(q, seed, args.head_init) for seed in args.seeds]
        rows.append(["plain" if q == 0 else f"MIGU q={q}"] + [fmt([r[i] for r in results]) for i in range(4)])
        print(f"done {q}", file=sys.stderr)
    print(table(["training", "final accuracy (all classes)", "current classes", "previous classes",
                 "forgetting"], rows))


if __name__ == "__main__":
    main()
