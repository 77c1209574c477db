"""Local model poisoning attacks on Krum and trimmed mean (Fang, Cao, Jia, Gong 2020)."""
from __future__ import annotations

import math

import torch

from attacks.base import Attack, send_to_all
from attacks.byzantine._reference import honest_heads, reference_head
from fedsim import functional as F
from fedsim.params import Interval
from fedsim.registry import register


def change_direction(mean_update: torch.Tensor) -> torch.Tensor:
    """Fang et al.'s ``s``: ``+1`` where the parameter would increase without attack,
    ``-1`` otherwise (zero counts as "otherwise", as in the paper's definition)."""
    return torch.where(mean_update > 0, 1.0, -1.0).to(mean_update.dtype)


def krum_select(points: torch.Tensor, f: int) -> int:
    """Index Krum picks among ``points [n, P]`` with ``f`` assumed Byzantine.

    Score of ``i`` = sum of squared distances to its ``n - f - 2`` nearest other points
    (Blanchard et al. 2017), that count clamped to ``1..n-1``; the lowest score wins,
    ties to the lowest index.
    """
    n = points.shape[0]
    scores = F.krum_scores(points, min(max(n - f - 2, 1), n - 1), compute_mode=F.CDIST_DEFAULT)
    return int(torch.argmin(scores))


def fang_krum_lambda_bound(benign: torch.Tensor, reference: torch.Tensor, n_byzantine: int) -> float:
    """The paper's upper bound on lambda (full knowledge), flattened models:

    ``1/((m - 2c - 1) sqrt(d)) * min_i sum_{l in G_i} D(w_l, w_i)
      + 1/sqrt(d) * max_i D(w_i, w_Re)``

    with ``m = h + c`` workers, ``c`` Byzantine, ``G_i`` the ``m - c - 2`` benign models
    nearest to ``w_i`` and ``D`` the Euclidean distance. ``m - 2c - 1`` is clamped to
    ``>= 1`` and ``|G_i|`` to ``0..h-1`` (small neighbourhoods).
    """
    h, d = benign.shape
    c = n_byzantine
    m = h + c
    k = min(max(m - c - 2, 0), h - 1)
    if k > 0:
        near = F.nearest_sums(F.pairwise_distances(benign, compute_mode=F.CDIST_DEFAULT), k).min().item()
    else:
        near = 0.0
    far = F.distances_to(reference, benign).max().item()
    return near / (max(m - 2 * c - 1, 1) * math.sqrt(d)) + far / math.sqrt(d)


def fang_krum_head(benign: torch.Tensor, reference: torch.Tensor, n_byzantine: int,
                   threshold: float = 1e-5) -> tuple[torch.Tensor, float]:
    """``(w'_1, lambda)``: ``w'_1 = w_Re - lambda * s``, lambda halved from the bound
    until Krum over the benign models plus ``c`` copies of ``w'_1`` picks a copy, or
    lambda drops below ``threshold`` (then the last lambda is kept).

    ``benign [h, P]``, ``reference [P]`` flattened; ``s`` = :func:`change_direction` of
    ``mean(benign) - reference``.
    """
    c = max(int(n_byzantine), 1)
    direction = change_direction(benign.mean(dim=0) - reference)
    lam = fang_krum_lambda_bound(benign, reference, c)
    while True:
        crafted = reference - lam * direction
        points = torch.cat([crafted.expand(c, -1), benign])
        if krum_select(points, c) < c or lam < threshold:
            return crafted, lam
        lam /= 2.0


def fang_trimmed_mean_heads(benign: torch.Tensor, reference: torch.Tensor, count: int,
                            b: float, rng: torch.Generator) -> torch.Tensor:
    """``[count, P]`` crafted models against trimmed mean (full knowledge).

    Per coordinate ``j`` with ``w_max,j``/``w_min,j`` the benign max/min and ``s_j`` the
    change direction of ``mean(benign) - reference``, each value is drawn uniformly in

    - ``s_j = -1``: ``[w_max, b w_max]`` if ``w_max > 0`` else ``[w_max, w_max / b]``;
    - ``s_j = +1``: ``[w_min / b, w_min]`` if ``w_min > 0`` else ``[b w_min, w_min]``.
    """
    direction = change_direction(benign.mean(dim=0) - reference)
    w_max, w_min = benign.max(dim=0).values, benign.min(dim=0).values
    up_lo = w_max
    up_hi = torch.where(w_max > 0, b * w_max, w_max / b)
    down_lo = torch.where(w_min > 0, w_min / b, b * w_min)
    down_hi = w_min
    lo = torch.where(direction < 0, up_lo, down_lo)
    hi = torch.where(direction < 0, up_hi, down_hi)
    u = torch.rand(count, benign.shape[1], generator=rng, dtype=benign.dtype)
    return lo + u * (hi - lo)


