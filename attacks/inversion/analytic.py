"""Analytic recovery of backbone features from a head update.

For a linear layer ``z = W x + b`` the gradient of any loss is ``dW = dz x^T``,
``db = dz``, so one sample's input is ``x = dW_c / db_c`` for every class with
``db_c != 0`` (Phong, Aono, Hayashi, Wang, Moriai 2018, "Privacy-preserving deep learning
via additively homomorphic encryption", sec. 3; used as the label-free first step of
Geiping et al. 2020 and Fowl et al. 2022). With SGD, several local steps on the same
sample add rank-one terms ``dz^(s) x^T`` with the same ``x``, so the total update
``Delta = H1 - H0 = -lr sum_s dz^(s) [x, 1]`` is still rank one and ``x = Delta_W,c /
Delta_b,c``. Rather than picking one row we solve the least squares over all rows,
``x = sum_c Delta_b,c Delta_W,c / sum_c Delta_b,c^2`` (the rows with the largest
``|Delta_b,c|`` weigh most; it equals ``Delta_W,c / Delta_b,c`` for every ``c`` when the
update is exactly rank one).

With weight decay ``wd`` the steps are ``H_{s+1} = (1 - lr wd) H_s - lr g_s``, so
``H1 - (1 - lr wd)^S H0`` is the rank-one sum instead (pass ``lr``, ``weight_decay``,
``local_steps``). Adam divides element-wise by the second moment, which destroys the
rank-one structure: this recovery is for SGD.

Used by the feature-space attacks (``feature_matching``, ``decoder``, ``retrieval``,
through :func:`attacks.inversion.victim_features.recover_victim_features`) whenever the
victim trained on one sample with SGD.
"""
from __future__ import annotations

import torch


def _rank_one_update(start_head: torch.Tensor, end_head: torch.Tensor, lr: float,
                     weight_decay: float, local_steps: int) -> torch.Tensor:
    if weight_decay < 0 or lr <= 0 or local_steps < 1:
        raise ValueError(f"need lr > 0, weight_decay >= 0, local_steps >= 1; got lr={lr}, "
                         f"weight_decay={weight_decay}, local_steps={local_steps}")
    if start_head.shape != end_head.shape or start_head.dim() != 2:
        raise ValueError(f"start_head and end_head must both be [C, D+1]; got {tuple(start_head.shape)} "
                         f"and {tuple(end_head.shape)}")
    decay = (1.0 - lr * weight_decay) ** local_steps
    return end_head.double() - decay * start_head.double()


def recover_features(start_head: torch.Tensor, end_head: torch.Tensor, lr: float = 1.0,
                     weight_decay: float = 0.0, local_steps: int = 1) -> torch.Tensor:
    """``[D]`` the one sample's features, ``sum_c db_c dW_c / sum_c db_c^2``.

    Raises ``ValueError`` when the bias did not move (nothing to divide by).
    """
    delta = _rank_one_update(start_head, end_head, lr, weight_decay, local_steps)
    d_weights, d_bias = delta[:, :-1], delta[:, -1]
    denominator = d_bias.pow(2).sum()
    if denominator <= 0:
        raise ValueError("the bias did not change: the features cannot be recovered analytically")
    return (d_bias @ d_weights / denominator).to(start_head.dtype)
