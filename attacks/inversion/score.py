"""How well a reconstruction recovered one victim's samples.

Which reconstructed image belongs to which private sample is unknown (the order within
a step, and which step saw which sample, are lost in the update), so each reconstructed
image is paired with a true one by the Hungarian method (Kuhn 1955;
``scipy.optimize.linear_sum_assignment``) minimising the total per-pixel MSE, the pairing
used by Geiping et al. 2020 and Yin et al. 2021 to score batch reconstructions. On the
pairs we report PSNR and SSIM (``fedsim.privacy_metrics``, images in [0, 1]), label
accuracy (reconstructed label == paired true label), feature cosine similarity, and the
order-free label accuracy (the share of the true label multiset that the inferred
labels cover, which is what label inference alone can achieve).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from attacks.inversion.base import Reconstruction


def match_images(reconstructed: torch.Tensor, true: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(rec_index, true_index)``: the pairing of ``reconstructed [N, ...]`` with
    ``true [M, ...]`` minimising the summed MSE (``min(N, M)`` pairs)."""
    a = reconstructed.reshape(reconstructed.shape[0], -1).double()
    b = true.reshape(true.shape[0], -1).double()
    cost = torch.cdist(a, b).pow(2) / a.shape[1]
    return linear_sum_assignment(cost.numpy())


def label_multiset_accuracy(predicted: torch.Tensor, true: torch.Tensor) -> float:
    """``sum_c min(#pred_c, #true_c) / N``: labels recovered regardless of order."""
    n_classes = int(max(predicted.max(), true.max())) + 1
    counts_pred = torch.bincount(predicted.flatten().long(), minlength=n_classes)
    counts_true = torch.bincount(true.flatten().long(), minlength=n_classes)
    return float(torch.minimum(counts_pred, counts_true).sum()) / true.numel()


def _as_chw(image_shape: tuple):
    """Reshape a stack of images to ``[N, C, H, W]`` (``[H, W]`` gets a channel, a vector
    of features becomes a 1-pixel-high image) for the per-image metrics."""
    if len(image_shape) == 3:
        return lambda x: x
    if len(image_shape) == 2:
        return lambda x: x.unsqueeze(1)
    return lambda x: x.reshape(x.shape[0], 1, 1, -1)


def score_reconstruction(reconstruction: Reconstruction, true_images: torch.Tensor, true_labels: torch.Tensor,
                         true_features: torch.Tensor) -> dict:
    """Scores of one victim: ``true_images [S, B, *image_shape]`` (or ``[S*B, ...]``) in
    the order the victim trained on them, ``true_labels``, ``true_features`` likewise.

    Returns ``psnr_mean``, ``ssim_mean``, ``label_accuracy``, ``label_multiset_accuracy``,
    ``feature_cosine_mean``, ``n_samples`` and the per-pair lists ``psnr``, ``ssim``,
    ``pairs`` (``[reconstructed index, true index]`` in flattened order).
    """
    from fedsim.privacy_metrics import psnr, ssim

    image_shape = tuple(reconstruction.images.shape[2:])
    rec_images = reconstruction.images.reshape(-1, *image_shape).detach().float()
    rec_labels = reconstruction.labels.reshape(-1)
    rec_features = reconstruction.features.reshape(rec_images.shape[0], -1).detach().float()
    true_images = true_images.reshape(-1, *image_shape).float()
    true_labels = true_labels.reshape(-1)
    true_features = true_features.reshape(true_images.shape[0], -1).float()
    if rec_features.shape[1] != true_features.shape[1]:
        raise ValueError(f"feature sizes differ: {rec_features.shape[1]} vs {true_features.shape[1]}")

    rec_idx, true_idx = match_images(rec_images, true_images)
    rec_t, true_t = torch.as_tensor(rec_idx), torch.as_tensor(true_idx)
    as_chw = _as_chw(image_shape)
    psnrs = psnr(as_chw(rec_images[rec_t]), as_chw(true_images[true_t]), data_range=1.0).tolist()
    ssims = ssim(as_chw(rec_images[rec_t]), as_chw(true_images[true_t])).tolist()
    label_accuracy = float((rec_labels[rec_t] == true_labels[true_t]).double().mean())
    cosine = torch.nn.functional.cosine_similarity(rec_features[rec_t], true_features[true_t], dim=1)
    return {
        "n_samples": int(true_images.shape[0]),
        "psnr_mean": float(np.mean(psnrs)),
        "ssim_mean": float(np.mean(ssims)),
        "label_accuracy": label_accuracy,
        "label_multiset_accuracy": label_multiset_accuracy(rec_labels, true_labels),
        "feature_cosine_mean": float(cosine.mean()),
        "psnr": psnrs,
        "ssim": ssims,
        "pairs": [[int(i), int(j)] for i, j in zip(rec_idx, true_idx)],
    }
