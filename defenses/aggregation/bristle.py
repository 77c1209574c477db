"""Bristle: distance-based prioritizer, then per-class performance-weighted integration.

Verbraeken, de Vos, Pouwelse, "Bristle: Decentralized Federated Learning in Byzantine,
Non-i.i.d. Environments", arXiv:2110.11006 (2021). The authors' reference implementation
is ``fedml/.../ai/gar/Bristle.kt`` in github.com/jverbraeken/trustchain-superapp (Kotlin,
DL4J); where this module has to choose, it follows that file and says so.

The math is a chain of pure functions over tensors (``k`` = number of heads, ``q`` =
number of familiar classes):

1. :func:`prioritize` (the *prioritizer*): which received heads take part;
2. :func:`f1_per_class`: each candidate head's F1 score on each familiar class of the
   peer's local test set, all candidates in one batched evaluation;
3. :func:`select_classes`: ``S_j``, the ``phi_j`` familiar classes where sender ``j``
   does best;
4. :func:`certainty`, :func:`class_scores`, :func:`familiar_weights`,
   :func:`foreign_weights`: how much each sender counts, per class;
5. :func:`integrate`: the per-class weighted average of the rows.

:class:`Bristle` (registered as ``bristle``) runs them for one peer.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from defenses.base import Defense, finite_rows
from fedsim.engine.messages import PeerContext
from fedsim.models.heads import head_logits
from fedsim.registry import register

# --------------------------------------------------------------------------- prioritizer


def head_distances(own: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of each received head to ``own``: ``[k, C, P], [C, P] -> [k]``.

    float64, so that huge finite heads give a large distance rather than inf; a head
    holding NaN or inf is infinitely far (``+inf``).
    """
    distances = torch.linalg.vector_norm((received.double() - own.double()).flatten(1), dim=1)
    return torch.where(finite_rows(received), distances, torch.full_like(distances, math.inf))


def draw_counts(alpha: float, beta: int) -> tuple[int, int, int]:
    """How many heads to draw from the near, middle and far third.

    ``(round((1 - alpha)^2 beta), round(2 alpha (1 - alpha) beta), round(alpha^2 beta))``:
    the terms of ``((1 - alpha) + alpha)^2 = 1`` scaled by ``beta``. Python's ``round``
    (ties to even) is Kotlin's ``kotlin.math.round`` of the reference implementation.
    ``alpha = 0.4, beta = 10 -> (4, 5, 2)``.
    """
    return (round((1.0 - alpha) ** 2 * beta), round(2.0 * alpha * (1.0 - alpha) * beta),
            round(alpha ** 2 * beta))


def distance_thirds(n: int) -> tuple[range, range, range]:
    """Positions (in nearest-first order) of the near, middle and far third of ``n`` heads.

    As in the reference implementation: near = the first ``n // 3``, middle = positions
    ``n // 3`` up to (excluding) ``floor(2n / 3)``, far = the last ``n // 3``. When ``n`` is
    not a multiple of 3 the position ``floor(2n / 3)`` lies in no third and is never
    drawn (``n = 10``: near 0-2, middle 3-5, far 7-9; ``n = 11``: near 0-2, middle 3-6,
    far 8-10).
    """
    third = n // 3
    return range(0, third), range(third, (2 * n) // 3), range(n - third, n)


def prioritize(own: torch.Tensor, received: torch.Tensor, alpha: float = 0.4, beta: int = 10,
               rng: Optional[torch.Generator] = None) -> torch.Tensor:
    """Bristle's prioritizer: indices into ``received`` of the heads that take part.

    With fewer than ``beta`` received heads, all of them (``arange(k)``). Otherwise the
    heads are sorted by Euclidean distance to ``own`` (nearest first; ties keep the
    received order; non-finite heads are infinitely far), split into thirds
    (:func:`distance_thirds`) and, from each third, ``min(count, size of the third)``
    heads are drawn uniformly at random without replacement with ``rng``, ``count`` from
    :func:`draw_counts`. A third smaller than its count gives all its heads and the
    shortfall is not made up from another third (the reference's
    ``third.shuffled().take(count)``). Returns the drawn indices in ascending order.
    """
    k = received.shape[0]
    if k < beta:
        return torch.arange(k)
    if rng is None:
        raise ValueError("bristle's prioritizer draws at random: ctx.rng must be a torch.Generator")
    order = torch.sort(head_distances(own, received), stable=True).indices
    chosen = []
    for third, count in zip(distance_thirds(k), draw_counts(alpha, beta)):
        members = order[third.start:third.stop]
        picks = torch.randperm(len(members), generator=rng)[:count]
        chosen.append(members[picks])
    return torch.sort(torch.cat(chosen)).values


# ------------------------------------------------------------------------------ integrator


def f1_per_class(predictions: torch.Tensor, labels: torch.Tensor,
                 classes: torch.Tensor) -> torch.Tensor:
    """F1 score of each class in ``classes`` for each row of predictions.

    ``predictions [..., m]`` (predicted class ids), ``labels [m]``, ``classes [q]``
    -> float64 ``[..., q]`` with ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)
    = 2 TP_c / (#predicted c + #labelled c)``, and 0 where that is 0/0 (the DL4J
    ``Evaluation.f1`` default of the reference implementation).
    """
    predicted = predictions.unsqueeze(-1) == classes                  # [..., m, q]
    actual = (labels.unsqueeze(-1) == classes)                        # [m, q]
    true_positives = (predicted & actual).sum(dim=-2).double()
    denominator = predicted.sum(dim=-2).double() + actual.sum(dim=-2).double()
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, 2.0 * true_positives / safe, torch.zeros_like(safe))


