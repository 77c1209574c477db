"""What update-based attacks measure updates against, shared by the Byzantine attacks.

Peers exchange *models* (heads), not gradients. Attacks that are defined on updates
(sign flipping, IPM, Fang, Min-Max/Min-Sum, model replacement) therefore take an
update relative to a *reference* head and send ``reference + malicious update``.

The reference of a Byzantine sender is its own head at the start of the round
(``view.previous_heads``): the model every neighbour's local training also started
from in a synchronised round, i.e. the decentralized stand-in for the "current global
model" of the server-based papers. Where the engine gives no previous heads, the mean
of the observed honest heads is used, and without those the sender's own head (so the
update is zero).
"""
from __future__ import annotations

import torch

from fedsim.api import AttackerView


def honest_heads(view: AttackerView, sender: int) -> torch.Tensor:
    """``[h, C, D+1]`` the honest heads the attack may use; the sender's own head
    ``[1, C, D+1]`` when it observed none."""
    if view.observed is not None and view.observed.shape[0] > 0:
        return view.observed
    return view.own_head(sender).unsqueeze(0)


def reference_head(view: AttackerView, sender: int) -> torch.Tensor:
    """``[C, D+1]`` the head the sender's updates are measured against (see module doc)."""
    if view.previous_heads is not None:
        return view.previous_heads[view.byzantine_ids.index(sender)]
    if view.observed is not None and view.observed.shape[0] > 0:
        return view.observed.mean(dim=0)
    return view.own_head(sender)


def honest_updates(view: AttackerView, sender: int) -> torch.Tensor:
    """``[h, C, D+1]`` observed honest heads minus the sender's reference head."""
    return honest_heads(view, sender) - reference_head(view, sender)
