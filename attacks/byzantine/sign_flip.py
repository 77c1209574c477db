"""Sign flipping: send the negated (and scaled) honest update."""
from __future__ import annotations

import torch

from attacks.base import Attack, send_to_all
from attacks.byzantine._reference import reference_head
from fedsim.params import Interval
from fedsim.registry import register


def sign_flip_head(head: torch.Tensor, reference: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``reference - scale * (head - reference)``: the update ``head - reference`` negated."""
    return reference - scale * (head - reference)


@register("attacks", "sign_flip")
class SignFlip(Attack):
    """Each Byzantine peer sends its own honest update with the sign flipped.

    The classic "sign flipping" / reversed-gradient Byzantine baseline (e.g. Damaskinos
    et al. 2018, "Asynchronous Byzantine machine learning"; Li et al. 2019, "RSA:
    Byzantine-robust stochastic aggregation methods"): the worker sends ``-scale * g``
    instead of its gradient ``g``. On models: with ``u = own_head - reference``
    (reference = the sender's head at the start of the round, see
    ``attacks.byzantine._reference``) it sends

        ``reference - scale * u``.

    Default ``scale = 1``. The same head goes to every receiver of a sender.
    """

    name = "sign_flip"
    parameters = {"scale": Interval(float, 0, None, closed="neither")}

    def __init__(self, scale: float = 1.0):
        self.scale = float(scale)

    def craft(self, view):
        return send_to_all(view, {
            s: sign_flip_head(view.own_head(s), reference_head(view, s), self.scale)
            for s in view.byzantine_ids})
