"""Plain averaging (decentralized FedAvg / gossip averaging)."""
from __future__ import annotations


import torch

from defenses.base import Defense
from fedsim.registry import register


@register("defenses", "mean")
class Mean(Defense):
    """Unweighted mean of the peer's own head and every received head.

    ``merged = (own + sum_j received_j) / (1 + k)``. No robustness: one non-finite
    or huge update spoils the result (the baseline every defense is compared with).
    """

    name = "mean"

    def aggregate(self, own, received, ctx=None):
        return (own + received.sum(dim=0)) / (1 + received.shape[0])

    def aggregate_group(self, own, received, mask, ctxs=None):
        keep = mask[:, :, None, None]
        # where(), not a product with the mask: padding may hold anything, NaN included.
        total = own + torch.where(keep, received, torch.zeros((), dtype=received.dtype)).sum(dim=1)
        return total / (1.0 + keep.to(received.dtype).sum(dim=1))
