"""Per-peer Byzantine bounds and Metropolis-Hastings gossip weights, shared by the
decentralized rules (IOS, trimmed mean, BRIDGE, ClippedGossip, Krum, Bulyan, ...).

The decentralized papers give each node its own bound on Byzantine neighbours
(IOS: ``ByrdLab/aggregation.py`` ``D_ios.run`` and ``D_trimmed_mean.run`` use
``graph.byzantine_sizes[node]``; ClippedGossip: ``codes/aggregator.py`` clips by each
node's Byzantine weight). A rule's ``f`` may therefore be

- an ``int``: the same count for every peer (the classic server-style argument);
- ``"auto"``: the peer's true number of Byzantine senders this round,
  ``ctx.byzantine_neighbours``, an oracle upper bound (what the authors' experiments
  give every node; a real peer cannot know it);
- a ``float`` in ``[0, 1)``: a fraction of what the peer received,
  ``floor(f * k)`` for ``k`` received heads (the per-peer form a deployment can use).

Metropolis-Hastings weights (Xiao & Boyd 2004; the mixing matrix of both reference
codes: IOS ``D_ios.__init__`` ``W[i][j] = 1 / max(deg_i + 1, deg_j + 1)``,
ClippedGossip ``codes/graph_utils.py`` ``metropolis_weight``):
``w_ij = 1 / (1 + max(deg_i, deg_j))`` and ``w_ii = 1 - sum_j w_ij``.
"""
from __future__ import annotations

import math

import torch

from fedsim.params import Interval, Options, at_most_neighbours

AUTO = "auto"
WEIGHTINGS = ("uniform", "metropolis_hastings")


# Parameter constraints (fedsim.params) of a per-peer bound and of the gossip weights.
BOUND = [Interval(int, 0, None), Options(AUTO), Interval(float, 0.0, 1.0, closed="left")]
WEIGHTS = Options(*WEIGHTINGS)


def bound_at_most_neighbours(args: dict, facts, *names: str) -> list:
    """``check_run`` problems of integer bounds above the most neighbours a peer has
    (``"auto"`` and fractions never exceed what a peer receives)."""
    counts = {name: args.get(name) for name in names if isinstance(args.get(name), int)}
    return at_most_neighbours(counts, facts, *counts)


def f_at_most_neighbours(args: dict, facts) -> list:
    """The ``check_run`` of every rule bounded by an argument ``f``: at most the largest
    neighbourhood of the run (the rules' own fallbacks handle smaller ones)."""
    return bound_at_most_neighbours(args, facts, "f")


def bound_needs_context(value) -> bool:
    """Whether resolving ``value`` reads the peer's context (only ``"auto"`` does)."""
    return isinstance(value, str) and value == AUTO


def resolve_bound(value, received_count: int, ctx=None, rule: str = "rule") -> int:
    """The count ``f`` stands for at one peer that received ``received_count`` heads.

    ``int``: itself; ``"auto"``: ``ctx.byzantine_neighbours``; a float fraction:
    ``floor(value * received_count)``.
    """
    if isinstance(value, str):
        if ctx is None:
            raise ValueError(f"{rule} with f='auto' needs a PeerContext with byzantine_neighbours")
        return int(ctx.byzantine_neighbours)
    if isinstance(value, float):
        return int(math.floor(value * received_count + 1e-9))
    return int(value)


def metropolis_hastings(degree: int, sender_degrees: torch.Tensor) -> tuple[float, torch.Tensor]:
    """``(w_ii, w_ij [k])`` with ``w_ij = 1 / (1 + max(degree, deg_j))`` and
    ``w_ii = 1 - sum_j w_ij`` (float64)."""
    sender_degrees = torch.as_tensor(sender_degrees, dtype=torch.float64)
    weights = 1.0 / (1.0 + torch.clamp(sender_degrees, min=float(degree)))
    return 1.0 - float(weights.sum()), weights


def context_weights(ctx, rule: str) -> tuple[float, torch.Tensor]:
    """Metropolis-Hastings weights of the peer in ``ctx`` for its received heads, in order."""
    if ctx is None or ctx.sender_degrees is None:
        raise ValueError(f"{rule} with weights='metropolis_hastings' needs a PeerContext with "
                         "degree and sender_degrees")
    return metropolis_hastings(int(ctx.degree), ctx.sender_degrees)


def group_bounds(value, mask: torch.Tensor, ctxs=None, rule: str = "rule") -> torch.Tensor:
    """:func:`resolve_bound` for every peer of a padded group: ``[n]`` (long), with the
    received count of peer ``i`` the number of real messages ``mask[i].sum()``."""
    received = mask.sum(dim=1)
    if isinstance(value, str):
        if ctxs is None:
            raise ValueError(f"{rule} with f='auto' needs a PeerContext with byzantine_neighbours")
        return torch.tensor([int(c.byzantine_neighbours) for c in ctxs], dtype=torch.long)
    if isinstance(value, float):
        return torch.floor(value * received.double() + 1e-9).long()
    return torch.full_like(received, int(value))
