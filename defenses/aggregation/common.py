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


def group_candidates(own: torch.Tensor, received: torch.Tensor,
                     mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batched :func:`candidates_with_own` of a padded group: flat float64 rows
    ``[n, 1 + k, C*P]`` (the own head first, rows that are padding or not finite zeroed)
    and which of them are candidates ``[n, 1 + k]`` (the own head always)."""
    valid = group_valid(received, mask)
    n, k = valid.shape
    rows = torch.empty(n, 1 + k, own[0].numel(), dtype=torch.float64)   # one copy, no temporaries
    rows[:, 0] = own.flatten(1)
    rows[:, 1:] = received.flatten(2)
    rows[:, 1:].masked_fill_(~valid.unsqueeze(-1), 0.0)
    return rows, torch.cat([torch.ones(n, 1, dtype=torch.bool), valid], dim=1)


def group_valid(received: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[n, k]``: real (mask) and finite received rows of a padded group.

    A row is finite when the sum of its entries times 0 is 0 (``inf * 0`` and NaN give
    NaN), the same as :func:`fedsim.functional.finite_rows` without its full-size
    boolean temporary (several times faster on a group).
    """
    return mask.bool() & ((received.flatten(2) * 0).sum(dim=2) == 0)


def zero_invalid(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``values [n, k, ...]`` with rows where ``valid [n, k]`` is False replaced by 0."""
    shape = valid.shape + (1,) * (values.dim() - valid.dim())
    return torch.where(valid.view(shape), values, torch.zeros((), dtype=values.dtype))

