"""Distance-score selection rules: Krum, Multi-Krum (Blanchard et al. 2017) and Bulyan
(El Mhamdi et al. 2018).

All three treat the peer's own head as one more candidate (first, so that exact ties
resolve towards it) and drop received heads holding NaN or inf before scoring.
"""
from __future__ import annotations

from typing import Optional

import torch

from defenses.base import Defense
from defenses.aggregation.common import candidates_with_own
from fedsim import functional as F
from defenses.aggregation.neighbour_bound import (BOUND, bound_at_most_neighbours, bound_needs_context,
                                                  resolve_bound, f_at_most_neighbours)
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
