"""Mimic (Karimireddy, He, Jaggi 2022)."""
from __future__ import annotations

from typing import Optional

import torch

from attacks.base import Attack, send_to_all, send_trained
from fedsim.registry import register

TARGETS = ("fixed", "variance")


def principal_direction(heads: torch.Tensor) -> torch.Tensor:
    """Unit top principal direction ``z [P]`` of ``heads [h, P]`` around their mean
    (zero vector when all heads are equal)."""
    centred = (heads - heads.mean(dim=0)).double()
    if centred.abs().max() == 0:
        return torch.zeros(heads.shape[1], dtype=heads.dtype)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return vh[0].to(heads.dtype)


def mimic_index_by_variance(heads: torch.Tensor) -> int:
    """The row of ``heads [h, P]`` farthest from the mean along the top principal
    direction: ``argmax_i |<x_i - mean, z>|`` (ties to the lowest index)."""
    z = principal_direction(heads)
    scores = ((heads - heads.mean(dim=0)) @ z).abs()
    return int(torch.argmax(scores))


@register("attacks", "mimic")
class Mimic(Attack):
    """Mimic: Karimireddy, He, Jaggi (ICLR 2022), "Byzantine-robust learning on
    heterogeneous datasets via bucketing".

    All Byzantine peers send a copy of one honest peer's head, over-weighting that
    peer's (non-i.i.d.) data and under-weighting everyone else's, which robust rules
    cannot tell from honest heterogeneity. ``target``:

    - ``"fixed"`` (default; the paper's simple variant, which copies one fixed honest
      worker): the observed head of peer ``peer`` if given and observed, else the
      observed peer with the lowest id.
    - ``"variance"``: the paper's variant picks the worker that lies farthest along the
      top principal direction ``z`` of the honest updates (which it estimates over a
      warm-up phase and then keeps). Here ``z`` is recomputed from each round's
      observed heads (no state across rounds) and the target is
      ``argmax_i |<x_i - mean, z>|``.

    Falls back to the sender's own head when it observed nothing.
    """

    name = "mimic"

    def __init__(self, target: str = "fixed", peer: Optional[int] = None):
        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
        if peer is not None and (not isinstance(peer, int) or peer < 0):
            raise ValueError(f"peer must be a peer id >= 0, not {peer!r}")
        self.target, self.peer = target, peer

    def chosen_row(self, view) -> int:
        """Row of ``view.observed`` that every Byzantine peer copies."""
        if self.target == "variance":
            return mimic_index_by_variance(view.observed.flatten(1))
        ids = [int(i) for i in view.observed_ids]
        if self.peer is not None and self.peer in ids:
            return ids.index(self.peer)
        return ids.index(min(ids))

    def craft(self, view):
        if view.observed is None or view.observed.shape[0] == 0:
            return send_trained(view)
        head = view.observed[self.chosen_row(view)]
        return send_to_all(view, {s: head.clone() for s in view.byzantine_ids})
