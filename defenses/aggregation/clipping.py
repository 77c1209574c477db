"""Clipping rules: centered clipping (Karimireddy, He, Jaggi 2021) and self-centered
ClippedGossip (He, Karimireddy, Jaggi 2022).

``CLIP(z, tau) = z * min(1, tau / ||z||)`` on the whole flattened head (Frobenius
norm), computed in float64 so that huge finite heads neither overflow nor give
``inf * 0``.
"""
from __future__ import annotations

from typing import Optional

import torch

from defenses.base import Defense
from defenses.aggregation.common import candidates_with_own, group_candidates, group_valid, zero_invalid
from fedsim import functional as F
from defenses.aggregation.neighbour_bound import (BOUND, WEIGHTS,
                                                  bound_needs_context, context_weights, group_bounds,
                                                  resolve_bound, f_at_most_neighbours)
from fedsim.params import Interval
from fedsim.registry import register

# ----------------------------------------------------------------- pure functions


def centered_clipping(rows: torch.Tensor, centre: torch.Tensor, tau: float,
                      iterations: int) -> torch.Tensor:
    """``v <- v + (1/n) sum_i CLIP(x_i - v, tau)``, ``iterations`` times from ``v = centre``.

    ``rows [n, P]``, ``centre [P]`` -> ``[P]``.
    """
    point = centre
    for _ in range(iterations):
        point = point + F.clip_rows(rows - point, tau).mean(dim=0)
    return point


def adaptive_clip_radius(distances: torch.Tensor, clipped: int) -> torch.Tensor:
    """The radius that clips the ``clipped`` farthest of ``distances [k]`` (k >= 1): the
    ``(clipped + 1)``-th largest distance; the smallest one when ``clipped >= k``."""
    ordered = distances.sort(descending=True).values
    return ordered[min(clipped, distances.shape[0] - 1)]


def clipped_gossip(own: torch.Tensor, neighbours: torch.Tensor, tau) -> torch.Tensor:
    """Self-centred clipping with uniform weights, ``own [P]``, ``neighbours [k, P]``:
    ``x_i + sum_j CLIP(x_j - x_i, tau) / (k + 1)``."""
    return own + F.clip_rows(neighbours - own, tau).sum(dim=0) / (neighbours.shape[0] + 1)


def group_mh_weights(ctxs, mask: torch.Tensor) -> torch.Tensor:
    """Metropolis-Hastings weights ``w_ij`` of every peer of a group for its received
    slots (``mask [n, k]``; 0 elsewhere) from the peers' contexts -> float64 ``[n, k]``."""
    weights = torch.zeros(mask.shape, dtype=torch.float64)
    for row, ctx in enumerate(ctxs if ctxs is not None else [None] * mask.shape[0]):
        weights[row, mask[row]] = context_weights(ctx, "clipped_gossip")[1]
    return weights


# ------------------------------------------------------------------------- rules


@register("defenses", "centered_clipping")
class CenteredClipping(Defense):
    """Centered clipping: move from the own head by the mean of clipped differences.
    Karimireddy, He, Jaggi 2021, "Learning from history for Byzantine robust
    optimization", ICML.

    ``v_{l+1} = v_l + (1/n) sum_i CLIP(x_i - v_l, tau)`` for ``l = 0 .. L-1``, with
    ``CLIP(z, tau) = z min(1, tau/||z||)`` (:func:`fedsim.functional.clip_rows`), over
    the own head plus the finite received heads (``n = k + 1``), from ``v_0 = own``.

    Parameters
    ----------
    tau : float > 0, default 1.0
        Clipping radius (the paper tunes tau per task; 1 suits head-sized updates).
    iterations : int >= 1, default 1
        ``L``, the number of clipping steps (the default of the authors' code).

    Notes
    -----
    In the paper ``v_0`` is the previous aggregate; here (decentralized) ``v_0`` is the
    peer's own head, as in the decentralized baseline of the authors' follow-up code
    (He, Karimireddy, Jaggi 2022).

    References
    ----------
    .. [1] S. P. Karimireddy, L. He, M. Jaggi, "Learning from history for Byzantine robust
       optimization", ICML 2021.
    .. [2] L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning
       via ClippedGossip", arXiv:2202.01545, 2022: the decentralized form of the rule.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> rounded(CenteredClipping(tau=0.5, iterations=3).aggregate(own, received))
    tensor([[0.9100, 0.0700, 0.0700],
            [0.0700, 0.9100, 0.0700]])
    """

    name = "centered_clipping"
    parameters = {"tau": Interval(float, 0, None, closed="neither"), "iterations": Interval(int, 1, None)}

    def __init__(self, tau: float = 1.0, iterations: int = 1):
        self.tau, self.iterations = float(tau), iterations

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        merged = centered_clipping(rows, rows[0], self.tau, self.iterations)
        return merged.view_as(own).to(own.dtype)

    def aggregate_group(self, own, received, mask, ctxs=None):
        rows, candidates = group_candidates(own, received, mask)
        weights = candidates.double()
        point = rows[:, 0]
        for _ in range(self.iterations):
            clipped = F.clip_rows(rows - point.unsqueeze(1), self.tau)
            point = point + (clipped * weights.unsqueeze(-1)).sum(dim=1) / weights.sum(dim=1, keepdim=True)
        return point.view_as(own).to(own.dtype)


