"""Distance-score selection rules: Krum, Multi-Krum (Blanchard et al. 2017) and Bulyan
(El Mhamdi et al. 2018).

All three treat the peer's own head as one more candidate (first, so that exact ties
resolve towards it) and drop received heads holding NaN or inf before scoring.
"""
from __future__ import annotations

from typing import Optional

import torch

from defenses.base import Defense
from defenses.aggregation.common import candidates_with_own, check_count
from defenses.aggregation.coordinate import coordinate_median
from fedsim.registry import register

# ----------------------------------------------------------------- pure functions


def squared_distances(rows: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances of ``rows [n, P]`` -> ``[n, n]``.

    Computed from differences (not the ``|a|^2 + |b|^2 - 2ab`` expansion, which cancels
    badly for nearby heads).
    """
    d = torch.cdist(rows.unsqueeze(0), rows.unsqueeze(0),
                    compute_mode="donot_use_mm_for_euclid_dist").squeeze(0)
    return d * d


def krum_tolerance(f: int, n: int) -> int:
    """``f`` lowered so that Krum's condition ``n >= 2f + 3`` holds (0 when ``n < 3``)."""
    return max(0, min(f, (n - 3) // 2))


def krum_neighbour_count(f: int, n: int) -> int:
    """How many nearest candidates a score sums over: ``n - f - 2`` with ``f`` lowered
    by :func:`krum_tolerance`; at least 1 when ``n >= 2``, 0 when ``n == 1``."""
    return min(n - 1, max(1, n - krum_tolerance(f, n) - 2))


def krum_scores(rows: torch.Tensor, f: int) -> torch.Tensor:
    """Krum score of each of ``rows [n, P]``: the sum of squared distances to its
    ``n - f - 2`` nearest other rows (see :func:`krum_neighbour_count`) -> ``[n]``."""
    n = rows.shape[0]
    if n == 1:
        return torch.zeros(1, dtype=rows.dtype)
    d2 = squared_distances(rows)
    d2.fill_diagonal_(float("inf"))
    nearest = d2.sort(dim=1).values[:, :krum_neighbour_count(f, n)]
    return nearest.sum(dim=1)


def krum_ranking(rows: torch.Tensor, f: int) -> torch.Tensor:
    """Candidate indices from best (lowest score) to worst; ties keep index order."""
    return torch.sort(krum_scores(rows, f), stable=True).indices


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
    spread = (chosen - coordinate_median(chosen)).abs()
    nearest = torch.sort(spread, dim=0, stable=True).indices[:beta]
    return chosen.gather(0, nearest).mean(dim=0)


# ------------------------------------------------------------------------- rules


@register("defenses", "krum")
class Krum(Defense):
    """Krum (Blanchard, El Mhamdi, Guerraoui, Stainer 2017, "Machine learning with
    adversaries: Byzantine tolerant gradient descent", NeurIPS).

    Candidates: the own head and the ``k`` finite received heads (``n = k + 1``). Score
    ``s(i) = sum_{i -> j} ||x_i - x_j||^2`` over the ``n - f - 2`` candidates nearest to
    ``x_i`` (other than itself, the paper's ``i -> j``); the merged head is the
    candidate with the lowest score (ties: the own head, then the lower index).

    Fallback: Krum needs ``n >= 2f + 3``; with fewer candidates ``f`` is lowered to
    ``max(0, (n - 3) // 2)``; with ``n = 2`` each score uses the single other
    candidate, so both tie and the own head is kept; with ``n = 1`` the own head.

    Arguments: ``f`` (Byzantine neighbours tolerated), default 1.
    """

    name = "krum"

    def __init__(self, f: int = 1):
        self.f = check_count("f", f)

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        return rows[krum_ranking(rows, self.f)[0]].view_as(own).to(own.dtype)


@register("defenses", "multi_krum")
class MultiKrum(Defense):
    """Multi-Krum (Blanchard, El Mhamdi, Guerraoui, Stainer 2017, "Machine learning with
    adversaries: Byzantine tolerant gradient descent", NeurIPS).

    Scores as :class:`Krum` (``n - f - 2`` nearest, own head included as a candidate,
    same fallback for small ``n``); the merged head is the mean of the ``m`` candidates
    with the lowest scores. Default ``m = n - f`` (at least 1); a given ``m`` is
    lowered to ``n`` when fewer candidates arrived.

    Arguments: ``f`` (default 1), ``m`` (default ``None`` = ``n - f``).
    """

    name = "multi_krum"

    def __init__(self, f: int = 1, m: Optional[int] = None):
        self.f = check_count("f", f)
        self.m = None if m is None else check_count("m", m, minimum=1)

    def selection_size(self, n: int) -> int:
        m = n - self.f if self.m is None else self.m
        return max(1, min(m, n))

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        best = krum_ranking(rows, self.f)[:self.selection_size(rows.shape[0])]
        return rows[best].mean(dim=0).view_as(own).to(own.dtype)


@register("defenses", "bulyan")
class Bulyan(Defense):
    """Bulyan (El Mhamdi, Guerraoui, Rouault 2018, "The hidden vulnerability of
    distributed learning in Byzantium", ICML), with Krum as the selection rule.

    Candidates: the own head and the finite received heads (``n = k + 1``).
    ``theta = n - 2f`` heads are selected by Krum applied iteratively (each round on
    the candidates not yet selected); then per coordinate ``p`` the merged value is
    ``(1/beta) * sum_{x in M_p} x[p]`` where ``M_p`` are the ``beta = theta - 2f``
    selected values closest to their coordinate-wise median (median of an even count:
    mean of the two middle values, as in :class:`~defenses.aggregation.coordinate.CoordinateMedian`).

    Fallback: the paper requires ``n >= 4f + 3``; with fewer candidates ``theta`` and
    ``beta`` are clamped to at least 1 (each inner Krum uses its own small-``n``
    fallback), so the rule degrades towards a per-coordinate "nearest to the median of
    the Krum picks" instead of failing.

    Arguments: ``f`` (Byzantine neighbours tolerated), default 1.
    """

    name = "bulyan"

    def __init__(self, f: int = 1):
        self.f = check_count("f", f)

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        return bulyan_aggregate(rows, self.f).view_as(own).to(own.dtype)
