"""Gaussian noise attack."""
from __future__ import annotations

import torch

from attacks.base import Attack, send_to_all
from fedsim.params import Interval, Options
from fedsim.registry import register


@register("attacks", "gaussian")
class GaussianNoise(Attack):
    """Each Byzantine peer sends Gaussian noise instead of its head.

    The classic "random model / Gaussian" Byzantine baseline (e.g. Blanchard et al.
    2017; Bristle, Verbraeken et al. 2021, section 6). ``center``:

    - ``"zero"`` (default): every entry ~ N(mean, std^2);
    - ``"honest_mean"``: mean of the observed honest heads plus N(mean, std^2) noise
      (falls back to the sender's own head when it observed nothing).

    Defaults: ``mean=0.0``, ``std=1.0``. Each sender draws its own noise and sends
    the same noise to all its receivers.
    """

    name = "gaussian"
    parameters = {"mean": Interval(float), "std": Interval(float, 0, None), "center": Options("zero", "honest_mean")}

    def __init__(self, mean: float = 0.0, std: float = 1.0, center: str = "zero"):
        self.mean, self.std, self.center = float(mean), float(std), center

    def craft(self, view):
        shape = view.own_heads.shape[1:]
        if self.center == "honest_mean" and view.observed.shape[0] > 0:
            base = view.observed.mean(dim=0)
        else:
            base = None
        per_sender = {}
        for i, s in enumerate(view.byzantine_ids):
            noise = torch.randn(shape, generator=view.rng) * self.std + self.mean
            if self.center == "zero":
                per_sender[s] = noise
            else:
                per_sender[s] = (base if base is not None else view.own_heads[i]) + noise
        return send_to_all(view, per_sender)
