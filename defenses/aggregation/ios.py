"""IOS: iterative outlier scissor."""
from __future__ import annotations

import torch

from defenses.base import Defense
from fedsim import functional as F
from defenses.aggregation.neighbour_bound import (BOUND, WEIGHTS,
                                                  bound_needs_context, context_weights, resolve_bound, f_at_most_neighbours)
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
        distances = F.distances_to(centre, models)
        keep = torch.ones(models.shape[0], dtype=torch.bool)
        keep[int(torch.argmax(distances))] = False
        models, weights = models[keep], weights[keep]
    return weighted_mean(models, weights).to(own.dtype)


@register("defenses", "ios")
class IOS(Defense):
    """IOS: remove, ``f`` times, the neighbour farthest from the weighted average.
    Wu, Chen, Ling 2023, "Byzantine-resilient decentralized stochastic optimization with
    robust aggregation rules", IEEE Transactions on Signal Processing.

    Starting from ``U = received`` (non-finite heads dropped first), ``f`` times:
    compute the weighted average ``xbar = (w_ii x_i + sum_{j in U} w_ij x_j) /
    (w_ii + sum_{j in U} w_ij)`` and remove from ``U`` the neighbour farthest from
    it (Euclidean); the result is the weighted average over ``{i} U U``. The own head
    is always kept, as in the paper (the scissor acts on neighbours only).

    Parameters
    ----------
    f : int >= 0, "auto" or float in [0, 1), default 1
        How many neighbours to remove (see ``defenses.aggregation.neighbour_bound``): a
        count for every peer; ``"auto"``, the peer's true number of Byzantine senders
        this round (an oracle upper bound); or a fraction of the heads received
        (``floor(f k)``).
    weights : {"uniform", "metropolis_hastings"}, default "uniform"
        ``"uniform"`` gives every participant ``1 / (k + 1)``; ``"metropolis_hastings"``
        the paper's doubly stochastic mixing matrix, from ``ctx.degree`` and
        ``ctx.sender_degrees``.

    Notes
    -----
    ``f="auto"`` is what the authors' code scissors: ``graph.byzantine_sizes[node]``
    models (``ByrdLab/aggregation.py`` ``D_ios.run``). ``f`` is not reduced by the
    number of non-finite heads dropped (a conservative choice: up to ``f`` more outliers
    may remain). When ``f >= k`` every neighbour is removed and the own head is
    returned. The Metropolis-Hastings weights are built as in the authors' code
    (``D_ios.__init__``: ``w_ij = 1 / max(deg_i + 1, deg_j + 1)``, ``w_ii = 1 - sum_j
    w_ij`` over all received heads). ``weights="uniform"`` is the behaviour before
    per-peer bounds.

    References
    ----------
    .. [1] Z. Wu, T. Chen, Q. Ling, "Byzantine-resilient decentralized stochastic
       optimization with robust aggregation rules", IEEE Transactions on Signal
       Processing 71, 2023.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> IOS(f=2).aggregate(own, received)  # removes both outlier copies
    tensor([[1., 0., 0.],
            [0., 1., 0.]])
    """

    name = "ios"
    parameters = {"f": BOUND, "weights": WEIGHTS}

    def __init__(self, f=1, weights: str = "uniform"):
        self.f = f
        self.weights = weights
        self.needs_context = bound_needs_context(f) or weights == "metropolis_hastings"

    check_run = staticmethod(f_at_most_neighbours)

    def aggregate(self, own, received, ctx=None):
        k = received.shape[0]
        if self.weights == "metropolis_hastings":
            own_weight, neighbour_weights = context_weights(ctx, "ios")
        else:
            own_weight = 1.0 / (k + 1)
            neighbour_weights = torch.full((k,), own_weight, dtype=torch.float64)
        finite = F.finite_rows(received)
        f = resolve_bound(self.f, k, ctx, "ios")
        return iterative_outlier_scissor(own, received[finite], f, own_weight, neighbour_weights[finite])
