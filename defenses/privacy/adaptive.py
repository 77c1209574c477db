"""Layer-adaptive compression of a head update: a fractional bit budget shared among
the head's rows (one row per class) by the distortion each row would suffer.

The pure math (:func:`quantization_distortion`, :func:`allocate_budget`,
:func:`encoded_bits`) is separate from the rule (:class:`AdaptiveQuantization`) so that
tests and studies can call it directly.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from defenses.privacy.transforms import _check_delta, _check_numel, _draw, stochastic_quantize
from fedsim.api import PrivacyDefense
from fedsim.params import Interval
from fedsim.registry import register

__all__ = ["AdaptiveQuantization", "quantization_distortion", "allocate_budget", "encoded_bits",
           "HEADER_BITS_PER_ROW", "SCALE_BITS"]

HEADER_BITS_PER_ROW = 8   # one byte per row: its bit width, 0..16
SCALE_BITS = 32           # a sent row's scale, float32


# ----------------------------------------------------------------------------- pure math
def quantization_distortion(rows: torch.Tensor, bits: int) -> torch.Tensor:
    """``[C]`` expected squared error ``E ||Q_b(v_c) - v_c||^2`` of each row under QSGD
    stochastic quantization with ``b = bits`` bits and the row's own scale
    ``s_c = max_i |v_ci|`` (:func:`defenses.privacy.transforms.stochastic_quantize`).

    With ``L = 2^(b-1) - 1`` levels, ``|v| L / s = l + p`` rounds up with probability ``p``,
    so each entry's error has variance ``(s / L)^2 p (1 - p)`` and
    ``D_c(b) = (s_c / L)^2 sum_i p_i (1 - p_i)``. ``bits = 0`` means the row is not sent:
    ``D_c(0) = ||v_c||^2``. Computed in float64.
    """
    rows = rows.detach().to(torch.float64)
    if bits == 0:
        return (rows ** 2).sum(dim=1)
    levels = 2 ** (bits - 1) - 1
    scale = rows.abs().amax(dim=1, keepdim=True)
    magnitude = torch.where(scale > 0, rows.abs() / scale.clamp_min(torch.finfo(torch.float64).tiny) * levels,
                            torch.zeros_like(rows))
    fraction = magnitude - torch.floor(magnitude)
    return ((scale / levels) ** 2 * fraction * (1 - fraction)).sum(dim=1)


def allocate_budget(distortion: np.ndarray, cost: np.ndarray, budget: int) -> np.ndarray:
    """``[C]`` the option chosen for each row that minimises ``sum_c distortion[c, k_c]``
    subject to ``sum_c cost[c, k_c] <= budget``, by dynamic programming over the budget
    (Xu et al. 2023 solve their layer-wise allocation the same way).

    ``distortion`` and ``cost`` are ``[C, K]`` (option ``k`` of row ``c``); costs are
    non-negative integers and some option of every row must cost 0 (else no allocation
    may fit). ``f_c(beta) = min_k f_(c-1)(beta - cost[c, k]) + distortion[c, k]`` with
    ``f_(-1) = 0``, then back-tracking from ``f_(C-1)(budget)``. Ties go to the lower
    option index (the cheaper one where options are ordered by cost). The optimum is
    exact: ``O(C K budget)`` time.
    """
    distortion = np.asarray(distortion, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.int64)
    n_rows, n_options = distortion.shape
    if cost.shape != distortion.shape or (cost < 0).any() or not (cost == 0).any(axis=1).all():
        raise ValueError("cost must be non-negative, shaped like distortion, with a free option in every row")
    budget = max(int(budget), 0)
    best = np.zeros(budget + 1)                       # f_(-1): nothing to allocate yet
    choice = np.zeros((n_rows, budget + 1), dtype=np.int64)
    for c in range(n_rows):
        candidates = np.full((n_options, budget + 1), np.inf)
        for k in range(n_options):
            price = cost[c, k]
            if price <= budget:
                candidates[k, price:] = best[:budget + 1 - price] + distortion[c, k]
        choice[c] = np.argmin(candidates, axis=0)      # first minimum: the lower option
        best = candidates[choice[c], np.arange(budget + 1)]
    picked = np.zeros(n_rows, dtype=np.int64)
    remaining = budget
    for c in range(n_rows - 1, -1, -1):
        picked[c] = choice[c, remaining]
        remaining -= cost[c, picked[c]]
    return picked


def encoded_bits(widths, row_length: int) -> int:
    """Bits of the encoding :class:`AdaptiveQuantization` sends: a one-byte width per row,
    then for every sent row (width ``b > 0``) its float32 scale and ``row_length`` codes
    of ``b`` bits (one sign bit, ``b - 1`` level bits)."""
    widths = [int(b) for b in widths]
    return HEADER_BITS_PER_ROW * len(widths) + sum(SCALE_BITS + b * row_length for b in widths if b > 0)


# ----------------------------------------------------------------------------- the rule
@register("privacy_defenses", "adaptive_quantize")
class AdaptiveQuantization(PrivacyDefense):
    """Layer-adaptive mixed-precision quantization: each row of the head update (one per
    class) gets its own bit width, 0 (not sent) or 2..``max_bits``, chosen to minimise
    the total expected distortion within a fractional average of ``bits`` bits per entry.
    Xu, Wang, Geng, Wu, Li, Lin 2023, "Efficient joint optimization of layer-adaptive
    weight pruning in deep neural networks", ICCV (the allocation: distortion per layer,
    additive over layers, minimised under a budget by dynamic programming), with our rows
    as their layers and QSGD's stochastic quantizer (Alistarh et al. 2017) as the
    compressor, so that pruning a row is its 0-bit width.

    ::

        minimise   sum_c D_c(b_c)   over b_c in {0, 2, 3, ..., max_bits}
        subject to 8 C + sum_(c: b_c > 0) (32 + b_c P)  <=  8 ceil(bits C P / 8)
        D_c(0) = ||v_c||^2,   D_c(b) = (s_c / L_b)^2 sum_i p_ci (1 - p_ci)   (quantization_distortion)
        T(delta)_c = Q_(b_c)(v_c) (QSGD with the row's scale s_c = max |v_c|),  0 where b_c = 0

    The left side is the encoding (:func:`encoded_bits`): a one-byte width per row, then a
    float32 scale and ``P = D + 1`` codes of ``b_c`` bits for each sent row. The message
    is a frame of ``ceil(bits C P / 8)`` bytes, the number :meth:`bytes_per_message`
    counts, so ``bits`` is the average bit width on the wire, overhead included.

    Parameters
    ----------
    bits : float in (0, 16], default 2.0
        Average bits per entry of the frame (fractional: 0.5 sends at most about a quarter
        of the rows at 2 bits).
    max_bits : int in 2..16, default 8
        The widest width a row may get.

    Notes
    -----
    The allocation follows the authors' code (github.com/Akimoto-Cris/RD_PRUNE at
    commit 5bf7b7e, ``tools/algo.py``: ``dp_pruning``, line 205, a dynamic programme over
    the surviving-weight budget with each layer's rate-distortion curve sampled at discrete
    pruning amounts; ``get_mask``, line 77, magnitude pruning inside a layer); here the
    budget is in bits and a row's options are its bit widths. Xu et al. measure a layer's
    distortion at the network's *output* (on calibration data); a sender-side
    transform sees only the update, so the distortion here is the update's squared
    error (the head is linear: with whitened features the two are equal). Under that
    squared error, spreading a *sparsity* budget across rows reproduces global top-k
    exactly (dropping the globally smallest entries minimises the sum of the dropped
    squares), which the ``topk`` rule already is; the budget is therefore spent on
    precision here, and sparsity enters at row granularity (width 0). A frame too small
    for the header (``bits C P < 8 C``) sends every row as zero. Stochastic rounding
    draws one uniform per entry from ``rng`` (every entry, so the draws do not depend
    on the allocation); a sent row is unbiased, a dropped row is zero. Non-finite
    updates are sent unchanged (no finite scale; receivers count them). The rounding
    passes gradients straight through on sent rows, as ``quantize`` does.

    References
    ----------
    .. [1] K. Xu, Z. Wang, X. Geng, M. Wu, X. Li, W. Lin, "Efficient joint optimization of
       layer-adaptive weight pruning in deep neural networks", ICCV 2023.
    .. [2] D. Alistarh, D. Grubic, J. Li, R. Tomioka, M. Vojnovic, "QSGD:
       communication-efficient SGD via gradient quantization and encoding", NeurIPS 2017.

    Examples
    --------
    >>> from fedsim.examples import example_heads
    >>> delta = example_heads()[1][0]  # honest neighbour 1's update [[1.1, 0, 0.1], [0, 0.9, 0]]
    >>> rule = AdaptiveQuantization(bits=9.0)  # a 7-byte frame: 16 header bits, 40 left: one row at 2 bits
    >>> rule.widths(delta), rule.bytes_per_message(delta.numel())  # row 0 loses more if dropped (1.22 > 0.81)
    ([2, 0], 7)
    >>> rule.apply(delta, torch.Generator().manual_seed(0))  # row 0: 0 or +-1.1; row 1 dropped
    tensor([[1.1000, 0.0000, 0.0000],
            [0.0000, 0.0000, 0.0000]])
    """

    name = "adaptive_quantize"
    parameters = {"bits": Interval(float, 0, 16, closed="right"), "max_bits": Interval(int, 2, 16)}

    def __init__(self, bits: float = 2.0, max_bits: int = 8):
        self.bits, self.max_bits = float(bits), int(max_bits)

    @property
    def options(self) -> list[int]:
        """The widths a row may get: 0 (not sent) and 2..max_bits."""
        return [0] + list(range(2, self.max_bits + 1))

    def widths(self, delta: torch.Tensor) -> list[int]:
        """Each row's bit width for this update (the allocation of the class docstring)."""
        n_rows, row_length = delta.shape
        options = self.options
        distortion = torch.stack([quantization_distortion(delta, b) for b in options], dim=1).numpy()
        cost = np.array([[0 if b == 0 else SCALE_BITS + b * row_length for b in options]] * n_rows)
        budget = 8 * self.bytes_per_message(delta.numel()) - HEADER_BITS_PER_ROW * n_rows
        if budget < 0:
            return [0] * n_rows
        return [options[k] for k in allocate_budget(distortion, cost, budget)]

    def apply(self, delta, rng):
        _check_delta(delta)
        if delta.dim() != 2:
            raise ValueError(f"delta must be a [C, D+1] head update; got shape {tuple(delta.shape)}")
        if delta.numel() == 0 or not bool(torch.isfinite(delta).all()):
            return delta.detach().clone()
        uniform = _draw(rng, delta, "rand")
        sent = torch.zeros_like(delta.detach())
        widths = self.widths(delta)
        for c, b in enumerate(widths):
            if b > 0:
                sent[c] = stochastic_quantize(delta[c], 2 ** (b - 1) - 1, uniform[c])
        if delta.requires_grad:
            # Straight-through on sent rows; dropped rows are a constant zero.
            kept = torch.tensor([b > 0 for b in widths], dtype=delta.dtype, device=delta.device)[:, None]
            return sent + (delta - delta.detach()) * kept
        return sent

    def replay(self, rng):
        """The expectation over the rounding: sent rows unchanged, dropped rows zero."""
        def expectation(delta: torch.Tensor) -> torch.Tensor:
            kept = [b > 0 for b in self.widths(delta.detach())]
            return delta * torch.tensor(kept, dtype=delta.dtype, device=delta.device)[:, None]
        return expectation

    def bytes_per_message(self, numel):
        return math.ceil(self.bits * _check_numel(numel) / 8)

    def describe(self):
        return {"name": self.name, "bits": self.bits, "max_bits": self.max_bits}
