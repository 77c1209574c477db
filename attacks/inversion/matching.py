"""Matching losses between a dummy and an observed update, and the image prior.

- ``l2_distance``: ``||d' - d||^2`` (Zhu, Liu, Han 2019, "Deep leakage from gradients").
- ``cosine_distance``: ``1 - <d', d> / (||d'|| ||d||)`` (Geiping, Bauermeister, Droege,
  Moeller 2020, "Inverting gradients -- how easy is it to break privacy in federated
  learning?"), over the whole flattened head update (one parameter tensor here).
- ``total_variation``: Geiping et al.'s anisotropic TV, the mean absolute difference of
  horizontally plus vertically neighbouring pixels.
"""
from __future__ import annotations

import torch

from fedsim import functional as F


def l2_distance(dummy: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    return (dummy - observed).pow(2).sum()


def cosine_distance(dummy: torch.Tensor, observed: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(dummy.flatten(), observed.flatten(), eps)


def total_variation(images: torch.Tensor, image_ndim: int) -> torch.Tensor:
    """``mean |x[..., i, j+1] - x[..., i, j]| + mean |x[..., i+1, j] - x[..., i, j]|`` over
    the last two axes of images whose own shape has ``image_ndim`` axes; 0 for vectors
    (``image_ndim < 2``), which have no neighbours to compare."""
    if image_ndim < 2:
        return images.new_zeros(())
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean() if images.shape[-1] > 1 else 0.0
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean() if images.shape[-2] > 1 else 0.0
    return images.new_zeros(()) + dx + dy
