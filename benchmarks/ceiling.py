"""The centralized ceiling of a scenario: one head trained on all peers' pooled
training features (same frozen backbone, same head loss), scored on the global test set.

    python benchmarks/ceiling.py scenarios/fashion_mnist.yaml [--steps 2000]
"""
from __future__ import annotations

import argparse


from fedsim import config
from fedsim.world import build_world
from fedsim.models.heads import fit_head, get_head, head_logits
from fedsim.topology import Schedule


def ceiling(path: str, steps: int) -> float:
    s = config.load(path)
    schedule = Schedule(s.topology.kind, s.topology.n_peers, s.seed, s.topology.args)
    world = build_world(s, schedule)
    rows = world.peers.train_rows
    head = fit_head(world.features[rows], world.peers.train_labels, world.n_classes, s.model.head,
                    steps=steps, lr=0.05, weight_decay=0.0)
    logits = head_logits(head, world.test_features)
    return float((get_head(s.model.head).predict(logits) == world.test_labels).double().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("scenario")
    p.add_argument("--steps", type=int, default=2000)
    args = p.parse_args()
    print(f"{args.scenario}: centralized head on pooled peer features, test accuracy "
          f"{ceiling(args.scenario, args.steps):.4f}")


if __name__ == "__main__":
    main()
