"""Inner product manipulation (Xie, Koyejo, Gupta 2020)."""
from __future__ import annotations

import torch

from attacks.base import Attack, send_to_all
from attacks.byzantine._reference import honest_heads, honest_updates, reference_head
from attacks.byzantine.sign_flip import LEVELS
from fedsim.params import Interval, Options
from fedsim.registry import register


def ipm_head(reference: torch.Tensor, honest_updates: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``reference - epsilon * mean_i(update_i)``."""
    return reference - epsilon * honest_updates.mean(dim=0)


@register("attacks", "ipm")
class InnerProductManipulation(Attack):
    """IPM: send ``-epsilon`` times the honest mean, so the aggregate turns against it.
    Xie, Koyejo, Gupta 2020, "Fall of empires: breaking Byzantine-tolerant SGD by inner
    product manipulation", UAI.

    Every Byzantine peer sends ``-epsilon * mean(honest vectors)``, so the inner product
    of the aggregate with the honest direction turns negative:
    ``-epsilon * mean_i(observed_i)`` (``level="model"``), or
    ``reference - epsilon * mean_i(observed_i - reference)`` (``level="update"``).

    Parameters
    ----------
    epsilon : float > 0, default 0.1
        The paper's small-epsilon case, and ClippedGossip's value; the paper uses
        ``epsilon = 100`` against median / trimmed mean.
    level : {"model", "update"}, default "model"
        ``"model"``: the vectors are the observed honest models; ``"update"`` (the
        behaviour before): the observed heads minus the sender's reference head (its
        head at the start of the round).

    Notes
    -----
    ``level="model"`` is what the decentralized experiments of ClippedGossip do
    (epfml/byzantine-robust-decentralized-optimizer ``codes/attacks.py``,
    ``IPMAttack.pre_aggr``: ``-epsilon * sum(models) / len(models)`` over the target and
    its good neighbours; here over the honest heads the attacker observed, since it may
    not know the target's neighbours).

    References
    ----------
    .. [1] C. Xie, O. Koyejo, I. Gupta, "Fall of empires: breaking Byzantine-tolerant SGD
       by inner product manipulation", UAI 2020.

    Examples
    --------
    >>> from fedsim.examples import example_view, rounded
    >>> view = example_view()  # peers 5 and 6 attack peer 0; they observe the 5 honest heads
    >>> rounded(InnerProductManipulation(epsilon=2.0).craft(view)[(5, 0)])  # honest mean = peer 0's head
    tensor([[-2.,  0.,  0.],
            [ 0., -2.,  0.]])
    """

    name = "ipm"
    parameters = {"epsilon": Interval(float, 0, None, closed="neither"), "level": Options(*LEVELS)}

    def __init__(self, epsilon: float = 0.1, level: str = "model"):
        self.epsilon = float(epsilon)
        self.level = level

    def craft(self, view):
        if self.level == "model":
            return send_to_all(view, {
                s: ipm_head(torch.zeros_like(view.own_head(s)), honest_heads(view, s), self.epsilon)
                for s in view.byzantine_ids})
        return send_to_all(view, {
            s: ipm_head(reference_head(view, s), honest_updates(view, s), self.epsilon)
            for s in view.byzantine_ids})
