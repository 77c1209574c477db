"""Min-Max and Min-Sum (Shejwalkar & Houmansadr 2021)."""
from __future__ import annotations

import torch

from attacks.base import Attack, send_to_all
from attacks.byzantine._reference import honest_updates, reference_head
from fedsim import functional as F
from fedsim.params import Interval, Options
from fedsim.registry import register

PERTURBATIONS = ("unit_vec", "sign", "std")


def perturbation(updates: torch.Tensor, kind: str) -> torch.Tensor:
    """The paper's perturbation vectors ``p`` over ``updates [h, P]``, ``mu`` their mean:
    ``unit_vec``: ``-mu / ||mu||``; ``sign``: ``-sign(mu)``; ``std``: ``-std(updates)``
    (sample std, zero for one update). A zero ``mu`` gives a zero ``unit_vec``."""
    mean = updates.mean(dim=0)
    if kind == "unit_vec":
        norm = mean.norm()
        return -mean / norm if norm > 0 else torch.zeros_like(mean)
    if kind == "sign":
        return -torch.sign(mean)
    if kind == "std":
        if updates.shape[0] < 2:
            return torch.zeros_like(mean)
        return -updates.std(dim=0, correction=1)
    raise ValueError(f"perturbation must be one of {', '.join(PERTURBATIONS)}, not {kind!r}")


def halving_search(feasible, gamma_init: float, tolerance: float, max_steps: int = 200) -> float:
    """The paper's search for the largest feasible ``gamma`` (its Algorithm 1):

    start at ``gamma_init`` with step ``gamma_init``; on success remember gamma and move
    up by step/2, else down by step/2; halve the step; stop when the last success and
    the current gamma differ by at most ``tolerance``. Returns the last feasible gamma
    (0 if none was), so the result never exceeds ``2 * gamma_init``.
    """
    gamma, step, best = float(gamma_init), float(gamma_init), 0.0
    for _ in range(max_steps):
        if abs(best - gamma) <= tolerance:
            break
        if feasible(gamma):
            best = gamma
            gamma += step / 2
        else:
            gamma -= step / 2
        step /= 2
    return best


def _squared_distances(points: torch.Tensor, others: torch.Tensor | None = None) -> torch.Tensor:
    return F.pairwise_squared_distances(points, others, compute_mode=F.CDIST_DEFAULT)


def largest_feasible(updates: torch.Tensor, kind: str, within_bound, gamma_init: float,
                     tolerance: float) -> tuple[torch.Tensor, float]:
    """``(mu + gamma p, gamma)`` with the largest gamma (by :func:`halving_search`) for
    which ``within_bound`` holds for the squared distances ``[1, h]`` of ``mu + gamma p``
    to ``updates [h, P]``."""
    mean, p = updates.mean(dim=0), perturbation(updates, kind)

    def feasible(gamma):
        return within_bound(_squared_distances((mean + gamma * p).unsqueeze(0), updates))

    gamma = halving_search(feasible, gamma_init, tolerance)
    return mean + gamma * p, gamma


def min_max_update(updates: torch.Tensor, kind: str, gamma_init: float = 10.0,
                   tolerance: float = 1e-5) -> tuple[torch.Tensor, float]:
    """Min-Max: ``(mu + gamma p, gamma)`` with the largest gamma such that
    ``max_i ||m - u_i||^2 <= max_{i,j} ||u_i - u_j||^2``; ``updates [h, P]``."""
    bound = _squared_distances(updates).max().item()
    return largest_feasible(updates, kind, lambda d2: d2.max().item() <= bound, gamma_init, tolerance)


