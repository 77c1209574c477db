"""Sender-side privacy defenses: transforms of a head *update* before it is sent.

An honest sender that trained its head from ``H0`` to ``H1`` sends
``H0 + T(delta)``, ``delta = H1 - H0`` (``[C, D+1]``), where ``T`` is one of the rules
below, registered under the kind ``privacy_defenses`` (the scenario's
``privacy.defense``). The sender keeps its own untransformed head.

Every rule is a :class:`fedsim.api.PrivacyDefense` and offers

* ``apply(delta, rng) -> Tensor``: the transformed update; a pure function of ``delta``
  and the generator's state (the same seed gives the same output). The result keeps
  ``delta``'s shape, dtype and device, and stays differentiable with respect to
  ``delta`` where the rule allows it (the adaptive inversion attacker replays the
  transform on its dummy update; see each rule for how).
* ``replay(rng)``: what the adaptive attacker applies to its dummy update, a
  deterministic function (the transform's expectation over the sender's randomness
  where it has a closed form; ``None`` for the identity).
* ``bytes_per_message(numel) -> int``: the payload of one transformed update of
  ``numel`` entries, for the run's ``bytes_sent``.
* ``describe() -> dict``: the rule's name and parameters, for the run summary.
"""
from __future__ import annotations

import math

import torch

from fedsim import functional as F
from fedsim.accountant import ACCOUNTANT, gaussian_epsilon
from fedsim.api import PrivacyDefense
from fedsim.params import Interval
from fedsim.registry import register

__all__ = ["PrivacyDefense", "NoPrivacy", "DPGaussian", "TopK", "StochasticQuantization",
           "topk_mask", "stochastic_quantize"]


