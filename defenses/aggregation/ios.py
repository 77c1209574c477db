"""IOS: iterative outlier scissor."""
from __future__ import annotations

import torch

from defenses.base import Defense
from defenses.aggregation.loss_filters import drop_nonfinite
from fedsim.registry import register


def iterative_outlier_scissor(own: torch.Tensor, received: torch.Tensor, f: int,
                              own_weight: float, neighbour_weights: torch.Tensor) -> torch.Tensor:
    """IOS on ``own [C, P]`` and ``received [k, C, P]`` with weights ``w_ii`` and ``w_ij``.

    Repeat ``min(f, k)`` times: ``xbar = (w_ii x_i + sum_{j in U} w_ij x_j) /
    (w_ii + sum_{j in U} w_ij)``, remove ``argmax_{j in U} ||x_j - xbar||`` from ``U``
    (the own head is never removed). Return the same weighted average over what is
    left. Computed in float64 (huge finite heads do not overflow), returned in
    ``own.dtype``.
    """
    models = received.double()
    weights = neighbour_weights.double()
    own64 = own.double()

    def weighted_mean(models, weights):
        total = own_weight * own64 + torch.tensordot(weights, models, dims=1)
        return total / (own_weight + weights.sum())

    for _ in range(min(f, models.shape[0])):
        centre = weighted_mean(models, weights)
        distances = (models - centre).flatten(1).norm(dim=1)
        keep = torch.ones(models.shape[0], dtype=torch.bool)
        keep[int(torch.argmax(distances))] = False
        models, weights = models[keep], weights[keep]
    return weighted_mean(models, weights).to(own.dtype)


@register("defenses", "ios")
class IOS(Defense):
    """Iterative outlier scissor (Wu, Chen, Ling 2023, "Byzantine-resilient
    decentralized stochastic optimization with robust aggregation rules", IEEE
    Transactions on Signal Processing).

    Starting from ``U = received`` (non-finite heads dropped first), ``f`` times:
    compute the weighted average ``xbar = (w_ii x_i + sum_{j in U} w_ij x_j) /
    (w_ii + sum_{j in U} w_ij)`` and remove from ``U`` the neighbour farthest from
    it (Euclidean); the result is the weighted average over ``{i} U U``. The own head
    is always kept, as in the paper (the scissor acts on neighbours only).

    Weights: the paper uses a doubly stochastic mixing matrix of the graph (its
    code uses Metropolis-Hastings-like weights); a peer here does not know its
    neighbours' degrees, so every participant gets the same weight
    ``1 / (k + 1)`` (the normalisation cancels it). ``f`` is not reduced by the
    number of non-finite heads dropped (a conservative choice: up to ``f`` more
    outliers may remain). When ``f >= k`` every neighbour is removed and the own
    head is returned.

    Defaults: ``f = 1`` (the number of Byzantine neighbours to tolerate).
    """

    name = "ios"
    needs_context = False

    def __init__(self, f: int = 1):
        if isinstance(f, bool) or not isinstance(f, int) or f < 0:
            raise ValueError(f"f must be a non-negative integer, got {f!r}")
        self.f = f

    def aggregate(self, own, received, ctx=None):
        received = drop_nonfinite(received)
        k = received.shape[0]
        weight = 1.0 / (k + 1)
        return iterative_outlier_scissor(own, received, self.f, weight,
                                         torch.full((k,), weight, dtype=torch.float64))
