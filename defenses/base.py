"""The aggregation-rule interface every defense fills in: :class:`fedsim.api.Defense`
(re-exported here with the :class:`fedsim.api.PeerContext` it receives)."""
from __future__ import annotations

from fedsim.api import Defense, PeerContext

__all__ = ["Defense", "PeerContext"]
