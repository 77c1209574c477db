"""Coordinate-wise robust rules: median, trimmed mean (Yin et al. 2018) and BRIDGE-T
(Yang & Bajwa 2019).

Each works on every coordinate of the flattened head independently. The per-peer
forms slice sorted values; the batched forms sort a padded group once (padding and
non-finite rows pushed to the end as +inf) and select positions by count.
"""
from __future__ import annotations

from typing import Optional

import torch

from defenses.base import Defense
from defenses.aggregation.common import (candidates_with_own, check_count, finite_received,
                                    group_valid, zero_invalid)
from fedsim.registry import register

# ----------------------------------------------------------------- pure functions


def coordinate_median(rows: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median of ``rows [n, P]`` (n >= 1) -> ``[P]``.

    For even ``n`` the mean of the two middle values (Yin et al.'s definition; note
    ``torch.median`` would return the lower one).
    """
    ordered = rows.sort(dim=0).values
    n = rows.shape[0]
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def coordinate_trimmed_mean(rows: torch.Tensor, trim: int) -> torch.Tensor:
    """Mean of ``rows [n, P]`` per coordinate after dropping the ``trim`` largest and the
    ``trim`` smallest values; requires ``n - 2 * trim >= 1``."""
    n = rows.shape[0]
    if not 0 <= 2 * trim < n:
        raise ValueError(f"cannot trim {trim} from each side of {n} values")
    return rows.sort(dim=0).values[trim:n - trim].mean(dim=0)


def effective_trim(requested: int, count: int) -> int:
    """``requested`` lowered to ``(count - 1) // 2`` so that at least one value stays."""
    return max(0, min(requested, (count - 1) // 2))


def bridge_screen(own: torch.Tensor, neighbours: torch.Tensor, b: int) -> torch.Tensor:
    """BRIDGE-T screening, ``own [P]``, ``neighbours [k, P]`` -> ``[P]``.

    Per coordinate, drop the ``b`` largest and ``b`` smallest neighbour values
    (``b`` lowered to ``k // 2`` when ``2b > k``) and average what is left together
    with the own value: ``(own + sum(kept)) / (k - 2b + 1)``.
    """
    k = neighbours.shape[0]
    b = min(b, k // 2)
    kept = neighbours.sort(dim=0).values[b:k - b]
    return (own + kept.sum(dim=0)) / (k - 2 * b + 1)


def sort_padded(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``values [n, m, P]`` sorted along ``m`` with invalid rows (``valid [n, m]`` False)
    replaced by +inf, so that the ``count_i`` valid values come first."""
    filled = torch.where(valid.unsqueeze(-1), values,
                         torch.full((), float("inf"), dtype=values.dtype))
    return filled.sort(dim=1).values


def mean_of_positions(ordered: torch.Tensor, start: torch.Tensor, stop: torch.Tensor) -> torch.Tensor:
    """Per group row ``i``, the mean of ``ordered[i, start_i:stop_i]`` -> ``[n, P]``."""
    positions = torch.arange(ordered.shape[1])
    keep = (positions >= start[:, None]) & (positions < stop[:, None])
    total = torch.where(keep.unsqueeze(-1), ordered, torch.zeros((), dtype=ordered.dtype)).sum(dim=1)
    return total / (stop - start).to(ordered.dtype)[:, None]


def _group_candidates(own: torch.Tensor, received: torch.Tensor, mask: torch.Tensor):
    """Flat float64 ``[n, 1 + k, CP]`` (own first) and the validity mask ``[n, 1 + k]``."""
    valid = group_valid(received, mask)
    rows = torch.cat([own.unsqueeze(1), zero_invalid(received, valid)], dim=1)
    ones = torch.ones(own.shape[0], 1, dtype=torch.bool)
    return rows.flatten(2).double(), torch.cat([ones, valid], dim=1)


def _trim_counts(count: torch.Tensor, f: Optional[int], beta: Optional[float]) -> torch.Tensor:
    requested = torch.full_like(count, f) if f is not None else torch.floor(beta * count.double()).long()
    return torch.minimum(requested, (count - 1) // 2).clamp(min=0)


# ------------------------------------------------------------------------- rules


@register("defenses", "median")
class CoordinateMedian(Defense):
    """Coordinate-wise median (Yin, Chen, Ramchandran, Bartlett 2018, "Byzantine-robust
    distributed learning: towards optimal statistical rates", ICML).

    ``merged[p] = med{x_own[p], x_1[p], ..., x_k[p]}``: the server-style rule applied
    to the peer's own head as one more candidate (as in the decentralized baselines of
    He, Karimireddy, Jaggi 2022). For an even number of candidates the median is the
    mean of the two middle values (the paper's definition). Received heads holding
    NaN or inf are dropped first; with none left the own head is returned. No
    arguments.
    """

    name = "median"

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        return coordinate_median(rows).view_as(own).to(own.dtype)

    def aggregate_group(self, own, received, mask, ctxs=None):
        rows, valid = _group_candidates(own, received, mask)
        ordered = sort_padded(rows, valid)
        count = valid.sum(dim=1)
        lower = ordered.gather(1, ((count - 1) // 2)[:, None, None].expand(-1, 1, rows.shape[2]))
        upper = ordered.gather(1, (count // 2)[:, None, None].expand(-1, 1, rows.shape[2]))
        return ((lower + upper) / 2).squeeze(1).view_as(own).to(own.dtype)


@register("defenses", "trimmed_mean")
class TrimmedMean(Defense):
    """Coordinate-wise trimmed mean (Yin, Chen, Ramchandran, Bartlett 2018,
    "Byzantine-robust distributed learning: towards optimal statistical rates", ICML).

    Over the ``n = 1 + k`` candidates (own head included, non-finite received heads
    dropped), per coordinate: sort, drop the ``t`` largest and ``t`` smallest values,
    average the ``n - 2t`` left. ``t = f`` when ``f`` is given, ``t = floor(beta * n)``
    when ``beta`` (the paper's fraction) is given (as ``scipy.stats.trim_mean``).
    Fallback: when ``2t >= n``, ``t`` is lowered to ``(n - 1) // 2`` (the median of the
    candidates, lower/upper middle averaged when ``n`` is even).

    Arguments: ``f`` (count trimmed from each side) or ``beta`` in ``[0, 0.5)``, not
    both; default ``f = 1``.
    """

    name = "trimmed_mean"

    def __init__(self, f: Optional[int] = None, beta: Optional[float] = None):
        if f is not None and beta is not None:
            raise ValueError("give trimmed_mean either f (a count) or beta (a fraction), not both")
        if beta is None:
            f = check_count("f", 1 if f is None else f)
        elif isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < 0.5:
            raise ValueError(f"beta must be a number in [0, 0.5), got {beta!r}")
        self.f = f
        self.beta = None if beta is None else float(beta)

    def trim_for(self, count: int) -> int:
        requested = self.f if self.f is not None else int(self.beta * count)
        return effective_trim(requested, count)

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        merged = coordinate_trimmed_mean(rows, self.trim_for(rows.shape[0]))
        return merged.view_as(own).to(own.dtype)

    def aggregate_group(self, own, received, mask, ctxs=None):
        rows, valid = _group_candidates(own, received, mask)
        count = valid.sum(dim=1)
        trim = _trim_counts(count, self.f, self.beta)
        merged = mean_of_positions(sort_padded(rows, valid), trim, count - trim)
        return merged.view_as(own).to(own.dtype)


@register("defenses", "bridge")
class Bridge(Defense):
    """BRIDGE-T (Yang & Bajwa 2019, "BRIDGE: Byzantine-resilient decentralized gradient
    descent", arXiv:1908.08098; the screening of ByRDiE, Yang & Bajwa 2019, IEEE TSIPN).

    Per coordinate ``p``, the peer sorts its ``k`` neighbours' values, drops the ``b``
    largest and ``b`` smallest, and averages the rest together with its own value:
    ``merged[p] = (x_own[p] + sum_{j in kept_p} x_j[p]) / (k - 2b + 1)``. As in the
    paper, the own value is always kept and is not part of the trimming. Non-finite
    received heads are dropped first (``k`` counts the finite ones). Fallback: when
    ``2b > k``, ``b`` is lowered to ``k // 2`` (with ``2b = k`` only the own head is
    left). (The gradient step of BRIDGE happens in local training, not here.)

    Arguments: ``b`` (Byzantine neighbours tolerated), default 1.
    """

    name = "bridge"

    def __init__(self, b: int = 1):
        self.b = check_count("b", b)

    def aggregate(self, own, received, ctx=None):
        neighbours = finite_received(received).flatten(1).double()
        merged = bridge_screen(own.flatten().double(), neighbours, self.b)
        return merged.view_as(own).to(own.dtype)

    def aggregate_group(self, own, received, mask, ctxs=None):
        valid = group_valid(received, mask)
        rows = zero_invalid(received, valid).flatten(2).double()
        count = valid.sum(dim=1)
        b = torch.minimum(torch.full_like(count, self.b), count // 2)
        ordered = sort_padded(rows, valid)
        positions = torch.arange(rows.shape[1])
        keep = (positions >= b[:, None]) & (positions < (count - b)[:, None])
        kept = torch.where(keep.unsqueeze(-1), ordered, torch.zeros((), dtype=ordered.dtype)).sum(dim=1)
        merged = (own.flatten(1).double() + kept) / (count - 2 * b + 1).double()[:, None]
        return merged.view_as(own).to(own.dtype)
