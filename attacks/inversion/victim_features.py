"""The backbone features of the victim's samples, from the head update alone.

A head update constrains only the backbone features of the batch, so the feature-space
attacks first find them and then images that have them
(:mod:`attacks.inversion.feature_matching`):

- **one sample, SGD** (any number of local steps on it): the update is rank one and the
  features are exact, :func:`attacks.inversion.analytic.recover_features` (Phong et al.
  2018; the sender's clipping only rescales the update and leaves them unchanged);
- **otherwise**: the features ``f [S, B, D]`` minimise the matching loss of the replayed
  update (:func:`attacks.inversion.base.dummy_delta`, labels inferred), by projected Adam
  over ``f >= 0`` (the backbones end with a ReLU/ReLU6 or are raw pixels, so features are
  non-negative), from features of random public images, ``restarts`` starts, the lowest
  matching loss kept. This is the gradient matching of Inverting Gradients (Geiping et al.
  2020: cosine distance, Adam) in the 64-dimensional feature space instead of pixel space.

**Top-k-aware attacker** (``kept_only``): a top-k sender zeroes all but its ``k`` largest
entries, so a zero of the observed update means "not sent", not "zero". The dummy update
is then compared on the sent entries only (the observed non-zeros) instead of being
top-k'd itself, and the labels come from the signs of the sent entries: with
non-negative features, row ``c`` of a softmax head's gradient is
``sum_i dz_{i,c} [x_i, 1]`` with ``dz_{i,c} = p_{i,c} - [y_i = c]``, which is negative only
for a class some sample holds, so a class with a positive sent entry in its row of
``H1 - H0`` is present (iDLG's sign rule, Zhao et al. 2020, read from every sent entry
instead of the bias alone); counts by the positive mass of each row.
"""
from __future__ import annotations

import dataclasses

import torch

from attacks.inversion.analytic import recover_features
from attacks.inversion.base import VictimUpdate, dummy_delta
from attacks.inversion.labels import infer_labels, labels_per_step, round_counts
from attacks.inversion.matching import cosine_distance


def sign_labels(update: VictimUpdate) -> torch.Tensor:
    """``[S*B]`` labels sorted by class from the signs of the sent entries of ``H1 - H0``:
    present classes have a positive entry in their row; the counts follow each row's
    positive mass (:func:`attacks.inversion.labels.round_counts`)."""
    positive = update.observed_delta.clamp_min(0).sum(dim=1)
    present = positive > 0
    total = positive.sum()
    estimate = positive / total * update.n_samples if total > 0 else torch.full_like(positive, 1.0)
    counts = round_counts(estimate, present, update.n_samples)
    return torch.repeat_interleave(torch.arange(counts.numel()), counts)


def update_labels(update: VictimUpdate, kept_only: bool) -> torch.Tensor:
    """``[S, B]`` the labels the attack uses: from the sent entries' signs (``kept_only``)
    or iDLG / LLG counting on the bias (:func:`attacks.inversion.labels.infer_labels`)."""
    labels = sign_labels(update) if kept_only else infer_labels(update)
    return labels_per_step(labels, update.local_steps, update.batch_size)


def feature_loss(update: VictimUpdate, features: torch.Tensor, labels: torch.Tensor, kept_only: bool) -> torch.Tensor:
    """Cosine distance between the replayed and the observed update, over the sent
    entries only when ``kept_only`` (then without replaying the sender's transform)."""
    observed = update.observed_delta
    if not kept_only:
        return cosine_distance(dummy_delta(update, features, labels), observed)
    plain = dataclasses.replace(update, transform=None)
    sent = observed != 0
    return cosine_distance(dummy_delta(plain, features, labels)[sent], observed[sent])


def recover_victim_features(update: VictimUpdate, labels: torch.Tensor, starts: torch.Tensor,
                            iterations: int, lr: float, kept_only: bool = False) -> torch.Tensor:
    """``[S, B, D]`` the victim's features: exact for one SGD sample with every entry
    sent, else projected Adam from each of ``starts [R, S, B, D]`` (the lowest loss kept).
    ``lr`` is relative to the mean feature entry of the starts."""
    if update.n_samples == 1 and update.optimizer == "sgd" and not kept_only:
        try:
            exact = recover_features(update.start_head, update.end_head, update.lr, update.weight_decay,
                                     update.local_steps)
            return exact.clamp_min(0).view(1, 1, -1)
        except ValueError:  # the bias did not move: fall back to the search
            pass
    scale = float(starts.abs().mean().clamp_min(1e-6))
    best = None
    for start in starts:
        f = start.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([f], lr=lr * scale)
        for _ in range(iterations):
            optimizer.zero_grad()
            feature_loss(update, f, labels, kept_only).backward()
            optimizer.step()
            with torch.no_grad():
                f.clamp_(min=0)
        with torch.no_grad():
            loss = float(feature_loss(update, f, labels, kept_only))
        if best is None or loss < best[0]:
            best = (loss, f.detach())
    return best[1]
