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
from defenses.aggregation.common import (candidates_with_own, check_count, check_positive,
                                    finite_received, group_valid, zero_invalid)
from fedsim.registry import register

# ----------------------------------------------------------------- pure functions


def clip_rows(differences: torch.Tensor, tau) -> torch.Tensor:
    """``CLIP(z, tau)`` row by row: ``differences [..., P]``, ``tau`` a number or ``[...]``."""
    norms = differences.norm(dim=-1)
    tau = torch.as_tensor(tau, dtype=differences.dtype)
    # Only rows longer than tau are scaled (so tau = 0 and zero rows never divide 0 by 0).
    scale = torch.where(norms > tau, tau / norms, torch.ones((), dtype=differences.dtype))
    return differences * scale.unsqueeze(-1)


def centered_clipping(rows: torch.Tensor, centre: torch.Tensor, tau: float,
                      iterations: int) -> torch.Tensor:
    """``v <- v + (1/n) sum_i CLIP(x_i - v, tau)``, ``iterations`` times from ``v = centre``.

    ``rows [n, P]``, ``centre [P]`` -> ``[P]``.
    """
    point = centre
    for _ in range(iterations):
        point = point + clip_rows(rows - point, tau).mean(dim=0)
    return point


def adaptive_clip_radius(distances: torch.Tensor, clipped: int) -> torch.Tensor:
    """The radius that clips the ``clipped`` farthest of ``distances [k]`` (k >= 1): the
    ``(clipped + 1)``-th largest distance; the smallest one when ``clipped >= k``."""
    ordered = distances.sort(descending=True).values
    return ordered[min(clipped, distances.shape[0] - 1)]


def clipped_gossip(own: torch.Tensor, neighbours: torch.Tensor, tau) -> torch.Tensor:
    """Self-centred clipping with uniform weights, ``own [P]``, ``neighbours [k, P]``:
    ``x_i + sum_j CLIP(x_j - x_i, tau) / (k + 1)``."""
    return own + clip_rows(neighbours - own, tau).sum(dim=0) / (neighbours.shape[0] + 1)


# ------------------------------------------------------------------------- rules


@register("defenses", "centered_clipping")
class CenteredClipping(Defense):
    """Centered clipping (Karimireddy, He, Jaggi 2021, "Learning from history for
    Byzantine robust optimization", ICML).

    ``v_{l+1} = v_l + (1/n) sum_i CLIP(x_i - v_l, tau)`` for ``l = 0 .. L-1``, with
    ``CLIP(z, tau) = z min(1, tau/||z||)``. In the paper ``v_0`` is the previous
    aggregate; here (decentralized) ``v_0`` is the peer's own head, and the set is the
    own head plus the finite received heads (``n = k + 1``), as in the decentralized
    baseline of the authors' follow-up code (He, Karimireddy, Jaggi 2022).

    Defaults: ``tau = 1.0`` (the paper tunes tau per task; this suits head-sized
    updates), ``iterations = 1`` (L; the default of the authors' code).
    """

    name = "centered_clipping"

    def __init__(self, tau: float = 1.0, iterations: int = 1):
        self.tau = check_positive("tau", tau)
        self.iterations = check_count("iterations", iterations, minimum=1)

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        merged = centered_clipping(rows, rows[0], self.tau, self.iterations)
        return merged.view_as(own).to(own.dtype)

    def aggregate_group(self, own, received, mask, ctxs=None):
        valid = group_valid(received, mask)
        rows = torch.cat([own.unsqueeze(1), zero_invalid(received, valid)], dim=1).flatten(2).double()
        weights = torch.cat([torch.ones(own.shape[0], 1, dtype=torch.bool), valid], dim=1).double()
        point = rows[:, 0]
        for _ in range(self.iterations):
            clipped = clip_rows(rows - point.unsqueeze(1), self.tau)
            point = point + (clipped * weights.unsqueeze(-1)).sum(dim=1) / weights.sum(dim=1, keepdim=True)
        return point.view_as(own).to(own.dtype)


@register("defenses", "clipped_gossip")
class ClippedGossip(Defense):
    """ClippedGossip with self-centred clipping (He, Karimireddy, Jaggi 2022,
    "Byzantine-robust decentralized learning via ClippedGossip", arXiv:2202.01545).

    ``x_i <- x_i + sum_j w_ij CLIP(x_j - x_i, tau_i)`` over the finite received heads,
    with uniform gossip weights ``w_ij = 1 / (k + 1)`` (a peer does not know its
    neighbours' degrees, so Metropolis weights are out of reach; the own head keeps the
    remaining ``1 / (k + 1)``).

    Radius: ``tau`` when given; otherwise the paper's adaptive rule, choosing ``tau_i``
    so that the clipped neighbours carry the Byzantine weight ``delta_i = f / (k + 1)``:
    ``tau_i`` is the ``(f + 1)``-th largest distance ``||x_j - x_i||``, so the ``f``
    farthest neighbours are clipped (the authors' code fixes ``f = 1``: the second
    largest distance). When ``f >= k`` the smallest distance is used (the authors' code
    with one neighbour: nothing clipped); ``f = 0`` is plain gossip averaging.

    Arguments: ``tau`` (default ``None`` = adaptive), ``f`` (default 1).
    """

    name = "clipped_gossip"

    def __init__(self, tau: Optional[float] = None, f: int = 1):
        self.tau = None if tau is None else check_positive("tau", tau)
        self.f = check_count("f", f)

    def radius(self, distances: torch.Tensor):
        return self.tau if self.tau is not None else adaptive_clip_radius(distances, self.f)

    def aggregate(self, own, received, ctx=None):
        neighbours = finite_received(received).flatten(1).double()
        if neighbours.shape[0] == 0:
            return own.clone()
        centre = own.flatten().double()
        tau = self.radius((neighbours - centre).norm(dim=1))
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
            position = torch.minimum(torch.full_like(count, self.f), (count - 1).clamp(min=0))
            tau = ordered.gather(1, position[:, None]).clamp(min=0.0)  # -inf: no neighbour
        clipped = zero_invalid(clip_rows(differences, tau), valid)
        merged = centre + clipped.sum(dim=1) / (count + 1).double()[:, None]
        return merged.view_as(own).to(own.dtype)
