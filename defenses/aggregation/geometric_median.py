"""Geometric median by the smoothed Weiszfeld algorithm (RFA, Pillutla et al. 2022)."""
from __future__ import annotations

import torch

from defenses.base import Defense
from defenses.aggregation.common import candidates_with_own, check_count, check_positive
from defenses.aggregation.coordinate import coordinate_median
from fedsim.registry import register


def geometric_median_objective(point: torch.Tensor, rows: torch.Tensor,
                               weights: torch.Tensor) -> torch.Tensor:
    """``g(v) = sum_i alpha_i ||v - x_i||`` for ``point [P]``, ``rows [n, P]``, ``weights [n]``."""
    return (weights * (rows - point).norm(dim=1)).sum()


def smoothed_weiszfeld(rows: torch.Tensor, weights: torch.Tensor, nu: float, max_iter: int,
                       tol: float) -> torch.Tensor:
    """Smoothed Weiszfeld iterations for the weighted geometric median -> ``[P]``.

    ``beta_i = alpha_i / max(nu, ||v - x_i||)``, ``v <- sum_i beta_i x_i / sum_i beta_i``,
    at most ``max_iter`` times, stopping early once ``|g(v_old) - g(v)| <= tol * g(v)``.
    Starts at the coordinate-wise median (see :class:`GeometricMedian` for why).
    """
    point = coordinate_median(rows)
    objective = geometric_median_objective(point, rows, weights)
    for _ in range(max_iter):
        betas = weights / (rows - point).norm(dim=1).clamp(min=nu)
        point = betas @ rows / betas.sum()
        previous, objective = objective, geometric_median_objective(point, rows, weights)
        if abs(previous - objective) <= tol * objective:
            break
    return point


@register("defenses", "geometric_median")
class GeometricMedian(Defense):
    """Geometric median, RFA (Pillutla, Kakade, Harchaoui 2022, "Robust aggregation for
    federated learning", IEEE Transactions on Signal Processing).

    ``argmin_v sum_i alpha_i ||v - x_i||`` over the own head and the finite received
    heads (own included as one more candidate; uniform ``alpha_i = 1/n``), computed by
    the smoothed Weiszfeld algorithm: ``beta_i = alpha_i / max(nu, ||v - x_i||)``,
    ``v <- sum_i beta_i x_i / sum_i beta_i``, at most ``max_iter`` iterations, stopping
    when the objective changes by at most ``tol`` times its value (the authors' code).

    Start point: the paper leaves ``v^(0)`` free and the authors' code starts at the
    mean, which one huge outlier drags arbitrarily far (Weiszfeld then gains only a
    factor of about ``n - 1`` per iteration, and the relative-objective stop fires
    long before it gets back). We start at the coordinate-wise median, which a
    minority of outliers cannot drag outside the honest range; each iteration is a
    majorize-minimize step, so the smoothed objective never increases from there. (A
    start that coincides with a candidate moves only by about ``nu`` per iteration;
    the result is then that robust start.)

    Defaults (the authors' code): ``nu = 1e-5``, ``max_iter = 4``, ``tol = 1e-6``.
    """

    name = "geometric_median"

    def __init__(self, nu: float = 1e-5, max_iter: int = 4, tol: float = 1e-6):
        self.nu = check_positive("nu", nu)
        self.max_iter = check_count("max_iter", max_iter)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < float("inf"):
            raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
        self.tol = float(tol)

    def aggregate(self, own, received, ctx=None):
        rows = candidates_with_own(own, received)
        weights = torch.full((rows.shape[0],), 1.0 / rows.shape[0], dtype=rows.dtype)
        merged = smoothed_weiszfeld(rows, weights, self.nu, self.max_iter, self.tol)
        return merged.view_as(own).to(own.dtype)
