"""Inner product manipulation (Xie, Koyejo, Gupta 2020)."""
from __future__ import annotations

import torch

from attacks.base import Attack, send_to_all
from attacks.byzantine._reference import honest_updates, reference_head
from fedsim.params import Interval
from fedsim.registry import register


def ipm_head(reference: torch.Tensor, honest_updates: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``reference - epsilon * mean_i(update_i)``."""
    return reference - epsilon * honest_updates.mean(dim=0)


@register("attacks", "ipm")
class InnerProductManipulation(Attack):
    """IPM: Xie, Koyejo, Gupta (UAI 2020), "Fall of empires: breaking Byzantine-tolerant
    SGD by inner product manipulation".

    Every Byzantine peer sends the update ``-epsilon * mean(honest updates)``, so the
    inner product of the aggregate with the true direction turns negative. Updates
    are the observed honest heads minus the sender's reference head (its head at the
    start of the round); the head sent is

        ``reference - epsilon * mean_i(observed_i - reference)``.

    Default ``epsilon = 0.1``: the paper's small-epsilon case (against Krum-like rules);
    the paper uses ``epsilon = 100`` for its large case (against median / trimmed mean).
    """

    name = "ipm"
    parameters = {"epsilon": Interval(float, 0, None, closed="neither")}

    def __init__(self, epsilon: float = 0.1):
        self.epsilon = float(epsilon)

    def craft(self, view):
        return send_to_all(view, {
            s: ipm_head(reference_head(view, s), honest_updates(view, s), self.epsilon)
            for s in view.byzantine_ids})
