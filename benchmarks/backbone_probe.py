"""How good a frozen backbone's features are: pre-train it on the public split, then fit
one softmax head centrally on the other training samples' features (full-batch Adam,
fedsim.models.heads.fit_head) and score it on the test split. The question a backbone
default answers (docs/components.md, MobileNetV2 and GRU-SVM sections)::

    python benchmarks/backbone_probe.py digits cnn
    python benchmarks/backbone_probe.py digits mobilenetv2 --args '{"width": 0.5}' --epochs 30
    python benchmarks/backbone_probe.py digits gru --view sequences --seeds 0 1 2
    python benchmarks/backbone_probe.py fashion_mnist mobilenetv2 --subsample 10000 --public-fraction 0.1

Prints one line per seed and the mean ± std. Pre-training runs with one thread, as in a run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from fedsim.data.datasets import load_dataset
from fedsim.data.partition import split_public
from fedsim.models.features import prepare_features
from fedsim.models.heads import fit_head, head_logits


def probe(dataset: str, backbone: str, args: dict, pretrain: dict, seed: int, view: str,
          public_fraction: float = 0.2, subsample: int = 0) -> tuple[float, float, float]:
    """``(test accuracy of the probe, pre-training train accuracy, seconds)``. ``subsample``
    > 0 keeps the first ``subsample`` training and ``subsample // 5`` test samples (CPU time)."""
    data = load_dataset(dataset, seed=seed, view=view)
    if subsample:
        data = dataclasses.replace(data, train_images=data.train_images[:subsample],
                                   train_labels=data.train_labels[:subsample],
                                   test_images=data.test_images[:subsample // 5],
                                   test_labels=data.test_labels[:subsample // 5])
    public, private = split_public(data.train_labels.numpy(), public_fraction, seed)
    start = time.perf_counter()
    fs = prepare_features(data, public, backbone=backbone, backbone_args=args, pretrain=pretrain, seed=seed)
    rows = torch.as_tensor(private)
    head = fit_head(fs.train_features[rows], data.train_labels[rows], data.n_classes, "linear", steps=500)
    accuracy = float((head_logits(head, fs.test_features).argmax(-1) == data.test_labels).double().mean())
    return accuracy, float(fs.pretrain_stats.get("train_accuracy") or 0.0), time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dataset")
    p.add_argument("backbone")
    p.add_argument("--args", default="{}", help="backbone arguments as JSON")
    p.add_argument("--view", default="images", choices=["images", "sequences"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--public-fraction", type=float, default=0.2,
                   help="training share that pre-trains the backbone (the rest fits the probe)")
    p.add_argument("--subsample", type=int, default=0,
                   help="keep the first N training and N/5 test samples (0: all)")
    a = p.parse_args()
    pretrain = {"epochs": a.epochs, "lr": a.lr, "batch_size": a.batch_size}
    scores = []
    for seed in a.seeds:
        accuracy, train_accuracy, seconds = probe(a.dataset, a.backbone, json.loads(a.args), pretrain, seed, a.view,
                                                   a.public_fraction, a.subsample)
        scores.append(accuracy)
        print(f"{a.dataset} {a.backbone} {a.args} {pretrain} public {a.public_fraction} subsample {a.subsample} seed {seed}: probe test accuracy {accuracy:.4f} "
              f"(pre-training train accuracy {train_accuracy:.3f}, {seconds:.0f} s)", flush=True)
    print(f"mean ± std over {len(scores)} seed(s): {np.mean(scores):.4f} ± {np.std(scores):.4f}")


if __name__ == "__main__":
    main()