def min_sum_update(updates: torch.Tensor, kind: str, gamma_init: float = 10.0,
                   tolerance: float = 1e-5) -> tuple[torch.Tensor, float]:
    """Min-Sum: ``(mu + gamma p, gamma)`` with the largest gamma such that
    ``sum_i ||m - u_i||^2 <= max_i sum_j ||u_i - u_j||^2`` (the paper's bound; the
    authors' code compares with the *min* over i instead)."""
    bound = _squared_distances(updates).sum(dim=1).max().item()
    return largest_feasible(updates, kind, lambda d2: d2.sum().item() <= bound, gamma_init, tolerance)


class _DistanceBoundedAttack(Attack):
    _solve = None

    parameters = {"perturbation": Options(*PERTURBATIONS), "gamma_init": Interval(float, 0, None, closed="neither"),
                  "tolerance": Interval(float, 0, None, closed="neither")}

    def __init__(self, perturbation: str = "std", gamma_init: float = 10.0, tolerance: float = 1e-5):
        self.perturbation, self.gamma_init, self.tolerance = perturbation, float(gamma_init), float(tolerance)

    def craft(self, view):
        per_sender = {}
        for s in view.byzantine_ids:
            updates = honest_updates(view, s)
            malicious, _ = type(self)._solve(updates.flatten(1), self.perturbation,
                                             self.gamma_init, self.tolerance)
            per_sender[s] = reference_head(view, s) + malicious.reshape(updates.shape[1:]).to(updates.dtype)
        return send_to_all(view, per_sender)


_DOC = """{title}: the farthest step along ``p`` whose distances to the honest updates stay {typical}.
    Shejwalkar & Houmansadr 2021, "Manipulating the Byzantine: optimizing model poisoning
    attacks and defenses for federated learning", NDSS (AGR-agnostic attack).

    With honest updates ``u_i`` (observed heads minus the sender's head at the start of
    the round), ``mu`` their mean and ``p`` a perturbation, every Byzantine peer sends
    ``reference + mu + gamma p`` with the largest gamma for which
    {constraint} (:func:`{solver}`).

    Parameters
    ----------
    perturbation : {{"unit_vec", "sign", "std"}}, default "std"
        ``p``: ``-mu / ||mu||``, ``-sign(mu)`` or ``-std(u)``.
    gamma_init : float > 0, default 10
        The search's first gamma (as in the authors' code).
    tolerance : float > 0, default 1e-5
        The search stops when gamma moves by at most this (as in the authors' code).

    Notes
    -----
    ``perturbation="std"`` is the inverse standard deviation, which the paper reports as
    the most effective perturbation for these attacks; its released code's function
    default is ``unit_vec``. gamma is found by the paper's halving search
    (:func:`halving_search`).{note}

    References
    ----------
    .. [1] V. Shejwalkar, A. Houmansadr, "Manipulating the Byzantine: optimizing model
       poisoning attacks and defenses for federated learning", NDSS 2021.

    Examples
    --------
    >>> from fedsim.examples import example_view, rounded
    >>> rounded({cls}().craft(example_view())[(5, 0)])  # the honest mean, pushed against its spread
    tensor([[ 0.9100, -0.0900, -0.0900],
            [-0.0900,  0.9100, -0.0900]])
    """


@register("attacks", "min_max")
class MinMax(_DistanceBoundedAttack):
    __doc__ = _DOC.format(title="Min-Max", typical="within the honest updates' largest pairwise distance",
                          constraint="``max_i ||m - u_i||^2 <= max_{i,j} ||u_i - u_j||^2``",
                          solver="min_max_update", note="", cls="MinMax")
    name = "min_max"
    _solve = staticmethod(min_max_update)


@register("attacks", "min_sum")
class MinSum(_DistanceBoundedAttack):
    __doc__ = _DOC.format(title="Min-Sum", typical="no larger in sum than an honest update's",
                          constraint="``sum_i ||m - u_i||^2 <= max_i sum_j ||u_i - u_j||^2``",
                          solver="min_sum_update", cls="MinSum",
                          note=" The bound is the paper's; the authors' code compares with the *min* over ``i``.")
    name = "min_sum"
    _solve = staticmethod(min_sum_update)
