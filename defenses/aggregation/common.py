"""Helpers shared by the robust aggregation rules (median, Krum, clipping, ...).

Candidates are handled as flat float64 rows ``[n, P]`` (``P = C * (D+1)``): float64
keeps squared distances and sums of huge but finite heads (up to float32's max)
finite, and results are cast back to the own head's dtype.
"""
from __future__ import annotations

import torch

from fedsim import functional as F


def candidates_with_own(own: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
    """Flat float64 rows ``[1 + k', C*P]``: the own head first, then the finite received heads.

    The own head comes first so that ties (equal scores, equal distances) resolve
    towards it.
    """
    rows = torch.cat([own.unsqueeze(0), F.drop_nonfinite(received)], dim=0)
    return rows.flatten(1).double()


def group_valid(received: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[n, k]``: real (mask) and finite received rows of a padded group."""
    return mask.bool() & F.finite_rows(received, batch_dims=2)


def zero_invalid(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``values [n, k, ...]`` with rows where ``valid [n, k]`` is False replaced by 0."""
    shape = valid.shape + (1,) * (values.dim() - valid.dim())
    return torch.where(valid.view(shape), values, torch.zeros((), dtype=values.dtype))