@register("attacks", "fang_krum")
class FangKrum(Attack):
    """Fang's Krum attack: the largest step against the honest direction that Krum still picks.
    Fang, Cao, Jia, Gong 2020, "Local model poisoning attacks to Byzantine-robust
    federated learning", USENIX Security (full knowledge).

    The crafted model is ``w'_1 = w_Re - lambda * s``: ``w_Re`` the model before the
    round (here the sender's head at the start of the round), ``s`` the sign of the
    direction the honest models move (``sign(mean(observed) - w_Re)``, -1 where not
    positive), and ``lambda`` the largest value, halving from the paper's upper bound
    (:func:`fang_krum_lambda_bound`) down to ``threshold``, for which Krum over the
    observed honest heads plus ``c = len(byzantine_ids)`` crafted models picks a
    crafted one.

    Parameters
    ----------
    threshold : float > 0, default 1e-5
        The smallest ``lambda`` tried.

    Notes
    -----
    The paper lets the other ``c - 1`` crafted models lie within a small ball around
    ``w'_1``; here every Byzantine peer sends exactly ``w'_1`` (radius 0), which only
    makes Krum likelier to pick it. Needs the honest heads (omniscient view for the
    paper's full knowledge); falls back to the sender's own head.

    References
    ----------
    .. [1] M. Fang, X. Cao, J. Jia, N. Gong, "Local model poisoning attacks to
       Byzantine-robust federated learning", USENIX Security 2020: the Krum attack.

    Examples
    --------
    >>> from fedsim.examples import example_view, rounded
    >>> view = example_view()  # peers 5 and 6 attack peer 0; they observe the 5 honest heads
    >>> sent = FangKrum().craft(view)[(5, 0)]
    >>> torch.sign(sent)  # -s: against the direction every honest entry moved
    tensor([[-1.,  1.,  1.],
            [ 1., -1.,  1.]])
    """

    name = "fang_krum"
    parameters = {"threshold": Interval(float, 0, None, closed="neither")}

    def __init__(self, threshold: float = 1e-5):
        self.threshold = float(threshold)

    def craft(self, view):
        per_sender = {}
        for s in view.byzantine_ids:
            benign = honest_heads(view, s)
            shape = benign.shape[1:]
            crafted, _ = fang_krum_head(benign.flatten(1), reference_head(view, s).flatten(),
                                        len(view.byzantine_ids), self.threshold)
            per_sender[s] = crafted.reshape(shape).to(benign.dtype)
        return send_to_all(view, per_sender)


@register("attacks", "fang_trimmed_mean")
class FangTrimmedMean(Attack):
    """Fang's trimmed-mean attack: values just beyond the honest extreme, against the honest direction.
    Fang, Cao, Jia, Gong 2020, "Local model poisoning attacks to Byzantine-robust
    federated learning", USENIX Security (full knowledge).

    For every parameter the crafted values lie just beyond the honest extreme on the
    side opposite to the direction the parameter moves (``s``, from the observed honest
    heads and the sender's head at the start of the round): above ``w_max`` (up to
    ``b`` times it) where it would decrease, below ``w_min`` where it would increase,
    see :func:`fang_trimmed_mean_heads`.

    Parameters
    ----------
    b : float > 1, default 2
        How far beyond the extreme (the paper's choice: values in ``[w, 2w]`` or
        ``[w/2, w]``).

    Notes
    -----
    Each Byzantine peer draws its own values (``view.rng``) and sends them to all its
    receivers.

    References
    ----------
    .. [1] M. Fang, X. Cao, J. Jia, N. Gong, "Local model poisoning attacks to
       Byzantine-robust federated learning", USENIX Security 2020: the trimmed-mean attack.

    Examples
    --------
    >>> from fedsim.examples import example_view, rounded
    >>> view = example_view()  # peers 5 and 6 attack peer 0; they observe the 5 honest heads
    >>> rounded(FangTrimmedMean().craft(view)[(5, 0)])  # below the smallest honest 1s
    tensor([[0.6700, 0.1800, 0.1100],
            [0.1100, 0.5900, 0.1600]])
    """

    name = "fang_trimmed_mean"
    parameters = {"b": Interval(float, 1, None, closed="neither")}

    def __init__(self, b: float = 2.0):
        self.b = float(b)

    def craft(self, view):
        per_sender = {}
        for s in view.byzantine_ids:
            benign = honest_heads(view, s)
            crafted = fang_trimmed_mean_heads(benign.flatten(1), reference_head(view, s).flatten(),
                                              1, self.b, view.rng)
            per_sender[s] = crafted[0].reshape(benign.shape[1:])
        return send_to_all(view, per_sender)
