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

:class:`Bristle` (registered as ``bristle``) runs them for one peer; its batched form runs
steps 2-5 once for every group of peers of the same shapes (the functions take leading
group dimensions), bit for bit the per-peer numbers.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from defenses.base import Defense
from fedsim import functional as F
from fedsim.api import PeerContext
from fedsim.models.heads import head_logits
from fedsim.params import Boolean, Interval, Options
from fedsim.registry import register

# --------------------------------------------------------------------------- prioritizer


def head_distances(own: torch.Tensor, received: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of each received head to ``own``: ``[k, C, P], [C, P] -> [k]``.

    float64, so that huge finite heads give a large distance rather than inf; a head
    holding NaN or inf is infinitely far (``+inf``).
    """
    distances = F.distances_to(own, received)
    return torch.where(F.finite_rows(received), distances, torch.full_like(distances, math.inf))


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


DRAWS = ("thirds", "uniform")


def prioritize(own: torch.Tensor, received: torch.Tensor, alpha: float = 0.4, beta: int = 10,
               rng: Optional[torch.Generator] = None, draw: str = "thirds") -> torch.Tensor:
    """Bristle's prioritizer: indices into ``received`` of the heads that take part.

    With fewer than ``beta`` received heads, all of them (``arange(k)``). Otherwise, with
    ``draw="thirds"`` (the paper), the heads are sorted by Euclidean distance to ``own``
    (nearest first; ties keep the received order; non-finite heads are infinitely far),
    split into thirds (:func:`distance_thirds`) and, from each third,
    ``min(count, size of the third)`` heads are drawn uniformly at random without
    replacement with ``rng``, ``count`` from :func:`draw_counts`. A third smaller than its
    count gives all its heads and the shortfall is not made up from another third (the
    reference's ``third.shuffled().take(count)``, Bristle.kt lines 64-72). With
    ``draw="uniform"``, ``beta`` heads drawn uniformly at random, whatever their distance:
    what the reference's last commit runs (Bristle.kt line 63,
    ``distances.shuffled().take(10)``, the thirds commented out below it). Returns the
    drawn indices in ascending order.
    """
    k = received.shape[0]
    if k < beta:
        return torch.arange(k)
    if rng is None:
        raise ValueError("bristle's prioritizer draws at random: ctx.rng must be a torch.Generator")
    if draw == "uniform":
        return torch.sort(torch.randperm(k, generator=rng)[:beta]).values
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
    ``Evaluation.f1`` default of the reference implementation). A group of peers at
    once: ``predictions [g, n, m]``, ``labels [g, m]``, ``classes [g, q]`` -> ``[g, n, q]``.
    """
    grouped = classes.dim() > 1
    predicted = predictions.unsqueeze(-1) == (classes[..., None, None, :] if grouped else classes)  # [..., m, q]
    actual = labels.unsqueeze(-1) == (classes[..., None, :] if grouped else classes)   # [(g,) m, q]
    actual = actual.unsqueeze(-3) if grouped else actual
    true_positives = (predicted & actual).sum(dim=-2).double()
    denominator = predicted.sum(dim=-2).double() + actual.sum(dim=-2).double()
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, 2.0 * true_positives / safe, torch.zeros_like(safe))


