"""Sender-side privacy defenses: transforms of a head *update* before it is sent.

An honest sender that trained its head from ``H0`` to ``H1`` sends
``H0 + T(delta)``, ``delta = H1 - H0`` (``[C, D+1]``), where ``T`` is one of the rules
below, registered under the kind ``privacy_defenses`` (the scenario's
``privacy.defense``). The sender keeps its own untransformed head.

Every rule offers

* ``apply(delta, rng) -> Tensor``: the transformed update; a pure function of ``delta``
  and the generator's state (the same seed gives the same output). The result keeps
  ``delta``'s shape, dtype and device, and stays differentiable with respect to
  ``delta`` where the rule allows it (the adaptive inversion attacker replays the
  transform on its dummy update; see each rule for how).
* ``apply_group(deltas [n, C, P], rngs) -> [n, C, P]``: one generator per sender.
* ``bytes_per_message(numel) -> int``: the payload of one transformed update of
  ``numel`` entries, for the run's ``bytes_sent``.
* ``describe() -> dict``: the rule's name and parameters, for the run summary.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from fedsim.registry import register

__all__ = ["PrivacyDefense", "NoPrivacy", "DPGaussian", "TopK", "StochasticQuantization",
           "clip_by_norm", "topk_mask", "stochastic_quantize"]


# ----------------------------------------------------------------------------- pure math
def clip_by_norm(delta: torch.Tensor, clip: float) -> torch.Tensor:
    """``delta * min(1, clip / ||delta||_2)``, the L2 norm over all entries.

    Written as ``clip / max(||delta||, clip)`` so that a zero update stays zero and
    the gradient stays finite.
    """
    norm = torch.linalg.vector_norm(delta)
    return delta * (clip / torch.clamp(norm, min=clip))


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
def _positive_number(key: str, value, allow_zero: bool = False) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value >= 0 if allow_zero else value > 0))
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{key} must be a finite number {bound}; got {value!r}")
    return float(value)


def _positive_int(key: str, value, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (high is not None and value > high):
        allowed = f"an integer in 1..{high}" if high is not None else "a positive integer"
        raise ValueError(f"{key} must be {allowed}; got {value!r}")
    return int(value)


def _check_delta(delta) -> None:
    if not isinstance(delta, torch.Tensor) or not delta.is_floating_point():
        raise ValueError(f"delta must be a floating-point tensor; got {type(delta).__name__} "
                         f"{getattr(delta, 'dtype', '')}")


def _check_numel(numel) -> int:
    if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
        raise ValueError(f"numel must be a non-negative integer; got {numel!r}")
    return numel


# ----------------------------------------------------------------------------- the rules
class PrivacyDefense:
    """A transform of one update. Subclasses implement :meth:`apply`."""

    name = "privacy_defense"

    def apply(self, delta: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def apply_group(self, deltas: torch.Tensor, rngs: Sequence[torch.Generator]) -> torch.Tensor:
        """``deltas [n, C, P]``, one generator per row -> ``[n, C, P]``; row ``i`` is
        ``apply(deltas[i], rngs[i])``."""
        if not isinstance(deltas, torch.Tensor) or deltas.dim() < 1:
            raise ValueError(f"deltas must be a tensor [n, ...]; got {type(deltas).__name__}")
        if len(rngs) != deltas.shape[0]:
            raise ValueError(f"need one generator per update: {deltas.shape[0]} updates, {len(rngs)} generators")
        if deltas.shape[0] == 0:
            return deltas.clone()
        return torch.stack([self.apply(deltas[i], rngs[i]) for i in range(deltas.shape[0])])

    def bytes_per_message(self, numel: int) -> int:
        """Dense float32 payload: 4 bytes per entry."""
        return 4 * _check_numel(numel)

    def describe(self) -> dict:
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({args})"


@register("privacy_defenses", "none")
class NoPrivacy(PrivacyDefense):
    """The identity: the update is sent as it is (dense float32)."""

    name = "none"

    def apply(self, delta, rng=None):
        _check_delta(delta)
        return delta.clone()


@register("privacy_defenses", "dp_gaussian")
class DPGaussian(PrivacyDefense):
    """Clip the update's L2 norm to ``clip``, then add Gaussian noise to every entry.

    The Gaussian mechanism of Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar, Zhang
    2016, "Deep learning with differential privacy" (CCS), applied to the whole local
    update as in DP-FedAvg (McMahan, Ramage, Talwar, Zhang 2018, "Learning differentially
    private recurrent language models", ICLR)::

        T(delta) = delta * min(1, clip / ||delta||_2) + N(0, (noise_multiplier * clip)^2 I)

    Defaults: ``clip = 1.0``, ``noise_multiplier = 1.0``. The norm is over all
    ``C x (D+1)`` entries of the head (flat clipping, as in DP-FedAvg, not per row). This
    is per-message local noise; no privacy accountant is run (the epsilon of a run depends
    on how many rounds a peer's update is observed). The clipped part is differentiable
    in ``delta``; the noise is a constant drawn from ``rng``.
    """

    name = "dp_gaussian"

    def __init__(self, clip: float = 1.0, noise_multiplier: float = 1.0):
        self.clip = _positive_number("clip", clip)
        self.noise_multiplier = _positive_number("noise_multiplier", noise_multiplier, allow_zero=True)

    @property
    def noise_std(self) -> float:
        return self.noise_multiplier * self.clip

    def apply(self, delta, rng):
        _check_delta(delta)
        clipped = clip_by_norm(delta, self.clip)
        if self.noise_multiplier == 0:
            return clipped
        return clipped + self.noise_std * _draw(rng, delta, "randn")

    def describe(self):
        return {"name": self.name, "clip": self.clip, "noise_multiplier": self.noise_multiplier,
                "noise_std": self.noise_std}


@register("privacy_defenses", "topk")
class TopK(PrivacyDefense):
    """Keep the ``k`` entries of largest magnitude, zero the rest.

    Gradient dropping of Aji & Heafield 2017, "Sparse communication for distributed
    gradient descent" (EMNLP), with an exact top-k instead of their sampled threshold.
    ``k`` is given directly, or as ``fraction`` of the update's entries
    (``k = max(1, ceil(fraction * numel))``, capped at ``numel``); default
    ``fraction = 0.1``. Giving both is an error. The paper's residual (the dropped part
    added to the next update) is not sent: the sender keeps its full head locally, so
    the dropped part is not lost to it, and the transform stays stateless. Payload:
    ``8 k`` bytes (a float32 value and an int32 index per kept entry). The kept entries
    are ``delta * mask``, differentiable in ``delta`` (the mask is chosen on
    ``|delta|`` without gradient).
    """

    name = "topk"

    def __init__(self, fraction: float | None = None, k: int | None = None):
        if fraction is not None and k is not None:
            raise ValueError(f"give topk either fraction or k, not both; got fraction={fraction!r}, k={k!r}")
        if k is not None:
            self.k, self.fraction = _positive_int("k", k), None
        else:
            fraction = 0.1 if fraction is None else fraction
            self.fraction = _positive_number("fraction", fraction)
            if self.fraction > 1:
                raise ValueError(f"fraction must be in (0, 1]; got {fraction!r}")
            self.k = None

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

    def bytes_per_message(self, numel):
        return 8 * self.k_for(numel)

    def describe(self):
        return {"name": self.name, "fraction": self.fraction, "k": self.k}


@register("privacy_defenses", "quantize")
class StochasticQuantization(PrivacyDefense):
    """``bits``-bit stochastic uniform quantization of the update.

    After QSGD (Alistarh, Grubic, Li, Tomioka, Vojnovic 2017, "QSGD: communication-
    efficient SGD via gradient quantization and encoding", NeurIPS)::

        Q(v_i) = s * sign(v_i) * xi_i / L,   s = max_j |v_j|,   L = 2^(bits-1) - 1
        xi_i = l + 1 with probability |v_i| L / s - l, else l,   l = floor(|v_i| L / s)

    One bit holds the sign and ``bits - 1`` bits the level ``xi_i`` in ``0..L`` (so
    ``bits >= 2``; default ``bits = 8``, 127 levels). The scale is the per-tensor max
    ``|v|`` (QSGD's analysis uses the L2 norm; the max gives finer steps and cannot
    overflow the levels). Stochastic rounding draws one uniform per entry from ``rng``:
    ``E[Q(v)] = v`` and ``|Q(v) - v| < s / L``. Payload: ``ceil(bits * numel / 8) + 4``
    bytes (the codes, then ``s`` as float32); QSGD's Elias coding of the codes is not
    modelled. Rounding has no gradient, so when ``delta`` requires one the result
    passes it straight through (``dQ/dv = 1``; Bengio, Leonard, Courville 2013), with the
    forward value unchanged.
    """

    name = "quantize"

    def __init__(self, bits: int = 8):
        self.bits = _positive_int("bits", bits, high=16)
        if self.bits < 2:
            raise ValueError(f"bits must be an integer in 2..16 (one sign bit plus at least one level bit); "
                             f"got {bits!r}")

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

    def bytes_per_message(self, numel):
        return math.ceil(self.bits * _check_numel(numel) / 8) + 4

    def describe(self):
        return {"name": self.name, "bits": self.bits, "levels": self.levels}
