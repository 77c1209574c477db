"""Pure tensor functions that attacks, defenses and the engine share (after
``torch.nn.functional``): no state, no random draws, no plugin objects.

Heads are compared as flat rows: a head ``[C, D+1]`` is one row of ``C * (D+1)``
numbers. Distances are computed in float64 (huge but finite float32 heads then give a
large distance, not inf) and each function says which dtype it returns.

================================  ==================================================
function                          job
================================  ==================================================
:func:`finite_rows`               which rows hold only finite values
:func:`drop_nonfinite`            the rows that hold only finite values
:func:`distances_to`              Euclidean distance of each row to one centre
:func:`pairwise_distances`        Euclidean distance of every pair of rows
:func:`pairwise_squared_distances`  the same, squared
:func:`nearest_sums`              each row's sum of its ``count`` smallest distances
:func:`krum_scores`               Krum's score of every row
:func:`cosine_similarity`         cosine of rows with rows (0 for a zero vector)
:func:`coordinate_median`         coordinate-wise median (even count: mean of the middle two)
:func:`trimmed_values`            per coordinate, the sorted values without the extremes
:func:`coordinate_trimmed_mean`   coordinate-wise trimmed mean
:func:`clip_rows`                 ``CLIP(z, tau) = z min(1, tau / ||z||)`` per row
:func:`adam_step`                 one Adam step (Kingma & Ba 2015)
:func:`migu_mask`                 MIGU's rows to update: output magnitude at least a quantile
================================  ==================================================

Examples
--------
>>> import torch
>>> from fedsim import functional as F
>>> rows = torch.tensor([[0.0, 0.0], [3.0, 4.0], [float("nan"), 1.0]])
>>> F.finite_rows(rows).tolist()
[True, True, False]
>>> F.distances_to(torch.zeros(2), F.drop_nonfinite(rows)).tolist()
[0.0, 5.0]
"""
from __future__ import annotations

import torch

__all__ = ["finite_rows", "drop_nonfinite", "distances_to", "pairwise_distances",
           "pairwise_squared_distances", "nearest_sums", "krum_scores", "cosine_similarity",
           "coordinate_median", "trimmed_values", "coordinate_trimmed_mean", "clip_rows", "adam_step",
           "migu_mask"]

EXACT = "donot_use_mm_for_euclid_dist"
# torch.cdist's own default: the matrix-product form above 25 rows (see pairwise_distances).
CDIST_DEFAULT = "use_mm_for_euclid_dist_if_necessary"


# ------------------------------------------------------------------ non-finite values
def finite_rows(x: torch.Tensor, batch_dims: int = 1) -> torch.Tensor:
    """Boolean ``x.shape[:batch_dims]``: True where the row (everything after the first
    ``batch_dims`` axes) holds no NaN and no inf.

    >>> finite_rows(torch.tensor([[1.0, 2.0], [float("inf"), 0.0]])).tolist()
    [True, False]
    """
    return torch.isfinite(x.flatten(batch_dims)).all(dim=batch_dims)


def drop_nonfinite(rows: torch.Tensor) -> torch.Tensor:
    """``rows [k, ...]`` without the rows holding NaN or inf: ``[k', ...]``.

    >>> drop_nonfinite(torch.tensor([[1.0], [float("nan")], [3.0]])).tolist()
    [[1.0], [3.0]]
    """
    if rows.shape[0] == 0:
        return rows
    return rows[finite_rows(rows)]


