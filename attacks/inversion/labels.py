"""Label inference from a head update.

Zhao, Mopuri, Bilen 2020, "iDLG: improved deep leakage from gradients": for one
sample trained with softmax cross-entropy, ``dL/db_c = p_c - [c == y]`` is negative only
for the true class, so the label is the class whose bias gradient is negative. For a
batch, the classes with a negative bias gradient are present (Yin et al. 2021, "See
through gradients"), and how many samples each holds is read from the magnitude
(Wainakh, Ventola, Mussig, Keim, Cordero, Zimmer, Grube, Kersting, Muhlhauser 2022,
"User-level label leakage from gradients in federated learning", LLG): every sample of
class ``c`` pushes the bias gradient by ``-a_c/B``, every other sample by ``+b_c/B``.

Here the victim's steps are summed: with SGD ``G = -(H1 - H0)[:, D] / lr`` (minus the
weight-decay term) is ``sum_s mean_i dz_{s,i}``, so
``B G_c = -a_c n_c + b_c (N - n_c)`` and ``n_c = (b_c N - B G_c) / (a_c + b_c)`` with
``N = local_steps * batch_size``. The impacts ``a_c = -E[dz_c | y = c]`` and
``b_c = E[dz_c | y != c]`` are measured with the start head on ``probe_features`` (any
features the attacker holds, LLG's "dummy data"); without probes the logits are the start
head's biases (zero features): for a fresh head ``a = 1 - 1/C``, ``b = 1/C`` (softmax) and
``a = b = 2`` (L2-SVM). Counts are then made integers LLG's way: every class with a
negative gradient gets one sample (the iDLG rule), the rest go one at a time to the class
with the largest remaining estimate. With Adam the update is not linear in the gradient;
the counts are then shared in proportion to the negative part of ``-(H1 - H0)[:, D]``.

Limits: with the L2-SVM only a class's own samples push its bias gradient down, so a
negative gradient still proves presence, but a class held by few samples of a batch
usually has a positive one (each other sample adds ``+2(1 + z_c)``) and the counting
carries the inference. Adam's first step moves every bias by about ``-lr sign(g)``, so
L2-SVM + Adam updates carry little label signal.
"""
from __future__ import annotations

from typing import Optional

import torch

from attacks.inversion.base import VictimUpdate
from fedsim.models.heads import get_head, head_logits


def accumulated_bias_gradient(update: VictimUpdate) -> torch.Tensor:
    """``[C]`` ``sum_s mean_i dL/db`` over the victim's steps (SGD), or ``-(H1 - H0)_b``
    (Adam: only its signs and relative sizes are meaningful)."""
    delta_bias = update.observed_delta[:, -1]
    if update.optimizer != "sgd":
        return -delta_bias
    grad = -delta_bias / update.lr
    if update.weight_decay:
        # H_{s+1} = H_s - lr (g_s + wd H_s): remove wd * sum_s H_s ~ wd * S * (H0 + H1) / 2.
        mid_bias = 0.5 * (update.start_head[:, -1] + update.end_head[:, -1])
        grad = grad - update.weight_decay * update.local_steps * mid_bias
    return grad


def label_impacts(start_head: torch.Tensor, loss: str,
                  probe_features: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a [C], b [C])``: mean ``-dz_c`` of a sample of class ``c`` and mean ``dz_c`` of a
    sample of another class, at the start head, over ``probe_features [m, D]``."""
    n_classes = start_head.shape[0]
    if probe_features is None:
        logits = start_head[:, -1].unsqueeze(0)
    else:
        logits = head_logits(start_head, probe_features)
    head_fn = get_head(loss)
    m = logits.shape[0]
    every_label = torch.arange(n_classes).repeat_interleave(m)             # [C*m]: y
    dz = head_fn.logit_grad(logits.repeat(n_classes, 1), every_label)        # [C*m, C]
    dz = dz.view(n_classes, m, n_classes).mean(dim=1)                        # [y, c]
    own = torch.diagonal(dz)
    other = (dz.sum(dim=0) - own) / max(n_classes - 1, 1)
    return -own, other


def estimate_counts(update: VictimUpdate, probe_features: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``[C]`` real-valued estimate of how many of the victim's samples hold each class."""
    grad = accumulated_bias_gradient(update)
    n_total = update.n_samples
    if update.optimizer != "sgd":
        weight = (-grad).clamp_min(0)
        total = weight.sum()
        return weight / total * n_total if total > 0 else torch.full_like(grad, n_total / grad.numel())
    a, b = label_impacts(update.start_head, update.loss, probe_features)
    return (b * n_total - update.batch_size * grad) / (a + b).clamp_min(1e-12)


def round_counts(estimate: torch.Tensor, present: torch.Tensor, n_total: int) -> torch.Tensor:
    """Integer counts summing to ``n_total``: one for each ``present`` class (the most
    certain ones first if there are more than ``n_total``), then one at a time to the
    class whose estimate exceeds its count the most."""
    counts = torch.zeros(estimate.numel(), dtype=torch.long)
    present_ids = torch.nonzero(present).flatten()
    if present_ids.numel() > n_total:
        order = torch.argsort(estimate[present_ids], descending=True, stable=True)
        present_ids = present_ids[order[:n_total]]
    counts[present_ids] = 1
    residual = estimate.double() - counts.double()
    for _ in range(n_total - int(counts.sum())):
        c = int(torch.argmax(residual))
        counts[c] += 1
        residual[c] -= 1.0
    return counts


def infer_labels(update: VictimUpdate, probe_features: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``[local_steps * batch_size]`` inferred labels, sorted by class."""
    estimate = estimate_counts(update, probe_features)
    present = accumulated_bias_gradient(update) < 0
    counts = round_counts(estimate, present, update.n_samples)
    return torch.repeat_interleave(torch.arange(counts.numel()), counts)


def labels_per_step(labels: torch.Tensor, local_steps: int, batch_size: int) -> torch.Tensor:
    """``[S*B] -> [S, B]``, dealing sorted labels round-robin so every step gets a mix (which
    step saw which sample is not recoverable from the summed update)."""
    return labels.view(batch_size, local_steps).transpose(0, 1).contiguous()
