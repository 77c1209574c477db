"""Pre-training the backbone on the public split, then freezing it (transfer learning).

As in Bristle (Verbraeken, de Vos, Pouwelse 2021), the non-output layers are fixed
before federated training starts; peers only train the output layer. Here the
backbone is trained with a temporary linear classifier (softmax cross-entropy, Adam)
on the public split, which peers never see, and the classifier is thrown away.
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def freeze(backbone: nn.Module) -> nn.Module:
    """``requires_grad = False`` on every parameter and ``eval()`` mode (BatchNorm uses its
    running statistics from now on)."""
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    return backbone.eval()


def pretrain_backbone(backbone: nn.Module, images: torch.Tensor, labels: torch.Tensor, n_classes: int, *,
                      epochs: int = 10, lr: float = 1e-3, batch_size: int = 64,
                      classes: Optional[Sequence[int]] = None, seed: int = 0) -> dict:
    """Train ``backbone`` + a temporary ``Linear(feature_dim, n_classes)`` with Adam, then freeze.

    ``images``/``labels`` are the public split; with ``classes`` only those classes' samples
    are used. Each epoch visits the samples in a fresh order drawn from a local
    ``torch.Generator`` seeded with ``seed``; the classifier's initial weights come from
    the same generator, so the result depends only on the arguments and the backbone's
    initial state. Skipped (the backbone is only frozen) when the backbone has no
    parameters (``identity``), no sample is selected or ``epochs`` is 0. Defaults: 10
    epochs, lr 1e-3, batch 64 (Adam's other settings are PyTorch's).

    Returns stats: ``skipped`` (the reason or None), ``n_samples``, ``epochs``, ``steps``,
    ``final_loss`` (mean over the last epoch), ``train_accuracy`` (last epoch, training
    mode), ``seconds``.
    """
    if int(epochs) < 0:
        raise ValueError(f"pretrain epochs must be >= 0; got {epochs}")
    if not float(lr) > 0:
        raise ValueError(f"pretrain lr must be > 0; got {lr}")
    if int(batch_size) < 1:
        raise ValueError(f"pretrain batch_size must be >= 1; got {batch_size}")
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if len(images) != len(labels):
        raise ValueError(f"pretrain: {len(images)} images but {len(labels)} labels")
    if classes is not None:
        wanted = torch.as_tensor(list(classes), dtype=torch.int64)
        if len(wanted) and (wanted.min() < 0 or wanted.max() >= n_classes):
            raise ValueError(f"pretrain classes must be in [0, {n_classes}); got {list(classes)}")
        keep = torch.isin(labels, wanted)
        images, labels = images[keep], labels[keep]
    stats = {"skipped": None, "n_samples": int(len(labels)), "epochs": int(epochs), "steps": 0,
             "final_loss": None, "train_accuracy": None, "seconds": 0.0}
    parameters = [p for p in backbone.parameters()]
    if not parameters:
        stats["skipped"] = "backbone has no parameters"
    elif len(labels) == 0:
        stats["skipped"] = "no public samples"
    elif int(epochs) == 0:
        stats["skipped"] = "epochs is 0"
    if stats["skipped"]:
        freeze(backbone)
        return stats

    start = time.perf_counter()
    generator = torch.Generator().manual_seed(int(seed))
    classifier = nn.Linear(backbone.feature_dim, n_classes)
    with torch.no_grad():  # deterministic init from the local generator (PyTorch's default bounds)
        bound = 1.0 / backbone.feature_dim ** 0.5
        classifier.weight.uniform_(-bound, bound, generator=generator)
        classifier.bias.uniform_(-bound, bound, generator=generator)
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(parameters + list(classifier.parameters()), lr=float(lr))
    backbone.train()
    n = len(labels)
    for _ in range(int(epochs)):
        order = torch.randperm(n, generator=generator)
        loss_sum, correct = 0.0, 0
        for begin in range(0, n, int(batch_size)):
            batch = order[begin:begin + int(batch_size)]
            if len(batch) < 2 and n >= 2 and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                                  for m in backbone.modules()):
                continue  # BatchNorm cannot train on a batch of one
            logits = classifier(backbone(images[batch]))
            loss = F.cross_entropy(logits, labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            stats["steps"] += 1
            loss_sum += float(loss.detach()) * len(batch)
            correct += int((logits.argmax(1) == labels[batch]).sum())
        stats["final_loss"] = loss_sum / n
        stats["train_accuracy"] = correct / n
    freeze(backbone)
    stats["seconds"] = time.perf_counter() - start
    return stats
