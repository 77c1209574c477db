"""Plain averaging (decentralized FedAvg / gossip averaging)."""
from __future__ import annotations


import torch

from defenses.base import Defense
from defenses.aggregation.neighbour_bound import WEIGHTS, context_weights
from fedsim.registry import register


@register("defenses", "mean")
class Mean(Defense):
    """Mean: average the own head with every received head (gossip averaging).
    The decentralized FedAvg baseline (McMahan et al. 2017; gossip form of Lian et al. 2017).

    ``merged = (own + sum_j received_j) / (1 + k)``. No robustness: one non-finite
    or huge update spoils the result (the baseline every defense is compared with).

    Parameters
    ----------
    weights : {"uniform", "metropolis_hastings"}, default "uniform"
        ``"uniform"``: every participant weighs ``1 / (k + 1)``.
        ``"metropolis_hastings"``: gossip averaging with the Metropolis-Hastings
        mixing matrix of the decentralized papers, ``merged = w_ii own + sum_j w_ij x_j``
        with ``w_ij = 1 / (1 + max(deg_i, deg_j))`` and ``w_ii = 1 - sum_j w_ij`` (from
        ``ctx.degree`` and ``ctx.sender_degrees``).

    Notes
    -----
    The Metropolis-Hastings weights are IOS's "WeiMean" (``ByrdLab/aggregation.py``
    ``D_meanW``) and ClippedGossip's ``gossip_avg`` (``codes/aggregator.py``
    ``DecentralizedAggregator``).

    References
    ----------
    .. [1] H. B. McMahan, E. Moore, D. Ramage, S. Hampson, B. Aguera y Arcas,
       "Communication-efficient learning of deep networks from decentralized data",
       AISTATS 2017.
    .. [2] X. Lian, C. Zhang, H. Zhang, C.-J. Hsieh, W. Zhang, J. Liu, "Can decentralized
       algorithms outperform centralized algorithms?", NeurIPS 2017.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> rounded(Mean().aggregate(own, received))  # the outlier drags every entry
    tensor([[-0.7100,  1.4300,  1.4300],
            [ 1.4300, -0.7100,  1.4300]])
    """

    name = "mean"
    parameters = {"weights": WEIGHTS}

    def __init__(self, weights: str = "uniform"):
        self.weights = weights
        self.needs_context = weights == "metropolis_hastings"

    def aggregate(self, own, received, ctx=None):
        if self.weights == "metropolis_hastings":
            own_weight, weights = context_weights(ctx, "mean")
            merged = own_weight * own.double() + torch.tensordot(weights, received.double(), dims=1)
            return merged.to(own.dtype)
        return (own + received.sum(dim=0)) / (1 + received.shape[0])

    def aggregate_group(self, own, received, mask, ctxs=None):
        if self.needs_context:
            return super().aggregate_group(own, received, mask, ctxs)
        if bool(mask.all()):  # every slot holds a message: no padding to mask out
            return (own + received.sum(dim=1)) / (1.0 + received.shape[1])
        keep = mask[:, :, None, None]
        # where(), not a product with the mask: padding may hold anything, NaN included.
        total = own + torch.where(keep, received, torch.zeros((), dtype=received.dtype)).sum(dim=1)
        return total / (1.0 + keep.to(received.dtype).sum(dim=1))
