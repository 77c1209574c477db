"""The aggregation-rule interface every defense fills in (after Flower's Strategy)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from fedsim.engine.messages import PeerContext


class Defense:
    """Merge a peer's own head with the heads it received.

    Subclasses implement :meth:`aggregate` (the per-peer reference form). They may
    override :meth:`aggregate_group` with a batched form over many peers; the
    batched form must agree with the per-peer one (tests check this).
    ``needs_context`` says whether :meth:`aggregate` reads ``ctx``; rules with
    ``needs_context = False`` accept ``ctx=None``.
    """

    name = "defense"
    needs_context = False

    def aggregate(self, own: torch.Tensor, received: torch.Tensor,
                  ctx: Optional[PeerContext] = None) -> torch.Tensor:
        """``own [C, D+1]``, ``received [k, C, D+1]`` -> merged ``[C, D+1]``."""
        raise NotImplementedError

    def aggregate_group(self, own: torch.Tensor, received: torch.Tensor, mask: torch.Tensor,
                        ctxs: Optional[Sequence[Optional[PeerContext]]] = None) -> torch.Tensor:
        """Batched form: ``own [n, C, P]``, ``received [n, k, C, P]`` padded, ``mask [n, k]``
        (True where a row holds a real message) -> ``[n, C, P]``.

        The default runs :meth:`aggregate` peer by peer.
        """
        out = torch.empty_like(own)
        for i in range(own.shape[0]):
            ctx = ctxs[i] if ctxs is not None else None
            out[i] = self.aggregate(own[i], received[i][mask[i]], ctx)
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def finite_rows(received: torch.Tensor) -> torch.Tensor:
    """Boolean ``[k]``: which received heads hold only finite values."""
    return torch.isfinite(received.flatten(1)).all(dim=1)
