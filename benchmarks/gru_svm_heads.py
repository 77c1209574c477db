"""GRU-SVM's output layer against softmax on scenarios/gru_svm.yaml: the l2svm head
(Agarap 2017, C = 0.5) and the linear (softmax) head, without attack and under two
attacks, 3 seeds; prints the markdown table of docs/components.md (GRU-SVM section)::

    python benchmarks/gru_svm_heads.py [--seeds 0 1 2]

Final-round honest accuracy (accuracy_mean), mean ± std over the seeds (population std).
"""
from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np
import yaml

import fedsim

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "gru_svm.yaml"
HEADS = {"l2svm (C 0.5)": {"head": "l2svm", "head_args": {"C": 0.5}}, "linear (softmax)": {"head": "linear", "head_args": {}}}
ATTACKS = {
    "none": None,
    "label_flip, 25 % Byzantine, mean": {"fraction": 0.25, "attack": {"name": "label_flip"}},
    "gaussian (std 1), 25 % Byzantine, median": {"fraction": 0.25, "attack": {"name": "gaussian", "args": {"std": 1.0}},
                                                 "defense": "median"},
}


def final_accuracy(scenario: dict) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        scenario = {**scenario, "output": {"dir": str(Path(tmp) / "run"), "plots": False, "checkpoint_every": 0}}
        summary, _ = fedsim.run(scenario, progress=False)
    return float(summary["final"]["accuracy_mean"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = p.parse_args()
    base = yaml.safe_load(SCENARIO.read_text())
    lines = ["| attack | " + " | ".join(HEADS) + " |", "|---|" + "---|" * len(HEADS)]
    for attack_name, attack in ATTACKS.items():
        cells = []
        for head in HEADS.values():
            scores = []
            for seed in a.seeds:
                s = copy.deepcopy(base)
                s["seed"] = seed
                s["model"].update(head)
                if attack is not None:
                    adversary = {k: v for k, v in attack.items() if k != "defense"}
                    s["defense"] = {"name": attack.get("defense", "mean")}
                    s["adversary"] = adversary
                scores.append(final_accuracy(s))
                print(f"{attack_name} / {head['head']} / seed {seed}: {scores[-1]:.4f}", flush=True)
            cells.append(f"{np.mean(scores):.3f} ± {np.std(scores):.3f}")
        lines.append(f"| {attack_name} | " + " | ".join(cells) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