# ----------------------------------------------------------------------------- pure math
def topk_mask(delta: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of ``delta``'s shape, True at exactly ``k`` entries of largest ``|delta|``
    (ties broken by ``torch.topk``'s deterministic order)."""
    flat = delta.detach().abs().flatten()
    mask = torch.zeros(flat.shape, dtype=torch.bool, device=delta.device)
    mask[torch.topk(flat, k, sorted=False).indices] = True
    return mask.view(delta.shape)


def stochastic_quantize(delta: torch.Tensor, levels: int, uniform: torch.Tensor) -> torch.Tensor:
    """QSGD-style quantization with scale ``s = max |delta|`` and ``levels`` magnitude levels.

    ``Q(v) = s * sign(v) * floor(|v| / s * levels + u) / levels`` with ``u`` uniform in
    ``[0, 1)`` (``uniform``, one per entry): ``|v| / s * levels = l + p`` rounds up to
    ``l + 1`` with probability ``p`` and down to ``l`` otherwise, so ``E[Q(v)] = v`` and
    ``|Q(v) - v| < s / levels``. An all-zero ``delta`` stays zero; one with a non-finite
    entry is returned unchanged (there is no finite scale; receivers count it).
    """
    scale = delta.detach().abs().max()
    if not torch.isfinite(scale):
        return delta.detach().clone()
    if scale == 0:
        return torch.zeros_like(delta.detach())
    magnitude = delta.detach().abs() / scale * levels
    level = torch.floor(magnitude + uniform).clamp(max=levels)   # u < 1, clamp guards rounding at |v| = s
    return torch.sign(delta.detach()) * level * (scale / levels)


def _draw(rng: torch.Generator, like: torch.Tensor, kind: str) -> torch.Tensor:
    """Standard normal (``randn``) or uniform ``[0, 1)`` (``rand``) entries of ``like``'s
    shape and dtype, drawn on the generator's device, then moved to ``like``'s."""
    dtype = like.dtype if like.dtype in (torch.float32, torch.float64) else torch.float32
    draw = torch.randn if kind == "randn" else torch.rand
    values = draw(like.shape, generator=rng, dtype=dtype, device=rng.device)
    return values.to(device=like.device, dtype=like.dtype)


# ----------------------------------------------------------------------------- validation
def _check_delta(delta) -> None:
    if not isinstance(delta, torch.Tensor) or not delta.is_floating_point():
        raise ValueError(f"delta must be a floating-point tensor; got {type(delta).__name__} "
                         f"{getattr(delta, 'dtype', '')}")


def _check_numel(numel) -> int:
    if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
        raise ValueError(f"numel must be a non-negative integer; got {numel!r}")
    return numel


# ----------------------------------------------------------------------------- the rules
@register("privacy_defenses", "none")
class NoPrivacy(PrivacyDefense):
    """No privacy transform: the update is sent as it is (dense float32).
    The baseline every privacy defense is compared with (no paper).

    ``T(delta) = delta``. The transform has no parameters.

    References
    ----------
    None: the identity is the undefended baseline.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> delta = example_heads()[1][0]  # honest neighbour 1's update (heads start at zero)
    >>> delta
    tensor([[1.1000, 0.0000, 0.1000],
            [0.0000, 0.9000, 0.0000]])
    >>> torch.equal(NoPrivacy().apply(delta), delta), NoPrivacy().bytes_per_message(6)
    (True, 24)
    """

    name = "none"
    parameters = {}

    def apply(self, delta, rng=None):
        _check_delta(delta)
        return delta.clone()

    def replay(self, rng):
        return None


@register("privacy_defenses", "dp_gaussian")
class DPGaussian(PrivacyDefense):
    """Gaussian mechanism: clip the update's L2 norm to ``clip``, then add Gaussian noise.
    Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar, Zhang 2016, "Deep learning with
    differential privacy", CCS; applied to the whole local update as in DP-FedAvg
    (McMahan, Ramage, Talwar, Zhang 2018, ICLR).

    ::

        T(delta) = delta * min(1, clip / ||delta||_2) + N(0, (noise_multiplier * clip)^2 I)

    The norm is over all ``C x (D+1)`` entries of the head (flat clipping, as in
    DP-FedAvg, not per row; :func:`fedsim.functional.clip_rows`).

    Parameters
    ----------
    clip : float > 0, default 1.0
        The L2 norm an update is clipped to.
    noise_multiplier : float >= 0, default 1.0
        Noise standard deviation in units of ``clip``.
    delta : float in (0, 1), default 1e-5
        The ``delta`` at which :meth:`epsilon` is reported.

    Notes
    -----
    Per-message local noise, one release a round to all neighbours. A *record* is the
    peer's whole local data (add/remove: the update without it is zero), the L2
    sensitivity is ``clip``, and :meth:`epsilon` composes the rounds by Renyi DP
    (:mod:`fedsim.accountant`, Opacus's RDP accountant). The clipped part is
    differentiable in ``delta``; the noise is a constant drawn from ``rng``.

    References
    ----------
    .. [1] M. Abadi, A. Chu, I. Goodfellow, H. B. McMahan, I. Mironov, K. Talwar, L. Zhang,
       "Deep learning with differential privacy", CCS 2016.
    .. [2] H. B. McMahan, D. Ramage, K. Talwar, L. Zhang, "Learning differentially private
       recurrent language models", ICLR 2018.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> delta = example_heads()[1][0]  # honest neighbour 1's update [[1.1, 0, 0.1], [0, 0.9, 0]]
    >>> rounded(DPGaussian(noise_multiplier=0.0).apply(delta, torch.Generator()))  # norm 1.42 -> 1
    tensor([[0.7700, 0.0000, 0.0700],
            [0.0000, 0.6300, 0.0000]])
    """

    name = "dp_gaussian"
    parameters = {"clip": Interval(float, 0, None, closed="neither"), "noise_multiplier": Interval(float, 0, None),
                  "delta": Interval(float, 0, 1, closed="neither")}

    def __init__(self, clip: float = 1.0, noise_multiplier: float = 1.0, delta: float = 1e-5):
        self.clip, self.noise_multiplier, self.delta = float(clip), float(noise_multiplier), float(delta)

    @property
    def noise_std(self) -> float:
        return self.noise_multiplier * self.clip

    def apply(self, delta, rng):
        _check_delta(delta)
        clipped = self.clipped(delta)
        if self.noise_multiplier == 0:
            return clipped
        return clipped + self.noise_std * _draw(rng, delta, "randn")

    def replay(self, rng):
        """The clipping alone: ``E[clip(delta) + N(0, s^2)] = clip(delta)``, the noise is zero-mean."""
        return self.clipped

    def clipped(self, delta: torch.Tensor) -> torch.Tensor:
        """``delta * min(1, clip / ||delta||_2)``, the norm over all entries (differentiable;
        a zero update stays zero)."""
        return F.clip_rows(delta.flatten(), self.clip).view_as(delta)

    def epsilon(self, rounds: int) -> float:
        """``epsilon`` at ``self.delta`` of a peer's data after ``rounds`` releases
        (:func:`fedsim.accountant.gaussian_epsilon`; ``inf`` without noise)."""
        return gaussian_epsilon(self.noise_multiplier, rounds, self.delta)

    def accounting(self, rounds: int) -> dict:
        """The run summary's ``privacy.epsilon``: ``epsilon`` at ``delta`` after one round
        and after the run's ``rounds`` (``None`` where no finite bound holds, no noise).
        Valid for the released messages given their start heads: a peer merges its own
        un-noised head, so from round 2 on the head it sends from also carries its earlier
        updates unprotected (README, "Privacy")."""
        finite = lambda eps: eps if math.isfinite(eps) else None  # noqa: E731
        return {"delta": self.delta, "per_round": finite(self.epsilon(1)), "run": finite(self.epsilon(rounds)),
                "rounds": rounds, "record": "a peer's whole local data (add/remove)",
                "sensitivity": self.clip, "accountant": ACCOUNTANT}

    def describe(self):
        return {"name": self.name, "clip": self.clip, "noise_multiplier": self.noise_multiplier,
                "noise_std": self.noise_std, "delta": self.delta}


@register("privacy_defenses", "topk")
class TopK(PrivacyDefense):
    """Top-k sparsification: keep the ``k`` entries of largest magnitude, zero the rest.
    Aji & Heafield 2017, "Sparse communication for distributed gradient descent", EMNLP
    (gradient dropping, with an exact top-k instead of their sampled threshold).

    ``T(delta) = delta * mask``, ``mask`` True at the ``k`` entries of largest ``|delta|``;
    ``k = max(1, ceil(fraction * numel))`` (capped at ``numel``) when given as a fraction.

    Parameters
    ----------
    fraction : float in (0, 1], default None
        ``k`` as a share of the update's entries; ``None`` with ``k = None`` means 0.1.
    k : int >= 1, default None
        ``k`` directly; give ``fraction`` or ``k``, not both.

    Notes
    -----
    The paper's residual (the dropped part added to the next update) is not sent: the
    sender keeps its full head locally, so the dropped part is not lost to it, and the
    transform stays stateless. Payload: ``8 k`` bytes (a float32 value and an int32
    index per kept entry). The kept entries are ``delta * mask``, differentiable in
    ``delta`` (the mask is chosen on ``|delta|`` without gradient).

    References
    ----------
    .. [1] A. F. Aji, K. Heafield, "Sparse communication for distributed gradient
       descent", EMNLP 2017.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> delta = example_heads()[1][0]  # honest neighbour 1's update [[1.1, 0, 0.1], [0, 0.9, 0]]
    >>> TopK(k=2).apply(delta), TopK(k=2).bytes_per_message(delta.numel())
    (tensor([[1.1000, 0.0000, 0.0000],
            [0.0000, 0.9000, 0.0000]]), 16)
    """

    name = "topk"
    parameters = {"fraction": [None, Interval(float, 0, 1, closed="right")], "k": [None, Interval(int, 1, None)]}

    def __init__(self, fraction: float | None = None, k: int | None = None):
        self.k = k
        self.fraction = None if k is not None else float(0.1 if fraction is None else fraction)

    @staticmethod
    def check_run(args, facts):
        if args["fraction"] is not None and args["k"] is not None:
            return [("k", "must be null when fraction is given (give fraction or k, not both)")]
        return []

    def k_for(self, numel: int) -> int:
        """How many entries are kept of an update with ``numel`` entries."""
        numel = _check_numel(numel)
        if self.k is not None:
            return min(self.k, numel)
        return min(numel, max(1, math.ceil(self.fraction * numel)))

    def apply(self, delta, rng=None):
        _check_delta(delta)
        if delta.numel() == 0:
            return delta.clone()
        mask = topk_mask(delta, self.k_for(delta.numel()))
        return delta * mask.to(delta.dtype)

    def replay(self, rng):
        """The transform itself: it is deterministic."""
        return self.apply

    def bytes_per_message(self, numel):
        return 8 * self.k_for(numel)

    def describe(self):
        return {"name": self.name, "fraction": self.fraction, "k": self.k}


@register("privacy_defenses", "quantize")
class StochasticQuantization(PrivacyDefense):
    """Stochastic quantization: ``bits``-bit unbiased rounding of every entry (QSGD).
    Alistarh, Grubic, Li, Tomioka, Vojnovic 2017, "QSGD: communication-efficient SGD via
    gradient quantization and encoding", NeurIPS.

    ::

        Q(v_i) = s * sign(v_i) * xi_i / L,   s = max_j |v_j|,   L = 2^(bits-1) - 1
        xi_i = l + 1 with probability |v_i| L / s - l, else l,   l = floor(|v_i| L / s)

    One bit holds the sign and ``bits - 1`` bits the level ``xi_i`` in ``0..L``.
    Stochastic rounding draws one uniform per entry from ``rng``: ``E[Q(v)] = v`` and
    ``|Q(v) - v| < s / L``.

    Parameters
    ----------
    bits : int in 2..16, default 8
        Bits per entry (8: 127 levels).

    Notes
    -----
    The scale is the per-tensor max ``|v|`` (QSGD's analysis uses the L2 norm; the max
    gives finer steps and cannot overflow the levels). Payload: ``ceil(bits * numel / 8)
    + 4`` bytes (the codes, then ``s`` as float32); QSGD's Elias coding of the codes is
    not modelled. Rounding has no gradient, so when ``delta`` requires one the result
    passes it straight through (``dQ/dv = 1``; Bengio, Leonard, Courville 2013), with the
    forward value unchanged.

    References
    ----------
    .. [1] D. Alistarh, D. Grubic, J. Li, R. Tomioka, M. Vojnovic, "QSGD:
       communication-efficient SGD via gradient quantization and encoding", NeurIPS 2017.
    .. [2] Y. Bengio, N. Leonard, A. Courville, "Estimating or propagating gradients
       through stochastic neurons for conditional computation", arXiv:1308.3432, 2013.

    Examples
    --------
    >>> from fedsim.examples import example_heads, rounded
    >>> delta = example_heads()[1][0]  # honest neighbour 1's update [[1.1, 0, 0.1], [0, 0.9, 0]]
    >>> StochasticQuantization(bits=2).apply(delta, torch.Generator().manual_seed(0))  # 0 or +-s
    tensor([[1.1000, 0.0000, 0.0000],
            [0.0000, 1.1000, 0.0000]])
    """

    name = "quantize"
    # One sign bit plus at least one level bit.
    parameters = {"bits": Interval(int, 2, 16)}

    def __init__(self, bits: int = 8):
        self.bits = bits

    @property
    def levels(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def step(self, delta: torch.Tensor) -> float:
        """The quantization step ``max |delta| / L`` for this update."""
        return float(delta.detach().abs().max()) / self.levels if delta.numel() else 0.0

    def apply(self, delta, rng):
        _check_delta(delta)
        if delta.numel() == 0:
            return delta.clone()
        quantized = stochastic_quantize(delta, self.levels, _draw(rng, delta, "rand"))
        if delta.requires_grad:
            # Straight-through: value of `quantized` (adding an exact 0), gradient of `delta`.
            return quantized + (delta - delta.detach())
        return quantized

    def replay(self, rng):
        """The identity: the rounding is unbiased, ``E[Q(delta)] = delta``."""
        return None

    def bytes_per_message(self, numel):
        return math.ceil(self.bits * _check_numel(numel) / 8) + 4

    def describe(self):
        return {"name": self.name, "bits": self.bits, "levels": self.levels}
