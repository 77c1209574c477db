"""Gaussian noise attack."""
from __future__ import annotations

import torch

from attacks.base import Attack, send_to_all
from fedsim.params import Interval, Options
from fedsim.registry import register


@register("attacks", "gaussian")
class GaussianNoise(Attack):
    """Gaussian noise: each Byzantine peer sends random noise instead of its head.
    The classic "random model / Gaussian" Byzantine baseline (e.g. Blanchard et al. 2017,
    NeurIPS; Bristle, Verbraeken et al. 2021, section 6).

    Every entry of the sent head is ``N(mean, std^2)`` (``center="zero"``), or the mean
    of the observed honest heads plus ``N(mean, std^2)`` noise (``center="honest_mean"``).

    Parameters
    ----------
    mean : float, default 0.0
        Mean of the noise.
    std : float >= 0, default 1.0
        Standard deviation of the noise.
    center : {"zero", "honest_mean"}, default "zero"
        What the noise is added to.

    Notes
    -----
    Each sender draws its own noise and sends the same noise to all its receivers.
    ``"honest_mean"`` falls back to the sender's own head when it observed nothing.

    References
    ----------
    .. [1] P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine learning with
       adversaries: Byzantine tolerant gradient descent", NeurIPS 2017.
    .. [2] J. Verbraeken, M. de Vos, J. Pouwelse, "Bristle: decentralized federated
       learning in Byzantine, non-i.i.d. environments", arXiv:2110.11006, 2021: its Gaussian-noise attack.

    Examples
    --------
    >>> from fedsim.examples import example_view, rounded
    >>> view = example_view()  # peers 5 and 6 attack peer 0; they observe the 5 honest heads
    >>> rounded(GaussianNoise(std=0.1, center="honest_mean").craft(view)[(5, 0)])
    tensor([[ 1.1500, -0.0300, -0.2200],
            [ 0.0600,  0.8900, -0.1400]])
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
