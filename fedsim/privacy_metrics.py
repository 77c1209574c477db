"""How close a reconstruction is to the private original: PSNR, SSIM, feature cosine,
and the score of one victim's reconstruction.

Which reconstructed image belongs to which private sample is unknown (the order within
a step, and which step saw which sample, are lost in the update), so
:func:`score_reconstruction` pairs each reconstructed image with a true one by the
Hungarian method (Kuhn 1955; ``scipy.optimize.linear_sum_assignment``) minimising the
total per-pixel MSE, the pairing used by Geiping et al. 2020 and Yin et al. 2021 to score
batch reconstructions. On the pairs it reports PSNR and SSIM (images in [0, 1]), label
accuracy (reconstructed label == paired true label), feature cosine similarity, and the
order-free label accuracy (the share of the true label multiset that the inferred
labels cover, which is what label inference alone can achieve).

Pure functions over tensors. Images are ``[H, W]`` (one grey image) or ``[..., C, H, W]``
(any leading batch dimensions; the metrics here are used with ``C = 1``); pixel values
are expected in ``[0, data_range]`` (``[0, 1]`` by default). Each function returns one
value per image: a tensor of the leading batch shape (0-dimensional for one image), in
float64, so ``float(psnr(a, b))`` works on one image and ``psnr(a, b).mean()`` on a batch.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from fedsim.api import Reconstruction

__all__ = ["psnr", "ssim", "gaussian_window", "feature_cosine", "match_images", "label_multiset_accuracy",
           "score_reconstruction"]


def _check_pair(a: torch.Tensor, b: torch.Tensor, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ValueError(f"images must be tensors; got {type(a).__name__} and {type(b).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() < 2:
        raise ValueError(f"an image is [H, W] or [..., C, H, W]; got shape {tuple(a.shape)}")
    if isinstance(data_range, bool) or not (isinstance(data_range, (int, float)) and math.isfinite(data_range)
                                            and data_range > 0):
        raise ValueError(f"data_range must be a positive finite number; got {data_range!r}")
    return a.detach().double(), b.detach().double()


def _batch_shape(image: torch.Tensor) -> torch.Size:
    """Leading dimensions before the ``[C, H, W]`` of one image (none for ``[H, W]``)."""
    return image.shape[:-3] if image.dim() >= 3 else torch.Size([])


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image.

    ``PSNR = 10 log10(data_range^2 / MSE)``, ``MSE`` the mean squared difference over
    the image's ``C x H x W`` pixels. Identical images (``MSE = 0``) give ``+inf``.
    """
    a, b = _check_pair(a, b, data_range)
    dims = tuple(range(-min(a.dim(), 3), 0))   # [H, W] -> (-2, -1); [..., C, H, W] -> (-3, -2, -1)
    mse = (a - b).pow(2).mean(dim=dims)
    return 10.0 * torch.log10(float(data_range) ** 2 / mse)   # x / 0 = inf, log10(inf) = inf


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """``[size]`` float64 weights ``exp(-(i - (size-1)/2)^2 / (2 sigma^2))`` summing to 1.

    For odd ``size`` the centre is a pixel (size 11, sigma 1.5: scipy's ``gaussian_filter``
    kernel with ``truncate = 3.5``); for even ``size`` it lies between the two middle pixels.
    """
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    weights = torch.exp(-offsets.pow(2) / (2.0 * sigma * sigma))
    return weights / weights.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean structural similarity, per image (Wang, Bovik, Sheikh, Simoncelli 2004, "Image
    quality assessment: from error visibility to structural similarity", IEEE TIP 13(4)).

    In every window position, with Gaussian-weighted local statistics (``w`` an
    ``window x window`` Gaussian of standard deviation ``sigma``, summing to 1)::

        mu_x = sum w x,  sigma_x^2 = sum w x^2 - mu_x^2,  sigma_xy = sum w x y - mu_x mu_y
        SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))
        C1 = (k1 L)^2,  C2 = (k2 L)^2,  L = data_range

    and the result is the mean of that map over all window positions (then over channels).
    Defaults are the paper's: an 11x11 Gaussian window, sigma 1.5, k1 0.01, k2 0.03.

    Choices, stated:

    * Windows are placed only where they fit inside the image (valid-mode convolution),
      which is what scikit-image's ``structural_similarity(gaussian_weights=True,
      use_sample_covariance=False, data_range=...)`` computes (it filters with reflected
      borders, then crops the ``(window-1)/2`` border rows and columns); the variances are
      the weighted population moments (no ``N/(N-1)`` factor), as in the paper.
    * An image smaller than the window along an axis (8x8 digits) uses a window shrunk to
      that axis's size, with the same ``sigma``; the window is then even-sized when the image
      is (8 taps, centred between pixels 3 and 4) and there is exactly one window position
      along that axis. scikit-image refuses such images instead.
    * Channels (``C`` in ``[..., C, H, W]``) are scored separately and averaged, as
      scikit-image does with ``channel_axis``.
    """
    a, b = _check_pair(a, b, data_range)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer; got {window!r}")
    for key, value in (("sigma", sigma), ("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ValueError(f"{key} must be a finite number; got {value!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive; got {sigma!r}")
    if k1 < 0 or k2 < 0:
        raise ValueError(f"k1 and k2 must be >= 0; got {k1!r}, {k2!r}")

    batch_shape = _batch_shape(a)
    height, width = a.shape[-2], a.shape[-1]
    channels = a.shape[-3] if a.dim() >= 3 else 1
    x = a.reshape(-1, 1, height, width)
    y = b.reshape(-1, 1, height, width)

    # Separable Gaussian: filter the rows, then the columns, each in valid mode.
    rows = gaussian_window(min(window, height), sigma).view(1, 1, -1, 1)
    cols = gaussian_window(min(window, width), sigma).view(1, 1, 1, -1)

    def local_mean(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(image, rows), cols)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x * mu_x
    var_y = local_mean(y * y) - mu_y * mu_y
    cov_xy = local_mean(x * y) - mu_x * mu_y
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    per_channel = ssim_map.mean(dim=(1, 2, 3))
    return per_channel.reshape(*batch_shape, channels).mean(dim=-1)


def feature_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean over rows of the cosine similarity of ``a[i]`` and ``b[i]``.

    ``a``, ``b``: ``[N, D]`` (or ``[D]``, one row). ``cos = a.b / max(|a| |b|, eps)``
    (``torch.nn.functional.cosine_similarity``), so a zero row scores 0. Returns a
    0-dimensional float64 tensor.
    """
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ValueError(f"features must be tensors; got {type(a).__name__} and {type(b).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"features must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() not in (1, 2) or a.numel() == 0:
        raise ValueError(f"features must be a non-empty [N, D] or [D] tensor; got shape {tuple(a.shape)}")
    rows_a = a.detach().double().reshape(-1, a.shape[-1])
    rows_b = b.detach().double().reshape(-1, b.shape[-1])
    return F.cosine_similarity(rows_a, rows_b, dim=1, eps=eps).mean()


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