def select_classes(f1: torch.Tensor, phi: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``S_j`` as a boolean mask ``[k, q]``: the ``phi_j`` familiar classes with the best F1.

    ``f1 [k, q]``; ``phi [k]``: how many familiar classes sender ``j`` is judged on (the
    overlap of class sets, a stated class count or a constant; see :class:`Bristle`).
    All ``q`` familiar classes when ``phi`` is None, ``phi_j = -1`` (not known) or
    ``phi_j >= q``; otherwise the ``max(phi_j, 0)`` classes with the highest F1 (ties: the
    lower class id first, the reference's stable ``sortedByDescending``). Leading group
    dimensions (``f1 [..., k, q]``, ``phi [..., k]``) are kept.
    """
    q = f1.shape[-1]
    if phi is None:
        return torch.ones(f1.shape, dtype=torch.bool)
    phi = torch.as_tensor(phi, dtype=torch.long).reshape(f1.shape[:-1])
    phi = torch.where((phi == -1) | (phi >= q), torch.full_like(phi, q), phi.clamp(min=0))
    rank_of_position = torch.arange(q).expand(f1.shape)
    order = torch.sort(f1, dim=-1, descending=True, stable=True).indices
    selected = torch.zeros(f1.shape, dtype=torch.bool)
    selected.scatter_(-1, order, rank_of_position < phi.unsqueeze(-1))
    return selected


def certainty(f1: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """``cert_j = max(0, mean - std)`` of sender ``j``'s F1 over ``S_j`` -> ``[k]``.

    Population standard deviation (divide by ``|S_j|``), as the reference. An empty
    ``S_j`` (a sender claiming 0 classes) has certainty 0. Leading group dimensions are
    kept (``[..., k, q] -> [..., k]``).
    """
    mask = selected.double()
    size = mask.sum(dim=-1)
    safe_size = size.clamp(min=1.0)
    mean = (f1 * mask).sum(dim=-1) / safe_size
    variance = (((f1 - mean.unsqueeze(-1)) ** 2) * mask).sum(dim=-1) / safe_size
    cert = (mean - variance.sqrt()).clamp(min=0.0)
    return torch.where(size > 0, cert, torch.zeros_like(cert))


def class_scores(f1_senders: torch.Tensor, f1_own: torch.Tensor,
                 theta: float = 10.0) -> torch.Tensor:
    """Unclipped score of each sender on each familiar class -> ``[k, q]``.

    With ``d = theta |F1_j,c - F1_own,c|``:
    ``score = d^(3 + F1_own,c)`` if ``F1_j,c > F1_own,c``, else ``-d^(4 + F1_own,c)``.
    Better than the own head is rewarded, worse is punished harder (one more power),
    and both grow faster the better the own head already is on ``c``. Leading group
    dimensions are kept (``f1_senders [..., k, q]``, ``f1_own [..., q]``).
    """
    f1_own = f1_own.unsqueeze(-2)
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
    weights = score_to_weight(scores.clamp(min=score_floor), cert.unsqueeze(-1),
                              weight_scale, weight_shift, score_scale)
    return torch.where(selected, weights, torch.zeros_like(weights))


def foreign_weights(scores: torch.Tensor, selected: torch.Tensor, cert: torch.Tensor,
                    weight_scale: float = 10.0, weight_shift: float = 4.0,
                    score_scale: float = 100.0) -> torch.Tensor:
    """``W_j = max(0, 10 sigmoid(sum_{c in S_j} score_j,c / 100) - 4) cert_j`` -> ``[k]``,
    over the unclipped scores (one class far worse than the own head can veto a sender)."""
    total = torch.where(selected, scores, torch.zeros_like(scores)).sum(dim=-1)
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
    weight 0 do not enter the sum at all (no ``0 * NaN``). Leading group dimensions are
    kept (``own [..., C, P]``, ``heads [..., k, C, P]``, ``familiar [..., q]``, ...).
    """
    n_classes = own.shape[-2]
    weights = foreign_weight.unsqueeze(-1).expand(*foreign_weight.shape, n_classes).clone()   # [..., k, C]
    weights.scatter_(-1, familiar.unsqueeze(-2).expand(familiar_weight.shape), familiar_weight.to(weights.dtype))
    weights = weights.to(own.dtype)
    contributes = (weights > 0).unsqueeze(-1)
    deltas = torch.where(contributes, heads - own.unsqueeze(-3), torch.zeros_like(heads))
    total = 1.0 + weights.sum(dim=-2)                                      # [..., C]
    return own + (weights.unsqueeze(-1) * deltas).sum(dim=-3) / total.unsqueeze(-1)


def center_weights(head: torch.Tensor) -> torch.Tensor:
    """Each class's weights minus their mean over the ``D`` features; the bias column is
    kept: ``[C, D+1] -> [C, D+1]``.

    What the reference does to every integrated model (Node.kt lines 269-272: each column
    ``c`` of the weight matrix ``W [D, C]`` minus its ``meanNumber()``). Its MNIST output
    layer has no bias (Runner.kt, ``OutputLayer ... .hasBias(false)``), so there is no
    bias to centre; here the bias is left as it is.
    """
    weights = head[..., :-1]
    return torch.cat([weights - weights.mean(dim=-1, keepdim=True), head[..., -1:]], dim=-1)


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


class _Plan(NamedTuple):
    """What :meth:`Bristle._prepare` computes for one peer (see there)."""
    own: torch.Tensor
    heads: torch.Tensor
    usable: torch.Tensor
    labels: torch.Tensor
    familiar: torch.Tensor
    phi: Optional[torch.Tensor]
    predictions: torch.Tensor


def _check_context(ctx: Optional[PeerContext]) -> None:
    if ctx is None or ctx.test_features is None or ctx.test_labels is None:
        raise ValueError("bristle needs the peer's local test set (ctx.test_features, ctx.test_labels)")


@register("defenses", "bristle")
class Bristle(Defense):
    """Bristle: a distance prioritizer, then per-class integration weighted by F1 on own test data.
    Verbraeken, de Vos, Pouwelse 2021, "Bristle: Decentralized Federated Learning in
    Byzantine, Non-i.i.d. Environments", arXiv:2110.11006.

    Peer ``i`` with own head ``x`` (after local training) and received heads ``x_j``:

    1. Prioritizer (:func:`prioritize`): with at least ``beta`` received heads, sort them
       by Euclidean distance to ``x``, split the list in near / middle / far thirds and
       draw ``round((1-alpha)^2 beta)``, ``round(2 alpha (1-alpha) beta)`` and
       ``round(alpha^2 beta)`` of them at random (with ``ctx.rng``) from the three
       thirds; otherwise keep all.
    2. Integrator: F1 of the own head and of every selected head on each familiar class
       (``ctx.classes``) of the local test set (prediction = argmax of the logits), all
       heads in one batched evaluation; ``S_j`` = the ``phi_j`` classes where ``j`` does
       best (``phi_j``: see ``phi`` below); with ``d = theta |F1_j,c - F1_i,c|``
       ``score_j,c = d^(3 + F1_i,c)`` if ``j`` is better, else ``-d^(4 + F1_i,c)``;
       ``cert_j = max(0, mean - std)`` of ``F1_j`` over ``S_j``;
       ``w_j,c = max(0, 10 sigmoid(max(-100, score_j,c) / 100) - 4) cert_j`` (familiar
       rows, 0 outside ``S_j``), ``W_j = max(0, 10 sigmoid(sum_c score_j,c / 100) - 4)
       cert_j`` (foreign rows); each row is the weighted average of the own row (weight
       1) and the senders' rows (:func:`integrate`).
    3. Centring (``center=True``): each class's weights of the merged head minus their
       mean (:func:`center_weights`).

    Parameters
    ----------
    alpha : float in [0, 1], default 0.4
        Prioritizer skew towards the far third.
    beta : int >= 1, default 10
        How many heads the prioritizer draws (4 / 5 / 2 from the thirds).
    theta : float > 0, default 10
        Scale of the F1 differences in the scores.
    test_size : int >= 1, default None
        Test samples per familiar class; ``None``: all of ``ctx``'s local test set
        (``test_per_class`` = kappa per familiar class).
    weight_scale : float > 0, default 10
        ``10`` in the weight formulas.
    weight_shift : float, default 4
        ``4`` in the weight formulas.
    score_scale : float > 0, default 100
        ``100`` in the weight formulas.
    score_floor : float, default -100
        ``-100``, the floor of a familiar score.
    phi : "overlap", "claimed" or int >= 0, default "overlap"
        How many familiar classes sender ``j`` is judged on (see Notes).
    center : bool, default True
        Centre every class's weights after the integration (see Notes).
    draw : {"thirds", "uniform"}, default "thirds"
        The paper's prioritizer, or the reference's last commit's uniform draw (see
        :func:`prioritize`).

    Notes
    -----
    ``phi``:

    - ``"overlap"`` (default): ``|C_i intersect C_j|``, the number of classes receiver and
      sender both hold, from ``ctx.sender_class_overlap``. This is what the paper's
      private set intersection cardinality reveals, and what the reference computes:
      PSI_CA.kt lines 52-68 (``clientReceivesServerResponses``: ``count`` = how many of
      the client's encrypted labels are in the server's Bloom filter), passed as
      ``countPerPeer`` to Bristle.kt line 185 (``countPerPeer.getOrDefault(peer,
      myF1PerClass.size)``). The engine computes it from the true class sets; a
      Byzantine sender that states a class count other than its own is taken to claim
      the receiver's classes first (overlap ``min(count, |C_i|)``), as the reference
      assumes of attackers (Bristle.kt line 192: "assume that they have the same classes
      as the current peer to maximize attack strength").
    - ``"claimed"``: how many classes the sender says it holds
      (``ctx.claimed_num_classes``), this module's reading before the overlap.
    - an integer: the same ``phi`` for every sender. The reference's last commit runs
      with ``countPerPeer = 3`` for every pair (SimulatedRunner.kt lines 131-137; the
      PSI-CA exchange is commented out below them, lines 138-153, and ``USE_PSI_CA =
      false``, line 18), so ``phi: 3`` reproduces the authors' experiments.

    The overlap is the default because it is the protocol the paper describes and the
    one the reference implements; the constant is a simulation shortcut of the
    reference. A sender with overlap 0 has an empty ``S_j`` and weight 0 (the reference
    drops overlaps below ``MIN_PSI_CA = 1`` from ``countPerPeer``, PSI_CA.kt lines 14
    and 62, so such a sender falls back to all familiar classes, where it has F1 near 0
    and hence certainty near 0).

    ``center``: the reference centres every class's weights after each integration
    (Node.kt lines 269-272); the paper does not mention it. Default ``True`` (follow the
    code where the paper is silent); ``False`` keeps the merged head as integrated.

    ``draw``: ``"thirds"`` (default) is the paper's prioritizer; ``"uniform"`` is what
    the reference's last commit runs (see :func:`prioritize`). The paper is the default
    because the commented-out thirds are its design and the uniform draw discards the
    distance it is built on.

    The reference's local training rule (Node.kt: ``resetTW`` line 198, ``fitNetwork``
    line 169, ``updateCW`` lines 191-195) lives in the engine, not here: a peer trains
    the full softmax on its data; the head it *sends* keeps the pre-training rows of the
    classes it does not hold, while the head it integrates with (``own``, Bristle.kt
    line 45: ``oldModel.sub(gradient)`` with ``gradient = oldParams - newParams``, Node.kt
    lines 137-138, i.e. the trained network's weights) has all rows trained. In a
    scenario: ``training.missing_class_rows: keep``.

    Choices, following the reference implementation (Bristle.kt, commit "Add alpha"):
    the thirds and the short-third rule of :func:`prioritize` (as written in its
    commented-out block, lines 64-72); F1 = 0 where undefined; population std (line 338);
    ties in ``S_j`` go to the lower class id. Where the reference is inconsistent we
    follow the paper: the prioritizer is applied only from ``beta`` received heads on,
    and ``S_j`` holds all familiar classes when ``phi_j`` equals their number (line 187
    selects the class *ids* ``0 .. phi - 1`` instead, right only for a peer holding
    classes ``0 .. q - 1``). Robustness (not in the reference): a received head holding
    NaN or inf is infinitely far in the prioritizer and gets weight 0; a sender with
    ``phi_j = 0`` has an empty ``S_j`` and certainty 0.

    References
    ----------
    .. [1] J. Verbraeken, M. de Vos, J. Pouwelse, "Bristle: decentralized federated
       learning in Byzantine, non-i.i.d. environments", arXiv:2110.11006, 2021.
    .. [2] The authors' reference implementation: ``fedml/.../ai/gar/Bristle.kt`` in
       github.com/jverbraeken/trustchain-superapp.

    Examples
    --------
    >>> from fedsim.examples import example_context, example_heads, rounded
    >>> own, received = example_heads()  # 4 honest heads near own, 2 copies of an outlier
    >>> merged = Bristle(phi=2, center=False).aggregate(own, received, example_context())
    >>> merged  # the outliers score F1 0 on both classes: weight 0
    tensor([[1., 0., 0.],
            [0., 1., 0.]])
    >>> Bristle(phi=2).aggregate(own, received, example_context())  # centred weights
    tensor([[ 0.5000, -0.5000,  0.0000],
            [-0.5000,  0.5000,  0.0000]])
    """

    name = "bristle"
    needs_context = True
    parameters = {"alpha": Interval(float, 0, 1), "beta": Interval(int, 1, None),
                  "theta": Interval(float, 0, None, closed="neither"), "test_size": [None, Interval(int, 1, None)],
                  "weight_scale": Interval(float, 0, None, closed="neither"), "weight_shift": Interval(float),
                  "score_scale": Interval(float, 0, None, closed="neither"), "score_floor": Interval(float),
                  "phi": [Options("overlap", "claimed"), Interval(int, 0, None)], "center": Boolean(),
                  "draw": Options(*DRAWS)}

    def __init__(self, alpha: float = 0.4, beta: int = 10, theta: float = 10.0,
                 test_size: Optional[int] = None, weight_scale: float = 10.0,
                 weight_shift: float = 4.0, score_scale: float = 100.0,
                 score_floor: float = -100.0, phi="overlap", center: bool = True,
                 draw: str = "thirds"):
        self.phi, self.center, self.draw = phi, bool(center), draw
        self.alpha, self.beta, self.theta = float(alpha), int(beta), float(theta)
        self.test_size = None if test_size is None else int(test_size)
        self.weight_scale, self.weight_shift = float(weight_scale), float(weight_shift)
        self.score_scale, self.score_floor = float(score_scale), float(score_floor)

    def aggregate(self, own: torch.Tensor, received: torch.Tensor,
                  ctx: Optional[PeerContext] = None) -> torch.Tensor:
        _check_context(ctx)
        if received.shape[0] == 0:
            return own.clone()
        return self._merge([self._prepare(own, received, ctx)])[0]

    def aggregate_group(self, own: torch.Tensor, received: torch.Tensor, mask: torch.Tensor,
                        ctxs=None) -> torch.Tensor:
        """Batched form. Each peer's prioritizer draws with its own generator and each
        peer's candidates are evaluated on its own test set (one matmul per peer, as
        :meth:`aggregate`); the F1 scores, weights, integration and centring then run once
        for every group of peers with the same shapes (candidates, test samples, familiar
        classes). Every peer's merged head is :meth:`aggregate`'s bit for bit
        (``tests/test_bristle.py``)."""
        out = torch.empty_like(own)
        groups: dict = {}
        for i in range(own.shape[0]):
            got = received[i][mask[i]]
            if got.shape[0] == 0:  # nothing arrived: the own head, context or not
                out[i] = own[i]
                continue
            ctx = ctxs[i] if ctxs is not None else None
            _check_context(ctx)
            plan = self._prepare(own[i], got, ctx)
            key = (plan.heads.shape[0], plan.labels.shape[0], plan.familiar.shape[0], plan.phi is None)
            groups.setdefault(key, []).append((i, plan))
        for members in groups.values():
            out[torch.tensor([i for i, _ in members])] = self._merge([plan for _, plan in members])
        return out

    def _prepare(self, own: torch.Tensor, received: torch.Tensor, ctx: PeerContext) -> "_Plan":
        """One peer's part: the prioritizer's draw, the chosen heads (non-finite ones
        replaced by ``own``, their weight zeroed later), the local test set, the familiar
        classes, each chosen sender's ``phi``, and the argmax predictions of ``own`` and
        every chosen head on the test set ``[k+1, m]``."""
        chosen = prioritize(own, received, self.alpha, self.beta, ctx.rng, self.draw)
        heads = received[chosen]
        usable = F.finite_rows(heads)
        heads = torch.where(usable[:, None, None], heads, own.expand_as(heads))
        features, labels = local_test_subset(ctx.test_features, ctx.test_labels, self.test_size)
        familiar = (torch.as_tensor(ctx.classes, dtype=torch.long).flatten()
                    if ctx.classes is not None else torch.unique(labels))
        candidates = torch.cat([own.unsqueeze(0), heads])                   # [k+1, C, P]
        predictions = head_logits(candidates, features.to(candidates.dtype)).argmax(dim=-1)   # [k+1, m]
        phi = self.sender_phi(ctx, received.shape[0])
        return _Plan(own, heads, usable, labels, familiar, None if phi is None else phi[chosen], predictions)

    def _merge(self, plans: list) -> torch.Tensor:
        """The merged heads ``[g, C, P]`` of ``g`` prepared peers of the same shapes."""
        stack = lambda name: torch.stack([getattr(plan, name) for plan in plans])
        own, heads, usable, familiar = stack("own"), stack("heads"), stack("usable"), stack("familiar")
        f1 = f1_per_class(stack("predictions"), stack("labels"), familiar)   # [g, k+1, q]
        f1_own, f1_senders = f1[:, 0], f1[:, 1:]
        selected = select_classes(f1_senders, None if plans[0].phi is None else stack("phi"))
        cert = certainty(f1_senders, selected)
        cert = torch.where(usable, cert, torch.zeros_like(cert))
        scores = class_scores(f1_senders, f1_own, self.theta)
        weight_args = (self.weight_scale, self.weight_shift, self.score_scale)
        w_familiar = familiar_weights(scores, selected, cert, *weight_args, self.score_floor)
        w_foreign = foreign_weights(scores, selected, cert, *weight_args)
        merged = integrate(own, heads, familiar, w_familiar, w_foreign)
        return center_weights(merged) if self.center else merged

    def sender_phi(self, ctx: PeerContext, k: int) -> Optional[torch.Tensor]:
        """``phi_j`` of each of the ``k`` received heads (``[k]``), or None (all familiar
        classes) when the context does not carry what ``phi`` asks for."""
        if isinstance(self.phi, int):
            return torch.full((k,), self.phi, dtype=torch.long)
        known = ctx.sender_class_overlap if self.phi == "overlap" else ctx.claimed_num_classes
        return None if known is None else torch.as_tensor(known, dtype=torch.long).flatten()
