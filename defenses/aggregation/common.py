"""Helpers shared by the robust aggregation rules (median, Krum, clipping, ...).

Candidates are handled as flat float64 rows ``[n, P]`` (``P = C * (D+1)``): float64
keeps squared distances and sums of huge but finite heads (up to float32's max)
finite, and results are cast back to the own head's dtype.
"""
from __future__ import annotations

import torch

from defenses.base import finite_rows


def finite_received(received: torch.Tensor) -> torch.Tensor:
    """The received heads without those holding NaN or inf: ``[k, C, P] -> [k', C, P]``."""
    if received.shape[0] == 0:
        return received
    return received[finite_rows(received)]


def candidates_with_own(own: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
    """Flat float64 rows ``[1 + k', C*P]``: the own head first, then the finite received heads.

    The own head comes first so that ties (equal scores, equal distances) resolve
    towards it.
    """
    rows = torch.cat([own.unsqueeze(0), finite_received(received)], dim=0)
    return rows.flatten(1).double()


def group_valid(received: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[n, k]``: real (mask) and finite received rows of a padded group."""
    finite = torch.isfinite(received.flatten(2)).all(dim=2)
    return mask.bool() & finite


def zero_invalid(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``values [n, k, ...]`` with rows where ``valid [n, k]`` is False replaced by 0."""
    shape = valid.shape + (1,) * (values.dim() - valid.dim())
    return torch.where(valid.view(shape), values, torch.zeros((), dtype=values.dtype))


def check_count(name: str, value, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum`` (bools rejected), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_positive(name: str, value) -> float:
    """``value`` as a finite float > 0, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or value == float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