def select_classes(f1: torch.Tensor, claimed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``S_j`` as a boolean mask ``[k, q]``: the ``phi_j`` familiar classes with the best F1.

    ``f1 [k, q]``; ``claimed [k]`` = ``phi_j``, how many classes sender ``j`` says it holds.
    All ``q`` familiar classes when ``claimed`` is None, ``phi_j = -1`` (not stated) or
    ``phi_j >= q``; otherwise the ``max(phi_j, 0)`` classes with the highest F1 (ties: the
    lower class id first, the reference's stable ``sortedByDescending``).
    """
    k, q = f1.shape
    if claimed is None:
        return torch.ones(k, q, dtype=torch.bool)
    claimed = torch.as_tensor(claimed, dtype=torch.long).reshape(k)
    phi = torch.where((claimed == -1) | (claimed >= q), torch.full_like(claimed, q),
                      claimed.clamp(min=0))
    rank_of_position = torch.arange(q).expand(k, q)
    order = torch.sort(f1, dim=1, descending=True, stable=True).indices
    selected = torch.zeros(k, q, dtype=torch.bool)
    selected.scatter_(1, order, rank_of_position < phi.unsqueeze(1))
    return selected


def certainty(f1: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """``cert_j = max(0, mean - std)`` of sender ``j``'s F1 over ``S_j`` -> ``[k]``.

    Population standard deviation (divide by ``|S_j|``), as the reference. An empty
    ``S_j`` (a sender claiming 0 classes) has certainty 0.
    """
    mask = selected.double()
    size = mask.sum(dim=1)
    safe_size = size.clamp(min=1.0)
    mean = (f1 * mask).sum(dim=1) / safe_size
    variance = (((f1 - mean.unsqueeze(1)) ** 2) * mask).sum(dim=1) / safe_size
    cert = (mean - variance.sqrt()).clamp(min=0.0)
    return torch.where(size > 0, cert, torch.zeros_like(cert))


def class_scores(f1_senders: torch.Tensor, f1_own: torch.Tensor,
                 theta: float = 10.0) -> torch.Tensor:
    """Unclipped score of each sender on each familiar class -> ``[k, q]``.

    With ``d = theta |F1_j,c - F1_own,c|``:
    ``score = d^(3 + F1_own,c)`` if ``F1_j,c > F1_own,c``, else ``-d^(4 + F1_own,c)``.
    Better than the own head is rewarded, worse is punished harder (one more power),
    and both grow faster the better the own head already is on ``c``.
    """
    f1_own = f1_own.unsqueeze(0)
    d = theta * (f1_senders - f1_own).abs()
    better = f1_senders > f1_own
    return torch.where(better, d.pow(3.0 + f1_own), -d.pow(4.0 + f1_own))


def score_to_weight(score: torch.Tensor, cert: torch.Tensor, weight_scale: float = 10.0,
                    weight_shift: float = 4.0, score_scale: float = 100.0) -> torch.Tensor:
    """``max(0, weight_scale * sigmoid(score / score_scale) - weight_shift) * cert``.

    With the defaults a score of 0 gives ``1 * cert``, the weight grows to ``6 * cert`` for
    very good scores and is 0 below ``100 ln(0.4 / 0.6) = -40.5``.
    """
    raw = weight_scale * torch.sigmoid(score / score_scale) - weight_shift
    return raw.clamp(min=0.0) * cert


def familiar_weights(scores: torch.Tensor, selected: torch.Tensor, cert: torch.Tensor,
                     weight_scale: float = 10.0, weight_shift: float = 4.0,
                     score_scale: float = 100.0, score_floor: float = -100.0) -> torch.Tensor:
    """``w_j,c = max(0, 10 sigmoid(max(-100, score_j,c) / 100) - 4) cert_j`` for ``c`` in
    ``S_j``, 0 for the familiar classes outside ``S_j`` -> ``[k, q]``."""
    weights = score_to_weight(scores.clamp(min=score_floor), cert.unsqueeze(1),
                              weight_scale, weight_shift, score_scale)
    return torch.where(selected, weights, torch.zeros_like(weights))


def foreign_weights(scores: torch.Tensor, selected: torch.Tensor, cert: torch.Tensor,
                    weight_scale: float = 10.0, weight_shift: float = 4.0,
                    score_scale: float = 100.0) -> torch.Tensor:
    """``W_j = max(0, 10 sigmoid(sum_{c in S_j} score_j,c / 100) - 4) cert_j`` -> ``[k]``,
    over the unclipped scores (one class far worse than the own head can veto a sender)."""
    total = torch.where(selected, scores, torch.zeros_like(scores)).sum(dim=1)
    return score_to_weight(total, cert, weight_scale, weight_shift, score_scale)


def integrate(own: torch.Tensor, heads: torch.Tensor, familiar: torch.Tensor,
              familiar_weight: torch.Tensor, foreign_weight: torch.Tensor) -> torch.Tensor:
    """The merged head ``[C, P]``; the own head weighs 1.

    ``own [C, P]``, ``heads [k, C, P]``, ``familiar [q]`` class ids,
    ``familiar_weight [k, q]``, ``foreign_weight [k]``. Row ``c``:

    - familiar ``c``: ``(own_c + sum_j w_j,c head_j,c) / (1 + sum_j w_j,c)``;
    - foreign ``c``: ``(own_c + sum_j W_j head_j,c) / (1 + sum_j W_j)``.

    Computed as ``own_c + sum_j w_j,c (head_j,c - own_c) / (1 + sum_j w_j,c)`` (the same
    number), so that a received copy of ``own`` changes nothing bit for bit. Heads with
    weight 0 do not enter the sum at all (no ``0 * NaN``).
    """
    n_classes = own.shape[0]
    weights = foreign_weight.unsqueeze(1).expand(-1, n_classes).clone()   # [k, C]
    weights[:, familiar] = familiar_weight.to(weights.dtype)
    weights = weights.to(own.dtype)
    contributes = (weights > 0).unsqueeze(-1)
    deltas = torch.where(contributes, heads - own, torch.zeros_like(heads))
    total = 1.0 + weights.sum(dim=0)                                       # [C]
    return own + (weights.unsqueeze(-1) * deltas).sum(dim=0) / total.unsqueeze(-1)


def local_test_subset(features: torch.Tensor, labels: torch.Tensor,
                      per_class: Optional[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` test samples of each class (all when ``per_class`` is None)."""
    if per_class is None:
        return features, labels
    keep = torch.zeros(labels.shape[0], dtype=torch.bool)
    for label in torch.unique(labels):
        keep[torch.nonzero(labels == label).flatten()[:per_class]] = True
    return features[keep], labels[keep]


# -------------------------------------------------------------------------------- defense


@register("defenses", "bristle")
class Bristle(Defense):
    """Bristle (Verbraeken, de Vos, Pouwelse 2021, arXiv:2110.11006).

    Peer ``i`` with own head ``x`` (after local training) and received heads ``x_j``:

    1. Prioritizer (:func:`prioritize`): with at least ``beta`` received heads, sort them
       by Euclidean distance to ``x``, split the list in near / middle / far thirds and
       draw ``round((1-alpha)^2 beta)``, ``round(2 alpha (1-alpha) beta)`` and
       ``round(alpha^2 beta)`` of them at random (with ``ctx.rng``) from the three
       thirds; otherwise keep all.
    2. Integrator: F1 of the own head and of every selected head on each familiar class
       (``ctx.classes``) of the local test set (prediction = argmax of the logits), all
       heads in one batched evaluation; ``S_j`` = the ``phi_j`` classes where ``j`` does
       best (``phi_j = ctx.claimed_num_classes[j]``); with ``d = theta |F1_j,c - F1_i,c|``
       ``score_j,c = d^(3 + F1_i,c)`` if ``j`` is better, else ``-d^(4 + F1_i,c)``;
       ``cert_j = max(0, mean - std)`` of ``F1_j`` over ``S_j``;
       ``w_j,c = max(0, 10 sigmoid(max(-100, score_j,c) / 100) - 4) cert_j`` (familiar
       rows, 0 outside ``S_j``), ``W_j = max(0, 10 sigmoid(sum_c score_j,c / 100) - 4)
       cert_j`` (foreign rows); each row is the weighted average of the own row (weight
       1) and the senders' rows (:func:`integrate`).

    Defaults: ``alpha = 0.4``, ``beta = 10`` (draws 4 / 5 / 2), ``theta = 10``,
    ``test_size = None`` (all of ``ctx``'s local test set, i.e. ``test_per_class`` = kappa
    per familiar class), ``weight_scale = 10``, ``weight_shift = 4``,
    ``score_scale = 100``, ``score_floor = -100``.

    Choices, following the reference implementation (Bristle.kt, commit "Add alpha"):
    the thirds and the short-third rule of :func:`prioritize`; F1 = 0 where undefined;
    population std; ties in ``S_j`` go to the lower class id. Where the reference is
    inconsistent we follow the paper: the prioritizer is applied only from ``beta``
    received heads on, and ``S_j`` holds all familiar classes when ``phi_j`` equals their
    number. Robustness (not in the reference): a received head holding NaN or inf is
    infinitely far in the prioritizer and gets weight 0; a sender claiming 0 classes has
    an empty ``S_j`` and certainty 0.
    """

    name = "bristle"
    needs_context = True

    def __init__(self, alpha: float = 0.4, beta: int = 10, theta: float = 10.0,
                 test_size: Optional[int] = None, weight_scale: float = 10.0,
                 weight_shift: float = 4.0, score_scale: float = 100.0,
                 score_floor: float = -100.0):
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        if isinstance(beta, bool) or int(beta) != beta or beta < 1:
            raise ValueError(f"beta must be a positive integer, got {beta!r}")
        if not float(theta) > 0:
            raise ValueError(f"theta must be > 0, got {theta!r}")
        if test_size is not None and (isinstance(test_size, bool) or int(test_size) != test_size
                                      or test_size < 1):
            raise ValueError(f"test_size must be a positive integer or None, got {test_size!r}")
        if not float(weight_scale) > 0:
            raise ValueError(f"weight_scale must be > 0, got {weight_scale!r}")
        if not float(score_scale) > 0:
            raise ValueError(f"score_scale must be > 0, got {score_scale!r}")
        if not (math.isfinite(float(weight_shift)) and math.isfinite(float(score_floor))):
            raise ValueError("weight_shift and score_floor must be finite numbers")
        self.alpha, self.beta, self.theta = float(alpha), int(beta), float(theta)
        self.test_size = None if test_size is None else int(test_size)
        self.weight_scale, self.weight_shift = float(weight_scale), float(weight_shift)
        self.score_scale, self.score_floor = float(score_scale), float(score_floor)

    def aggregate(self, own: torch.Tensor, received: torch.Tensor,
                  ctx: Optional[PeerContext] = None) -> torch.Tensor:
        if ctx is None or ctx.test_features is None or ctx.test_labels is None:
            raise ValueError("bristle needs the peer's local test set (ctx.test_features, "
                             "ctx.test_labels)")
        if received.shape[0] == 0:
            return own.clone()
        chosen = prioritize(own, received, self.alpha, self.beta, ctx.rng)
        heads = received[chosen]
        usable = finite_rows(heads)
        # Non-finite heads are evaluated as copies of own; their weights are zeroed below.
        heads = torch.where(usable[:, None, None], heads, own.expand_as(heads))

        features, labels = local_test_subset(ctx.test_features, ctx.test_labels, self.test_size)
        familiar = (torch.as_tensor(ctx.classes, dtype=torch.long).flatten()
                    if ctx.classes is not None else torch.unique(labels))
        candidates = torch.cat([own.unsqueeze(0), heads])                   # [k+1, C, P]
        logits = head_logits(candidates, features.to(candidates.dtype))     # [k+1, m, C]
        f1 = f1_per_class(logits.argmax(dim=-1), labels, familiar)          # [k+1, q]
        f1_own, f1_senders = f1[0], f1[1:]

        claimed = None if ctx.claimed_num_classes is None else \
            torch.as_tensor(ctx.claimed_num_classes, dtype=torch.long).flatten()[chosen]
        selected = select_classes(f1_senders, claimed)
        cert = certainty(f1_senders, selected)
        cert = torch.where(usable, cert, torch.zeros_like(cert))
        scores = class_scores(f1_senders, f1_own, self.theta)
        weight_args = (self.weight_scale, self.weight_shift, self.score_scale)
        w_familiar = familiar_weights(scores, selected, cert, *weight_args, self.score_floor)
        w_foreign = foreign_weights(scores, selected, cert, *weight_args)
        return integrate(own, heads, familiar, w_familiar, w_foreign)
