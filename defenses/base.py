"""The aggregation-rule interface every defense fills in: :class:`fedsim.api.Defense`
(re-exported here with the :class:`fedsim.api.PeerContext` it receives)."""
from __future__ import annotations

import torch

from fedsim.api import Defense, PeerContext

__all__ = ["Defense", "PeerContext", "finite_rows"]


def finite_rows(received: torch.Tensor) -> torch.Tensor:
    """Boolean ``[k]``: which received heads hold only finite values."""
    return torch.isfinite(received.flatten(1)).all(dim=1)