@register("defenses", "clipped_gossip")
class ClippedGossip(Defense):
    """ClippedGossip: gossip averaging of self-centred, clipped differences.
    He, Karimireddy, Jaggi 2022, "Byzantine-robust decentralized learning via
    ClippedGossip", arXiv:2202.01545.

    ``x_i <- x_i + sum_j w_ij CLIP(x_j - x_i, tau_i)`` over the finite received heads.

    Radius: ``tau`` when given; otherwise the paper's adaptive rule, choosing ``tau_i``
    so that the clipped neighbours carry the Byzantine weight ``delta_i = f / (k + 1)``:
    ``tau_i`` is the ``(f + 1)``-th largest distance ``||x_j - x_i||``, so the ``f``
    farthest neighbours are clipped.

    Parameters
    ----------
    tau : float > 0, default None
        A fixed clipping radius; ``None`` chooses it adaptively (above).
    f : int >= 0, "auto" or float in [0, 1), default 1
        How many neighbours the adaptive radius clips: a count, ``"auto"`` (the peer's
        true number of Byzantine senders this round, an oracle upper bound, as the
        paper's ``delta_i``) or a fraction of the heads received (see
        ``defenses.aggregation.neighbour_bound``).
    weights : {"uniform", "metropolis_hastings"}, default "uniform"
        ``"uniform"``: ``w_ij = 1 / (k + 1)``; ``"metropolis_hastings"``: the paper's
        and its code's gossip weights ``w_ij = 1 / (1 + max(deg_i, deg_j))``, from
        ``ctx.degree`` and ``ctx.sender_degrees``.

    Notes
    -----
    The authors' code fixes ``f = 1`` (the second largest distance). When ``f >= k``
    the smallest distance is used (the authors' code with one neighbour: nothing
    clipped); ``f = 0`` is plain gossip averaging. Metropolis-Hastings weights as in
    ``codes/graph_utils.py`` ``metropolis_weight``; ``codes/aggregator.py``
    ``SelfCenteredClipping._agg`` sums ``w_ij (x_i + CLIP(x_j - x_i))`` with the own
    weight ``w_ii = 1 - sum_j w_ij``.

    The batched form covers every variant (the weights and ``f="auto"`` come from the
    peers' contexts); with Metropolis-Hastings weights the weighted sum is a batched
    matrix product: the per-peer result to about 1e-16 relative on float64 heads (bit
    for bit on float32 heads in ``tests/test_rules_batched.py``).

    References
    ----------
    .. [1] L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning
       via ClippedGossip", arXiv:2202.01545, 2022: the rule.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> rounded(ClippedGossip(f=2).aggregate(own, received))  # the 2 farthest are clipped
    tensor([[0.9700, 0.0200, 0.0200],
            [0.0200, 0.9700, 0.0200]])
    """

    name = "clipped_gossip"
    parameters = {"tau": [None, Interval(float, 0, None, closed="neither")], "f": BOUND,
                  "weights": WEIGHTS}

    def __init__(self, tau: Optional[float] = None, f=1, weights: str = "uniform"):
        self.tau = None if tau is None else float(tau)
        self.f = f
        self.weights = weights
        self.needs_context = bound_needs_context(f) or weights == "metropolis_hastings"

    check_run = staticmethod(f_at_most_neighbours)

    def radius(self, distances: torch.Tensor, f: int):
        return self.tau if self.tau is not None else adaptive_clip_radius(distances, f)

    def aggregate(self, own, received, ctx=None):
        k = received.shape[0]
        finite = F.finite_rows(received)
        neighbours = received[finite].flatten(1).double()
        if neighbours.shape[0] == 0:
            return own.clone()
        centre = own.flatten().double()
        tau = self.radius(F.distances_to(centre, neighbours), resolve_bound(self.f, k, ctx, "clipped_gossip"))
        if self.weights == "metropolis_hastings":
            _, weights = context_weights(ctx, "clipped_gossip")
            step = torch.tensordot(weights[finite], F.clip_rows(neighbours - centre, tau), dims=1)
            return (centre + step).view_as(own).to(own.dtype)
        return clipped_gossip(centre, neighbours, tau).view_as(own).to(own.dtype)

    def aggregate_group(self, own, received, mask, ctxs=None):
        valid = group_valid(received, mask)
        centre = own.flatten(1).double()
        differences = zero_invalid(received, valid).flatten(2).double() - centre.unsqueeze(1)
        count = valid.sum(dim=1)
        if self.tau is not None:
            tau = torch.full((own.shape[0], 1), self.tau, dtype=torch.float64)
        else:
            distances = torch.where(valid, differences.norm(dim=2),
                                    torch.full((), -float("inf"), dtype=torch.float64))
            ordered = distances.sort(dim=1, descending=True).values
            position = torch.minimum(group_bounds(self.f, mask, ctxs, "clipped_gossip"), (count - 1).clamp(min=0))
            tau = ordered.gather(1, position[:, None]).clamp(min=0.0)  # -inf: no neighbour
        clipped = zero_invalid(F.clip_rows(differences, tau), valid)
        if self.weights == "metropolis_hastings":
            weights = torch.where(valid, group_mh_weights(ctxs, mask), torch.zeros((), dtype=torch.float64))
            merged = centre + torch.bmm(weights.unsqueeze(1), clipped).squeeze(1)
        else:
            merged = centre + clipped.sum(dim=1) / (count + 1).double()[:, None]
        return merged.view_as(own).to(own.dtype)
