"""Positive quantities drawn once per key from a named distribution (``network.compute``,
``network.links.latency``), by inverse transform of keyed uniforms (``fedsim.rng``).

- ``constant``: ``mean``.
- ``lognormal``: ``exp(mu + sigma * Z)``, ``Z`` standard normal, ``mu = ln(mean) - sigma^2 / 2``
  so that the distribution's mean is ``mean``.
- ``pareto`` (type I, heavy-tailed stragglers): ``x_m * U^(-1 / alpha)``, ``U`` uniform on
  (0, 1], scale ``x_m = mean * (alpha - 1) / alpha`` so that the mean is ``mean`` (alpha > 1).
"""
from __future__ import annotations

import numpy as np
import torch

from fedsim import rng


def draw(dist, seed: int, keys, purpose: str) -> np.ndarray:
    """``[len(keys)]`` float64 values of distribution ``dist`` (a ``config.Distribution``),
    one per key (a peer id or a link id), each a pure function of ``(seed, key, purpose)``."""
    keys = np.asarray(keys, dtype=np.int64)
    if dist.kind == "constant" or dist.mean == 0:
        return np.full(len(keys), float(dist.mean))
    u = rng.uniform(seed, keys, 0, purpose, 1)[:, 0]
    if dist.kind == "lognormal":
        z = torch.special.ndtri(torch.as_tensor(np.clip(u, 1e-300, None), dtype=torch.float64)).numpy()
        return np.exp(np.log(dist.mean) - dist.sigma ** 2 / 2 + dist.sigma * z)
    scale = dist.mean * (dist.alpha - 1) / dist.alpha
    return scale * (1.0 - u) ** (-1.0 / dist.alpha)