# ------------------------------------------------------------------------- distances
def distances_to(centre: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of each of ``rows [k, ...]`` (flattened) to ``centre``, which
    broadcasts against ``rows`` (one centre for all rows, or one per row): float64 ``[k]``.

    >>> distances_to(torch.zeros(2, 1), torch.tensor([[[3.0], [4.0]], [[0.0], [1.0]]])).tolist()
    [5.0, 1.0]
    """
    return (rows.double() - centre.double()).flatten(1).norm(dim=1)


def pairwise_distances(a: torch.Tensor, b: torch.Tensor | None = None,
                       compute_mode: str = EXACT) -> torch.Tensor:
    """Euclidean distances of every row of ``a [n, P]`` to every row of ``b [m, P]``
    (``b = a`` when omitted): float64 ``[n, m]``.

    ``compute_mode`` is :func:`torch.cdist`'s. The default (``EXACT``) computes from
    differences; ``CDIST_DEFAULT`` (cdist's own default) switches to the
    ``|a|^2 + |b|^2 - 2ab`` matrix product above 25 rows, which is faster but cancels
    badly for nearby rows; the Fang and Min-Max attacks were measured with it and keep
    it (up to 25 rows both modes give the same bits).

    >>> pairwise_distances(torch.tensor([[0.0, 0.0], [3.0, 4.0]])).tolist()
    [[0.0, 5.0], [5.0, 0.0]]
    """
    a = a.double()
    b = a if b is None else b.double()
    return torch.cdist(a, b, compute_mode=compute_mode)


def pairwise_squared_distances(a: torch.Tensor, b: torch.Tensor | None = None,
                               compute_mode: str = EXACT) -> torch.Tensor:
    """:func:`pairwise_distances` squared, float64 ``[n, m]``.

    >>> pairwise_squared_distances(torch.tensor([[0.0, 0.0], [3.0, 4.0]])).tolist()
    [[0.0, 25.0], [25.0, 0.0]]
    """
    d = pairwise_distances(a, b, compute_mode)
    return d * d


def nearest_sums(distances: torch.Tensor, count: int) -> torch.Tensor:
    """Row ``i`` of a square ``distances [n, n]``: the sum of its ``count`` smallest
    entries off the diagonal -> ``[n]`` (0 when ``count = 0``).

    >>> nearest_sums(torch.tensor([[0.0, 1.0, 5.0], [1.0, 0.0, 2.0], [5.0, 2.0, 0.0]]), 1).tolist()
    [1.0, 1.0, 2.0]
    """
    n = distances.shape[0]
    off_diagonal = distances.masked_fill(torch.eye(n, dtype=torch.bool), float("inf"))
    return off_diagonal.sort(dim=1).values[:, :count].sum(dim=1)


def krum_scores(rows: torch.Tensor, count: int, compute_mode: str = EXACT) -> torch.Tensor:
    """Krum's score of each of ``rows [n, P]`` (Blanchard et al. 2017): the sum of the
    squared distances to its ``count`` nearest other rows, float64 ``[n]``.

    >>> krum_scores(torch.tensor([[0.0], [1.0], [2.0], [10.0]]), 2).tolist()
    [5.0, 2.0, 5.0, 145.0]
    """
    return nearest_sums(pairwise_squared_distances(rows, compute_mode=compute_mode), count)


def cosine_similarity(x: torch.Tensor, y: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Cosine of each row of ``x [..., P]`` with each row of ``y [m, P]`` -> ``[..., m]``;
    a vector ``y [P]`` gives ``[...]`` (``x @ y`` as in :func:`torch.matmul`).

    ``<x, y> / max(||x|| ||y||, eps)``: 0 where either vector is zero. ``eps`` defaults
    to the dtype's smallest normal number (it then guards only zero vectors); the
    Inverting-Gradients matching loss uses ``1e-12``.

    >>> cosine_similarity(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]), torch.tensor([2.0, 0.0]))
    tensor([1.0000, 0.7071, 0.0000])
    """
    if eps is None:
        eps = torch.finfo(x.dtype).tiny
    if y.dim() == 1:
        return (x @ y) / (x.norm(dim=-1) * y.norm()).clamp(min=eps)
    norms = x.norm(dim=-1).unsqueeze(-1) * y.norm(dim=-1)
    return (x @ y.transpose(-1, -2)) / norms.clamp(min=eps)


# ---------------------------------------------------------------- coordinate-wise rules
def coordinate_median(rows: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median of ``rows [n, P]`` (n >= 1) -> ``[P]``.

    For even ``n`` the mean of the two middle values (Yin et al. 2018's definition;
    ``torch.median`` would return the lower one).

    >>> coordinate_median(torch.tensor([[1.0, 9.0], [2.0, 7.0], [4.0, 8.0], [100.0, 0.0]])).tolist()
    [3.0, 7.5]
    """
    ordered = rows.sort(dim=0).values
    n = rows.shape[0]
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def trimmed_values(rows: torch.Tensor, trim: int) -> torch.Tensor:
    """``rows [n, P]`` sorted per coordinate without the ``trim`` largest and ``trim``
    smallest values: ``[n - 2 trim, P]``.

    >>> trimmed_values(torch.tensor([[1.0], [5.0], [2.0], [9.0]]), 1).tolist()
    [[2.0], [5.0]]
    """
    n = rows.shape[0]
    return rows.sort(dim=0).values[trim:n - trim]


def coordinate_trimmed_mean(rows: torch.Tensor, trim: int) -> torch.Tensor:
    """Coordinate-wise mean of ``rows [n, P]`` after dropping the ``trim`` largest and
    the ``trim`` smallest values (Yin et al. 2018); requires ``n - 2 trim >= 1``.

    >>> coordinate_trimmed_mean(torch.tensor([[1.0], [5.0], [2.0], [9.0]]), 1).tolist()
    [3.5]
    """
    n = rows.shape[0]
    if not 0 <= 2 * trim < n:
        raise ValueError(f"cannot trim {trim} from each side of {n} values")
    return trimmed_values(rows, trim).mean(dim=0)


# -------------------------------------------------------------------------- clipping
def clip_rows(rows: torch.Tensor, tau) -> torch.Tensor:
    """``CLIP(z, tau) = z min(1, tau / ||z||)`` for each row ``z`` of ``rows [..., P]``;
    ``tau`` a number >= 0 or a tensor broadcasting against ``rows.shape[:-1]``.

    Only rows longer than ``tau`` are scaled, so ``tau = 0`` and zero rows never divide
    0 by 0, and the gradient is finite wherever ``tau > 0`` (the divisor is at least
    ``tau``).

    >>> clip_rows(torch.tensor([[3.0, 4.0], [0.3, 0.4]]), 1.0).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.30000001192092896, 0.4000000059604645]]
    """
    norms = rows.norm(dim=-1)
    tau = torch.as_tensor(tau, dtype=rows.dtype)
    scale = torch.where(norms > tau, tau / norms.clamp(min=tau), torch.ones((), dtype=rows.dtype))
    return rows * scale.unsqueeze(-1)


# ------------------------------------------------------------------------ optimisers
def adam_step(grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: int, lr: float,
              beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
              sqrt_floor: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Adam step (Kingma & Ba 2015, "Adam: a method for stochastic optimization",
    ICLR, Algorithm 1) -> ``(update, m, v)``; the caller does ``param -= update``.

    ``m <- beta1 m + (1 - beta1) g``, ``v <- beta2 v + (1 - beta2) g^2``,
    ``update = lr m_hat / (sqrt(v_hat) + eps)`` with the bias corrections
    ``m_hat = m / (1 - beta1^t)``, ``v_hat = v / (1 - beta2^t)``; ``step = t`` counts
    from 1 and ``m``, ``v`` start at zero; ``step`` may be an integer tensor ``[n]``, one
    count per leading row of ``grad`` (peers that have trained different numbers of steps). Out of place, so differentiable (the
    inversion attacks replay it). ``sqrt_floor`` is added to ``v_hat`` under the square
    root: ``sqrt`` has an infinite derivative at 0, and a replay differentiated through
    exactly-zero gradients passes ``1e-30`` (the forward value changes by < 1e-15).

    >>> update, m, v = adam_step(torch.tensor([2.0, -0.5]), torch.zeros(2), torch.zeros(2), 1, 0.1)
    >>> update.tolist()  # the first step moves every entry by lr * sign(g)
    [0.10000000149011612, -0.10000000149011612]
    """
    m = m.mul(beta1).add(grad, alpha=1 - beta1)
    v = v.mul(beta2).addcmul(grad, grad, value=1 - beta2)
    if torch.is_tensor(step):  # one step count per leading row, broadcast over the rest
        step = step.to(device=m.device, dtype=torch.float64).view(-1, *([1] * (grad.dim() - 1)))
        m_hat = m / (1 - beta1 ** step).to(m.dtype)
        v_hat = v / (1 - beta2 ** step).to(v.dtype)
    else:
        m_hat = m / (1 - beta1 ** step)
        v_hat = v / (1 - beta2 ** step)
    if sqrt_floor:
        v_hat = v_hat + sqrt_floor
    return lr * m_hat / (v_hat.sqrt() + eps), m, v


def migu_mask(outputs: torch.Tensor, quantile: float) -> torch.Tensor:
    """MIGU's update mask (Du et al. 2024, "Unlocking Continual Learning Abilities in
    Language Models", EMNLP Findings, Sec. 3): which output units of a linear layer a
    step may update. ``outputs [..., B, C]`` (the layer's outputs on a batch) -> boolean
    ``[..., C]``.

    Unit ``c``'s magnitude is ``|o_c|_1 = sum_b |o_bc|``, L1-normalised over the units,
    ``m_c = |o_c|_1 / sum_c' |o_c'|_1``; the mask is ``m_c >= quantile_q(m)`` (linear
    interpolation, ``torch.quantile``), so about a share ``1 - q`` of the units is
    updated. The normalisation is the paper's; the authors' code
    (wenyudu/MIGU src/uie_trainer_ft.py lines 445-451, src/accelerate_local.py lines
    21-29) thresholds the unnormalised sums, which selects the same units.

    >>> # sums |o_c|_1 = [1.5, 6, 1, 3], median 2.25
    >>> migu_mask(torch.tensor([[1.0, -4.0, 0.5, 2.0], [-0.5, 2.0, 0.5, 1.0]]), 0.5).tolist()
    [False, True, False, True]
    """
    magnitude = outputs.abs().sum(dim=-2)
    magnitude = magnitude / magnitude.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(magnitude.dtype).tiny)
    return magnitude >= torch.quantile(magnitude, quantile, dim=-1, keepdim=True)
