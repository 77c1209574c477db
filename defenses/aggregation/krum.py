"""Distance-score selection rules: Krum, Multi-Krum (Blanchard et al. 2017) and Bulyan
(El Mhamdi et al. 2018).

All three treat the peer's own head as one more candidate (first, so that exact ties
resolve towards it) and drop received heads holding NaN or inf before scoring.
"""
from __future__ import annotations

from typing import Optional

import torch

from defenses.base import Defense
from defenses.aggregation.common import candidates_with_own, group_candidates
from defenses.aggregation.coordinate import sort_padded, sum_of_positions, value_at
from fedsim import functional as F
from defenses.aggregation.neighbour_bound import (BOUND, bound_at_most_neighbours, bound_needs_context,
                                                  group_bounds, resolve_bound, f_at_most_neighbours)
from fedsim.params import Boolean, Interval
from fedsim.registry import register

# ----------------------------------------------------------------- pure functions


def krum_tolerance(f: int, n: int) -> int:
    """``f`` lowered so that Krum's condition ``n >= 2f + 3`` holds (0 when ``n < 3``)."""
    return max(0, min(f, (n - 3) // 2))


def krum_neighbour_count(f: int, n: int) -> int:
    """How many nearest candidates a score sums over: ``n - f - 2`` with ``f`` lowered
    by :func:`krum_tolerance`; at least 1 when ``n >= 2``, 0 when ``n == 1``."""
    return min(n - 1, max(1, n - krum_tolerance(f, n) - 2))


def krum_ranking(rows: torch.Tensor, f: int) -> torch.Tensor:
    """Candidate indices of ``rows [n, P]`` from best (lowest Krum score, summed over the
    :func:`krum_neighbour_count` nearest others) to worst; ties keep index order."""
    scores = F.krum_scores(rows, krum_neighbour_count(f, rows.shape[0]))
    return torch.sort(scores, stable=True).indices


def bulyan_aggregate(rows: torch.Tensor, f: int) -> torch.Tensor:
    """Bulyan over ``rows [n, P]`` -> ``[P]``.

    1. Selection: ``theta = n - 2f`` times, run Krum (with ``f``) on the candidates not
       yet selected and move its choice into ``S``.
    2. Aggregation: per coordinate, average the ``beta = theta - 2f`` values of ``S``
       closest to the coordinate-wise median of ``S``.

    Fallback when ``n < 4f + 3``: ``theta`` and ``beta`` are clamped to at least 1
    (``beta = 1`` keeps, per coordinate, the selected value nearest to the median).
    """
    n = rows.shape[0]
    theta = max(1, n - 2 * f)
    beta = max(1, theta - 2 * f)
    remaining = list(range(n))
    selected = []
    for _ in range(theta):
        best = int(krum_ranking(rows[remaining], f)[0])
        selected.append(remaining.pop(best))
    chosen = rows[selected]
    spread = (chosen - F.coordinate_median(chosen)).abs()
    nearest = torch.sort(spread, dim=0, stable=True).indices[:beta]
    return chosen.gather(0, nearest).mean(dim=0)


def group_krum_counts(f: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """:func:`krum_neighbour_count` of every peer of a group: ``f [n]``, ``n [n]`` -> ``[n]``."""
    tolerance = torch.minimum(f, torch.div(n - 3, 2, rounding_mode="floor")).clamp(min=0)
    return torch.minimum(n - 1, (n - tolerance - 2).clamp(min=1))


def group_squared_distances(rows: torch.Tensor) -> torch.Tensor:
    """Squared distances of the candidates of every peer: ``rows [n, m, P]`` -> ``[n, m, m]``
    (:func:`fedsim.functional.pairwise_squared_distances`, batched: the same numbers)."""
    d = torch.cdist(rows, rows, compute_mode=F.EXACT)
    return d * d


def group_krum_scores(squared: torch.Tensor, candidates: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Krum's score of every candidate of every peer -> ``[n, m]``, +inf for the
    non-candidates (``candidates [n, m]`` False).

    ``squared [n, m, m]`` from :func:`group_squared_distances`; ``count [n]``: how many
    nearest other candidates a score sums over (:func:`group_krum_counts`). The nearest
    distances are added in ascending order, as :func:`fedsim.functional.nearest_sums`.
    """
    m = squared.shape[1]
    pair = candidates[:, :, None] & candidates[:, None, :] & ~torch.eye(m, dtype=torch.bool)
    nearest = torch.where(pair, squared, torch.full((), float("inf"), dtype=squared.dtype)).sort(dim=2).values
    positions = torch.arange(m)
    scores = torch.where(positions < count[:, None, None], nearest, torch.zeros((), dtype=squared.dtype)).sum(dim=2)
    return torch.where(candidates, scores, torch.full((), float("inf"), dtype=scores.dtype))


def group_rows(own: torch.Tensor, received: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """Candidate ``picks [n, s]`` of every peer (0 = own head, ``j`` = received row
    ``j - 1``) in the heads' own dtype -> ``[n, s, C, P]``."""
    stacked = torch.cat([own.unsqueeze(1), received], dim=1)
    return stacked.gather(1, picks[:, :, None, None].expand(-1, -1, *own.shape[1:]))


def bulyan_group(rows: torch.Tensor, candidates: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """:func:`bulyan_aggregate` of every peer of a group: ``rows [n, m, P]`` float64,
    ``candidates [n, m]``, ``f [n]`` -> ``[n, P]``.

    The Krum selections run for all peers at once (``theta_max`` steps; a peer whose
    ``theta`` is reached stops choosing); the distances are computed once, the scores
    of each step over the candidates not yet selected.
    """
    n, m, P = rows.shape
    count = candidates.sum(dim=1)
    theta = (count - 2 * f).clamp(min=1)
    beta = (theta - 2 * f).clamp(min=1)
    squared = group_squared_distances(rows)
    remaining = candidates.clone()
    picks = torch.zeros(n, int(theta.max()), dtype=torch.long)
    for step in range(picks.shape[1]):
        left = remaining.sum(dim=1)
        best = group_krum_scores(squared, remaining, group_krum_counts(f, left)).argmin(dim=1)
        picks[:, step] = best
        choosing = step < theta
        remaining[torch.arange(n)[choosing], best[choosing]] = False
    chosen = rows.gather(1, picks[:, :, None].expand(-1, -1, P))            # [n, theta_max, P]
    selected = torch.arange(picks.shape[1]) < theta[:, None]
    ordered = sort_padded(chosen, selected)
    median = (value_at(ordered, (theta - 1) // 2) + value_at(ordered, theta // 2)) / 2
    spread = torch.where(selected[:, :, None], (chosen - median.unsqueeze(1)).abs(),
                         torch.full((), float("inf"), dtype=rows.dtype))
    nearest = torch.sort(spread, dim=1, stable=True).indices[:, :int(beta.max())]
    values = chosen.gather(1, nearest)
    return sum_of_positions(list(values.unbind(1)), torch.zeros_like(beta), beta) / beta.double()[:, None]


# ------------------------------------------------------------------------- rules


@register("defenses", "krum")
class Krum(Defense):
    """Krum: keep the candidate whose nearest neighbours are closest.
    Blanchard, El Mhamdi, Guerraoui, Stainer 2017, "Machine learning with adversaries:
    Byzantine tolerant gradient descent", NeurIPS.

    Candidates: the own head and the ``k`` finite received heads (``n = k + 1``). Score
    ``s(i) = sum_{i -> j} ||x_i - x_j||^2`` over the ``n - f - 2`` candidates nearest to
    ``x_i`` (other than itself, the paper's ``i -> j``; :func:`fedsim.functional.krum_scores`);
    the merged head is the candidate with the lowest score (ties: the own head, then
    the lower index).

    Parameters
    ----------
    f : int >= 0, "auto" or float in [0, 1), default 1
        Byzantine neighbours tolerated: a count, ``"auto"`` (the peer's true number of
        Byzantine senders this round, an oracle upper bound, as the IOS authors'
        ``D_Krum`` uses ``graph.byzantine_sizes[node]``, ``ByrdLab/aggregation.py``) or
        a fraction of the heads received (see ``defenses.aggregation.neighbour_bound``).
    average_with_own : bool, default False
        Return ``(own + chosen) / 2`` instead of the chosen candidate.

    Notes
    -----
    Fallback: Krum needs ``n >= 2f + 3``; with fewer candidates ``f`` is lowered to
    ``max(0, (n - 3) // 2)``; with ``n = 2`` each score uses the single other
    candidate, so both tie and the own head is kept; with ``n = 1`` the own head.

    ``average_with_own=True`` is the decentralised variant the Bristle paper compares
    against (its reference implementation, jverbraeken/trustchain-superapp
    ``fedml/.../gar/Krum.kt`` line 51: ``newModel.addi(models[bestCandidate]).divi(2)``).

    The batched form scores every peer's candidates at once (batched ``torch.cdist``,
    the same distances) and returns the same candidate bit for bit.

    References
    ----------
    .. [1] P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine learning with
       adversaries: Byzantine tolerant gradient descent", NeurIPS 2017: Krum.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> Krum(f=2).aggregate(own, received)
    tensor([[1., 0., 0.],
            [0., 1., 0.]])
    """

    name = "krum"
    parameters = {"f": BOUND, "average_with_own": Boolean()}

    def __init__(self, f=1, average_with_own: bool = False):
        self.f = f
        self.average_with_own = bool(average_with_own)
        self.needs_context = bound_needs_context(f)

    check_run = staticmethod(f_at_most_neighbours)

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        f = resolve_bound(self.f, received.shape[0], ctx, "krum")
        chosen = rows[krum_ranking(rows, f)[0]].view_as(own).to(own.dtype)
        return (own + chosen) / 2 if self.average_with_own else chosen

    def aggregate_group(self, own, received, mask, ctxs=None):
        rows, candidates = group_candidates(own, received, mask)
        f = group_bounds(self.f, mask, ctxs, "krum")
        scores = group_krum_scores(group_squared_distances(rows), candidates,
                                   group_krum_counts(f, candidates.sum(dim=1)))
        chosen = group_rows(own, received, scores.argmin(dim=1)[:, None]).squeeze(1)
        return (own + chosen) / 2 if self.average_with_own else chosen


@register("defenses", "multi_krum")
class MultiKrum(Defense):
    """Multi-Krum: average the ``m`` candidates with the best Krum scores.
    Blanchard, El Mhamdi, Guerraoui, Stainer 2017, "Machine learning with adversaries:
    Byzantine tolerant gradient descent", NeurIPS.

    Scores as :class:`Krum` (``n - f - 2`` nearest, own head included as a candidate,
    same fallback for small ``n``); the merged head is the mean of the ``m`` candidates
    with the lowest scores.

    Parameters
    ----------
    f : int >= 0, "auto" or float in [0, 1), default 1
        Byzantine neighbours tolerated: a count, ``"auto"`` (the peer's true number of
        Byzantine senders this round, an oracle upper bound, as the IOS authors'
        ``D_Krum`` uses ``graph.byzantine_sizes[node]``, ``ByrdLab/aggregation.py``) or
        a fraction of the heads received (see ``defenses.aggregation.neighbour_bound``).
    m : int >= 1, default None
        How many candidates to average; ``None`` means ``n - f`` (at least 1).

    Notes
    -----
    A given ``m`` is lowered to ``n`` when fewer candidates arrived.

    The batched form averages the selected heads in ranking order: bit for bit the
    per-peer result on float32 heads, to about 1e-16 relative on float64 heads.

    References
    ----------
    .. [1] P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine learning with
       adversaries: Byzantine tolerant gradient descent", NeurIPS 2017: Multi-Krum.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> MultiKrum(f=2).aggregate(own, received)  # the 5 best: own and the honest heads
    tensor([[1., 0., 0.],
            [0., 1., 0.]])
    """

    name = "multi_krum"
    parameters = {"f": BOUND, "m": [None, Interval(int, 1, None)]}

    def __init__(self, f=1, m: Optional[int] = None):
        self.f, self.m = f, m
        self.needs_context = bound_needs_context(f)

    @staticmethod
    def check_run(args, facts):
        problems = bound_at_most_neighbours(args, facts, "f")
        limit = facts.most_neighbours
        if limit is not None and args["m"] is not None and args["m"] > limit + 1:
            problems.append(("m", f"must be at most {limit + 1}, the most candidates a peer has "
                                  f"(its own head and {limit} neighbours)"))
        return problems

    def selection_size(self, n: int, f: int) -> int:
        m = n - f if self.m is None else self.m
        return max(1, min(m, n))

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        f = resolve_bound(self.f, received.shape[0], ctx, "multi_krum")
        best = krum_ranking(rows, f)[:self.selection_size(rows.shape[0], f)]
        return rows[best].mean(dim=0).view_as(own).to(own.dtype)

    def aggregate_group(self, own, received, mask, ctxs=None):
        rows, candidates = group_candidates(own, received, mask)
        f = group_bounds(self.f, mask, ctxs, "multi_krum")
        n = candidates.sum(dim=1)
        scores = group_krum_scores(group_squared_distances(rows), candidates, group_krum_counts(f, n))
        size = (n - f if self.m is None else torch.full_like(n, self.m))
        size = torch.minimum(size, n).clamp(min=1)
        ranking = torch.sort(scores, dim=1, stable=True).indices[:, :int(size.max())]
        best = rows.gather(1, ranking[:, :, None].expand(-1, -1, rows.shape[2]))
        merged = sum_of_positions(list(best.unbind(1)), torch.zeros_like(size), size) / size.double()[:, None]
        return merged.view_as(own).to(own.dtype)


@register("defenses", "bulyan")
class Bulyan(Defense):
    """Bulyan: Krum picks a set, then a coordinate-wise trimmed mean around its median.
    El Mhamdi, Guerraoui, Rouault 2018, "The hidden vulnerability of distributed learning
    in Byzantium", ICML (with Krum as the selection rule).

    Candidates: the own head and the finite received heads (``n = k + 1``).
    ``theta = n - 2f`` heads are selected by Krum applied iteratively (each round on
    the candidates not yet selected); then per coordinate ``p`` the merged value is
    ``(1/beta) * sum_{x in M_p} x[p]`` where ``M_p`` are the ``beta = theta - 2f``
    selected values closest to their coordinate-wise median (median of an even count:
    mean of the two middle values, as in :class:`~defenses.aggregation.coordinate.CoordinateMedian`).

    Parameters
    ----------
    f : int >= 0, "auto" or float in [0, 1), default 1
        Byzantine neighbours tolerated: a count, ``"auto"`` (the peer's true number of
        Byzantine senders this round, an oracle upper bound, as the IOS authors'
        ``D_Krum`` uses ``graph.byzantine_sizes[node]``, ``ByrdLab/aggregation.py``) or
        a fraction of the heads received (see ``defenses.aggregation.neighbour_bound``).

    Notes
    -----
    Fallback: the paper requires ``n >= 4f + 3``; with fewer candidates ``theta`` and
    ``beta`` are clamped to at least 1 (each inner Krum uses its own small-``n``
    fallback), so the rule degrades towards a per-coordinate "nearest to the median of
    the Krum picks" instead of failing.

    The batched form (:func:`bulyan_group`) runs the ``theta`` Krum selections for every
    peer at once: bit for bit the per-peer result on float32 heads, to about 1e-16
    relative on float64 heads (the final mean adds in another order).

    References
    ----------
    .. [1] E. M. El Mhamdi, R. Guerraoui, S. Rouault, "The hidden vulnerability of
       distributed learning in Byzantium", ICML 2018.
    .. [2] P. Blanchard, E. M. El Mhamdi, R. Guerraoui, J. Stainer, "Machine learning with
       adversaries: Byzantine tolerant gradient descent", NeurIPS 2017: Krum, the selection rule.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> rounded(Bulyan(f=1).aggregate(own, received))  # n = 7 = 4f + 3
    tensor([[ 1.0000,  0.0000, -0.0300],
            [ 0.0000,  1.0000,  0.0000]])
    """

    name = "bulyan"
    parameters = {"f": BOUND}

    def __init__(self, f=1):
        self.f = f
        self.needs_context = bound_needs_context(f)

    check_run = staticmethod(f_at_most_neighbours)

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        f = resolve_bound(self.f, received.shape[0], ctx, "bulyan")
        return bulyan_aggregate(rows, f).view_as(own).to(own.dtype)

    def aggregate_group(self, own, received, mask, ctxs=None):
        rows, candidates = group_candidates(own, received, mask)
        merged = bulyan_group(rows, candidates, group_bounds(self.f, mask, ctxs, "bulyan"))
        return merged.view_as(own).to(own.dtype)
