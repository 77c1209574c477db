"""Coordinate-wise robust rules: median, trimmed mean (Yin et al. 2018) and BRIDGE-T
(Yang & Bajwa 2019).

Each works on every coordinate of the flattened head independently. The per-peer
forms slice sorted values; the batched forms sort a padded group once (padding and
non-finite rows pushed to the end as +inf) and select positions by count. The group is
sorted along its candidate axis (``1 + k``, small) by a sorting network of elementwise
``minimum``/``maximum`` over whole ``[n, P]`` slices (:func:`sort_padded`), about ten
times faster than ``torch.sort`` along that axis at degree 8 and giving the same values.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch

from defenses.base import Defense
from defenses.aggregation.common import candidates_with_own, group_valid
from fedsim import functional as F
from defenses.aggregation.neighbour_bound import (BOUND, bound_at_most_neighbours, bound_needs_context,
                                                  group_bounds, resolve_bound)
from fedsim.params import Interval
from fedsim.registry import register

# ----------------------------------------------------------------- pure functions


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
    return (own + F.trimmed_values(neighbours, b).sum(dim=0)) / (k - 2 * b + 1)


@functools.lru_cache(maxsize=None)
def sorting_network(m: int) -> tuple[tuple[int, int], ...]:
    """Comparators ``(a, b)``, ``a < b``, of Batcher's odd-even merge sort for ``m`` values.

    K. E. Batcher, "Sorting networks and their applications", AFIPS 1968: the network for
    the next power of two ``N >= m`` (``(log2(N)^2 - log2(N) + 4) N / 4 - 1``
    comparators), less every comparator that touches a position ``>= m``. Those
    positions can be thought of as holding +inf: a comparator ``(a, b)`` with ``b``
    holding +inf leaves both in place, so dropping it changes nothing and the first ``m``
    positions end sorted (28 comparators for ``m = 9``).
    """
    size = 1 << max(0, (m - 1).bit_length())
    pairs = []
    span = 1
    while span < size:
        step = span
        while step >= 1:
            for j in range(step % span, size - step, 2 * step):
                for i in range(min(step, size - j - step)):
                    if (i + j) // (2 * span) == (i + j + step) // (2 * span) and i + j + step < m:
                        pairs.append((i + j, i + j + step))
            step //= 2
        span *= 2
    return tuple(pairs)


def sort_padded(values: torch.Tensor, valid: torch.Tensor,
                first: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
    """``values [n, m, P]`` (after ``first [n, P]``, when given, as candidate 0) sorted
    along the candidate axis with invalid rows (``valid [n, m]`` False) replaced by +inf,
    so that each peer's valid values come first: the list of sorted positions, each
    ``[n, P]``.

    The valid rows of ``values`` are finite (:func:`~defenses.aggregation.common.group_valid`);
    ``first`` (a peer's own head) may hold NaN if its training diverged. Without NaN the
    sort is :func:`sorting_network` on the candidates' ``[n, P]`` slices; with NaN,
    ``torch.sort`` (NaN last). Both give the same values in the same order (equal values
    are interchangeable; ``-0.0`` and ``0.0`` may trade places).
    """
    inf = torch.full((), float("inf"), dtype=values.dtype)
    slices = [torch.where(valid[:, j, None], values[:, j], inf) for j in range(values.shape[1])]
    if first is not None:
        slices.insert(0, first.clone())
        if bool(torch.isnan(first).any()):
            return list(torch.stack(slices, dim=1).sort(dim=1).values.unbind(1))
    spare = torch.empty_like(slices[0])   # in place: fresh [n, P] blocks cost page faults
    for a, b in sorting_network(len(slices)):
        torch.minimum(slices[a], slices[b], out=spare)
        torch.maximum(slices[a], slices[b], out=slices[b])
        slices[a], spare = spare, slices[a]
    return slices


def value_at(ordered: list[torch.Tensor], position: torch.Tensor) -> torch.Tensor:
    """Per group row ``i``, ``ordered[position_i][i]`` -> ``[n, P]``."""
    picked = ordered[0]
    for j in range(1, len(ordered)):
        picked = torch.where((position == j)[:, None], ordered[j], picked)
    return picked


def sum_of_positions(ordered: list[torch.Tensor], start: torch.Tensor, stop: torch.Tensor) -> torch.Tensor:
    """Per group row ``i``, the float64 sum of ``ordered[start_i:stop_i][i]`` -> ``[n, P]``,
    added in position order."""
    zero = torch.zeros((), dtype=torch.float64)
    total = torch.zeros(ordered[0].shape, dtype=torch.float64)
    for j, values in enumerate(ordered):
        keep = ((start <= j) & (j < stop))[:, None]
        total += torch.where(keep, values.double(), zero)
    return total


def _sorted_group_candidates(own: torch.Tensor, received: torch.Tensor, mask: torch.Tensor):
    """The flat candidates ``[n, 1 + k, CP]`` (own first) sorted per coordinate by
    :func:`sort_padded` in their own dtype (the order of float64 copies is the same),
    and each peer's candidate count ``[n]``."""
    valid = group_valid(received, mask)
    return sort_padded(received.flatten(2), valid, first=own.flatten(1)), 1 + valid.sum(dim=1)


def _trim_counts(count: torch.Tensor, requested: torch.Tensor) -> torch.Tensor:
    return torch.minimum(requested, (count - 1) // 2).clamp(min=0)


# ------------------------------------------------------------------------- rules


@register("defenses", "median")
class CoordinateMedian(Defense):
    """Coordinate-wise median of the own head and the received heads.
    Yin, Chen, Ramchandran, Bartlett 2018, "Byzantine-robust distributed learning:
    towards optimal statistical rates", ICML.

    ``merged[p] = med{x_own[p], x_1[p], ..., x_k[p]}``: the server-style rule applied
    to the peer's own head as one more candidate (as in the decentralized baselines of
    He, Karimireddy, Jaggi 2022). For an even number of candidates the median is the
    mean of the two middle values (the paper's definition). The rule has no parameters.

    Notes
    -----
    Received heads holding NaN or inf are dropped first; with none left the own head
    is returned. ``torch.median`` would return the lower middle value; the paper's
    median averages the two.

    References
    ----------
    .. [1] D. Yin, Y. Chen, K. Ramchandran, P. Bartlett, "Byzantine-robust distributed
       learning: towards optimal statistical rates", ICML 2018.
    .. [2] L. He, S. P. Karimireddy, M. Jaggi, "Byzantine-robust decentralized learning
       via ClippedGossip", arXiv:2202.01545, 2022: the decentralized baselines.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> CoordinateMedian().aggregate(own, received)  # 7 candidates: the outlier is out-voted
    tensor([[1., 0., 0.],
            [0., 1., 0.]])
    """

    name = "median"
    parameters = {}

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        return F.coordinate_median(rows).view_as(own).to(own.dtype)

    def aggregate_group(self, own, received, mask, ctxs=None):
        ordered, count = _sorted_group_candidates(own, received, mask)
        lower, upper = value_at(ordered, (count - 1) // 2), value_at(ordered, count // 2)
        return ((lower.double() + upper.double()) / 2).view_as(own).to(own.dtype)


@register("defenses", "trimmed_mean")
class TrimmedMean(Defense):
    """Coordinate-wise trimmed mean of the own head and the received heads.
    Yin, Chen, Ramchandran, Bartlett 2018, "Byzantine-robust distributed learning:
    towards optimal statistical rates", ICML.

    Over the ``n = 1 + k`` candidates (own head included, non-finite received heads
    dropped), per coordinate: sort, drop the ``t`` largest and ``t`` smallest values,
    average the ``n - 2t`` left. ``t = f`` when ``f`` is given, ``t = floor(beta * n)``
    when ``beta`` (the paper's fraction) is given (as ``scipy.stats.trim_mean``).

    Parameters
    ----------
    f : int >= 0, "auto" or float in [0, 1), default 1
        How many values to trim from each side: a count; ``"auto"``, the peer's true
        number of Byzantine senders this round (an oracle upper bound); or a fraction
        of the ``k`` heads received (``t = floor(f k)``). See
        ``defenses.aggregation.neighbour_bound``.
    beta : float in [0, 0.5), default None
        The paper's fraction of all ``n`` candidates (``t = floor(beta n)``); give ``f``
        or ``beta``, not both.

    Notes
    -----
    Fallback: when ``2t >= n``, ``t`` is lowered to ``(n - 1) // 2`` (the median of the
    candidates, lower/upper middle averaged when ``n`` is even). ``f="auto"`` trims what
    the IOS authors' decentralized trimmed mean trims, ``graph.byzantine_sizes[node]``
    (``ByrdLab/aggregation.py`` ``D_trimmed_mean.run``); that rule trims the neighbours
    only and always keeps the own head, which is :class:`Bridge` with ``b="auto"``. This
    rule trims the own head with the others (the server-style rule of Yin et al.).
    Without Byzantine neighbours ``f="auto"`` trims nothing and equals ``mean``; on
    2-class shards the trimming of honest extremes costs accuracy under attack
    (docs/reproductions.md, per-peer f).

    The batched form (``aggregate_group``) sorts each coordinate's candidates with a
    sorting network and adds the kept values in sorted order: bit for bit the per-peer
    result on float32 heads, to about 1e-16 relative on float64 heads (the per-peer mean
    may add in another order); ``tests/test_rules_batched.py``.

    References
    ----------
    .. [1] D. Yin, Y. Chen, K. Ramchandran, P. Bartlett, "Byzantine-robust distributed
       learning: towards optimal statistical rates", ICML 2018.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> rounded(TrimmedMean(f=2).aggregate(own, received))  # both outlier copies trimmed
    tensor([[0.9700, 0.0300, 0.0300],
            [0.0300, 0.9700, 0.0300]])
    """

    name = "trimmed_mean"
    parameters = {"f": [None] + BOUND, "beta": [None, Interval(float, 0, 0.5, closed="left")]}

    def __init__(self, f=None, beta: Optional[float] = None):
        self.f = 1 if f is None and beta is None else f
        self.beta = None if beta is None else float(beta)
        self.needs_context = bound_needs_context(self.f)

    @staticmethod
    def check_run(args, facts):
        if args["f"] is not None and args["beta"] is not None:
            return [("beta", "must be null when f is given (give a count f or a fraction beta, not both)")]
        return bound_at_most_neighbours(args, facts, "f")

    def trim_for(self, count: int, received: int = 0, ctx=None) -> int:
        """Trim per side for ``count`` candidates (own included) out of ``received`` heads."""
        if self.f is None:
            return effective_trim(int(self.beta * count), count)
        return effective_trim(resolve_bound(self.f, received, ctx, "trimmed_mean"), count)

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        merged = F.coordinate_trimmed_mean(rows, self.trim_for(rows.shape[0], received.shape[0], ctx))
        return merged.view_as(own).to(own.dtype)

    def aggregate_group(self, own, received, mask, ctxs=None):
        ordered, count = _sorted_group_candidates(own, received, mask)
        requested = torch.floor(self.beta * count.double()).long() if self.f is None \
            else group_bounds(self.f, mask, ctxs, "trimmed_mean")
        trim = _trim_counts(count, requested)
        total = sum_of_positions(ordered, trim, count - trim)
        merged = total / (count - 2 * trim).to(total.dtype)[:, None]
        return merged.view_as(own).to(own.dtype)


@register("defenses", "bridge")
class Bridge(Defense):
    """BRIDGE-T: trim each coordinate of the neighbours, average the rest with the own value.
    Yang & Bajwa 2019, "BRIDGE: Byzantine-resilient decentralized gradient descent",
    arXiv:1908.08098 (the screening of ByRDiE, Yang & Bajwa 2019, IEEE TSIPN).

    Per coordinate ``p``, the peer sorts its ``k`` neighbours' values, drops the ``b``
    largest and ``b`` smallest, and averages the rest together with its own value:
    ``merged[p] = (x_own[p] + sum_{j in kept_p} x_j[p]) / (k - 2b + 1)``. As in the
    paper, the own value is always kept and is not part of the trimming.

    Parameters
    ----------
    b : int >= 0, "auto" or float in [0, 1), default 1
        Byzantine neighbours tolerated: a count, ``"auto"`` (the peer's true number of
        Byzantine senders, an oracle upper bound) or a fraction of the heads received
        (see ``defenses.aggregation.neighbour_bound``).

    Notes
    -----
    Non-finite received heads are dropped first (``k`` counts the finite ones).
    Fallback: when ``2b > k``, ``b`` is lowered to ``k // 2`` (with ``2b = k`` only the
    own head is left). The gradient step of BRIDGE happens in local training, not here.

    The batched form (``aggregate_group``) sorts each coordinate's candidates with a
    sorting network and adds the kept values in sorted order: bit for bit the per-peer
    result on float32 heads, to about 1e-16 relative on float64 heads (the per-peer mean
    may add in another order); ``tests/test_rules_batched.py``.

    References
    ----------
    .. [1] Z. Yang, W. U. Bajwa, "BRIDGE: Byzantine-resilient decentralized gradient
       descent", arXiv:1908.08098, 2019.
    .. [2] Z. Yang, W. U. Bajwa, "ByRDiE: Byzantine-resilient distributed coordinate
       descent for decentralized learning", IEEE TSIPN 2019.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> rounded(Bridge(b=2).aggregate(own, received))
    tensor([[0.9700, 0.0300, 0.0300],
            [0.0300, 0.9700, 0.0300]])
    """

    name = "bridge"
    parameters = {"b": BOUND}

    def __init__(self, b=1):
        self.b = b
        self.needs_context = bound_needs_context(b)

    @staticmethod
    def check_run(args, facts):
        return bound_at_most_neighbours(args, facts, "b")

    def aggregate(self, own, received, ctx=None):
        neighbours = F.drop_nonfinite(received).flatten(1).double()
        b = resolve_bound(self.b, received.shape[0], ctx, "bridge")
        merged = bridge_screen(own.flatten().double(), neighbours, b)
        return merged.view_as(own).to(own.dtype)

    def aggregate_group(self, own, received, mask, ctxs=None):
        valid = group_valid(received, mask)
        count = valid.sum(dim=1)
        b = torch.minimum(group_bounds(self.b, mask, ctxs, "bridge"), count // 2)
        kept = sum_of_positions(sort_padded(received.flatten(2), valid), b, count - b)
        merged = (own.flatten(1).double() + kept) / (count - 2 * b + 1).double()[:, None]
        return merged.view_as(own).to(own.dtype)
