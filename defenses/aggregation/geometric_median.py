"""Geometric median by the smoothed Weiszfeld algorithm (RFA, Pillutla et al. 2022)."""
from __future__ import annotations

import torch

from defenses.base import Defense
from defenses.aggregation.common import candidates_with_own, group_candidates
from defenses.aggregation.coordinate import sort_padded, value_at
from fedsim import functional as F
from fedsim.params import Interval
from fedsim.registry import register


def geometric_median_objective(point: torch.Tensor, rows: torch.Tensor,
                               weights: torch.Tensor) -> torch.Tensor:
    """``g(v) = sum_i alpha_i ||v - x_i||`` for ``point [P]``, ``rows [n, P]``, ``weights [n]``."""
    return (weights * F.distances_to(point, rows)).sum()


def smoothed_weiszfeld(rows: torch.Tensor, weights: torch.Tensor, nu: float, max_iter: int,
                       tol: float) -> torch.Tensor:
    """Smoothed Weiszfeld iterations for the weighted geometric median -> ``[P]``.

    ``beta_i = alpha_i / max(nu, ||v - x_i||)``, ``v <- sum_i beta_i x_i / sum_i beta_i``,
    at most ``max_iter`` times, stopping early once ``|g(v_old) - g(v)| <= tol * g(v)``.
    Starts at the coordinate-wise median (see :class:`GeometricMedian` for why).
    """
    point = F.coordinate_median(rows)
    objective = geometric_median_objective(point, rows, weights)
    for _ in range(max_iter):
        betas = weights / F.distances_to(point, rows).clamp(min=nu)
        point = betas @ rows / betas.sum()
        previous, objective = objective, geometric_median_objective(point, rows, weights)
        if abs(previous - objective) <= tol * objective:
            break
    return point


def smoothed_weiszfeld_group(rows: torch.Tensor, weights: torch.Tensor, nu: float, max_iter: int,
                             tol: float) -> torch.Tensor:
    """:func:`smoothed_weiszfeld` for every peer of a group: ``rows [n, m, P]`` float64,
    ``weights [n, m]`` (0 for rows that are not candidates) -> ``[n, P]``.

    Every peer starts at the coordinate-wise median of its candidates and stops on its
    own criterion (a peer that has stopped keeps its point while the others iterate).
    The weighted sums are batched matrix products, so they may add in another order than
    the per-peer ``betas @ rows``: the results agree to about 1e-15 relative in float64
    (a peer whose stopping test falls within that of its threshold may stop one
    iteration apart).
    """
    candidates = weights > 0
    count = candidates.sum(dim=1)
    ordered = sort_padded(rows, candidates)
    point = (value_at(ordered, (count - 1) // 2) + value_at(ordered, count // 2)) / 2

    distances = (rows - point.unsqueeze(1)).norm(dim=2)    # [n, m], reused by the next step
    value = (weights * distances).sum(dim=1)
    running = torch.ones(rows.shape[0], dtype=torch.bool)
    for _ in range(max_iter):
        betas = weights / distances.clamp(min=nu)
        moved = torch.bmm(betas.unsqueeze(1), rows).squeeze(1) / betas.sum(dim=1, keepdim=True)
        point = torch.where(running[:, None], moved, point)
        distances = (rows - point.unsqueeze(1)).norm(dim=2)
        previous, value = value, torch.where(running, (weights * distances).sum(dim=1), value)
        running = running & ~((previous - value).abs() <= tol * value)
        if not bool(running.any()):
            break
    return point


@register("defenses", "geometric_median")
class GeometricMedian(Defense):
    """Geometric median (RFA) by the smoothed Weiszfeld algorithm.
    Pillutla, Kakade, Harchaoui 2022, "Robust aggregation for federated learning", IEEE
    Transactions on Signal Processing.

    ``argmin_v sum_i alpha_i ||v - x_i||`` over the own head and the finite received
    heads (own included as one more candidate; uniform ``alpha_i = 1/n``), computed by
    the smoothed Weiszfeld algorithm: ``beta_i = alpha_i / max(nu, ||v - x_i||)``,
    ``v <- sum_i beta_i x_i / sum_i beta_i``, at most ``max_iter`` iterations, stopping
    when the objective changes by at most ``tol`` times its value (the authors' code).

    Parameters
    ----------
    nu : float > 0, default 1e-5
        Smoothing: distances below ``nu`` count as ``nu`` (the authors' code).
    max_iter : int >= 0, default 4
        Most Weiszfeld iterations (the authors' code).
    tol : float >= 0, default 1e-6
        Stop when the objective changes by at most ``tol`` times its value (the
        authors' code).

    Notes
    -----
    Start point: the paper leaves ``v^(0)`` free and the authors' code starts at the
    mean, which one huge outlier drags arbitrarily far (Weiszfeld then gains only a
    factor of about ``n - 1`` per iteration, and the relative-objective stop fires
    long before it gets back). We start at the coordinate-wise median, which a
    minority of outliers cannot drag outside the honest range; each iteration is a
    majorize-minimize step, so the smoothed objective never increases from there. (A
    start that coincides with a candidate moves only by about ``nu`` per iteration;
    the result is then that robust start.)

    The batched form (:func:`smoothed_weiszfeld_group`) iterates every peer at once with
    batched matrix products: to about 1e-15 relative on float64 heads with the default
    ``max_iter`` and ``tol`` (bit for bit on float32 heads in the tests); with long runs
    and ``tol = 0`` a peer may stop one iteration apart, at the same objective value.

    References
    ----------
    .. [1] K. Pillutla, S. M. Kakade, Z. Harchaoui, "Robust aggregation for federated
       learning", IEEE Transactions on Signal Processing 70, 2022.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> rounded(GeometricMedian().aggregate(own, received))
    tensor([[1., 0., 0.],
            [0., 1., 0.]])
    """

    name = "geometric_median"
    parameters = {"nu": Interval(float, 0, None, closed="neither"), "max_iter": Interval(int, 0, None),
                  "tol": Interval(float, 0, None)}

    def __init__(self, nu: float = 1e-5, max_iter: int = 4, tol: float = 1e-6):
        self.nu, self.max_iter, self.tol = float(nu), max_iter, float(tol)

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        weights = torch.full((rows.shape[0],), 1.0 / rows.shape[0], dtype=rows.dtype)
        merged = smoothed_weiszfeld(rows, weights, self.nu, self.max_iter, self.tol)
        return merged.view_as(own).to(own.dtype)

    def aggregate_group(self, own, received, mask, ctxs=None):
        rows, candidates = group_candidates(own, received, mask)
        weights = candidates.double() / candidates.sum(dim=1, keepdim=True).double()
        merged = smoothed_weiszfeld_group(rows, weights, self.nu, self.max_iter, self.tol)
        return merged.view_as(own).to(own.dtype)
