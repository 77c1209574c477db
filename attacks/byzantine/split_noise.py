"""The Bristle paper's noise attack: uniform noise, negative on half of the classes."""
from __future__ import annotations

import torch

from attacks.base import Attack
from fedsim.params import Interval
from fedsim.registry import register


def split_noise(n_classes: int, width: int, scale: float, rng: torch.Generator) -> torch.Tensor:
    """``[C, width]`` with rows ``c < C // 2`` drawn from ``U(-scale, 0)`` and the others
    from ``U(0, scale)``: ``u * (-scale if c < C // 2 else scale)``, ``u ~ U(0, 1)``."""
    u = torch.rand(n_classes, width, generator=rng)
    sign = torch.where(torch.arange(n_classes) < n_classes // 2, -1.0, 1.0)
    return u * (sign * float(scale)).unsqueeze(1)


@register("attacks", "split_noise")
class SplitNoise(Attack):
    """Split noise: uniform noise, negative on the first half of the classes, positive on the rest.
    The "noise" attack of Bristle (Verbraeken, de Vos, Pouwelse 2021, arXiv:2110.11006,
    section 6), as its reference implementation builds it.

    Entry ``(c, p)`` of the sent head ``[C, D+1]`` is ``u * -scale`` for ``c < C // 2`` and
    ``u * scale`` otherwise, ``u ~ U(0, 1)``, bias column included. The head votes for
    the upper half of the classes whatever the input, so the attack needs no knowledge
    of the honest heads.

    Parameters
    ----------
    scale : float > 0, default 0.5
        The reference's constant.

    Notes
    -----
    The reference (jverbraeken/trustchain-superapp
    ``fedml/.../modelPoisoningAttack/Noise.kt`` line 23: ``random.nextFloat() * (if
    (column < numColumns / 2) -0.5f else 0.5f)`` for every entry of the weight matrix
    ``W [D, C]``, whose columns are classes) has no bias in its output layer. It draws
    new noise for every receiver (each receiver generates its attackers' vectors,
    ``Node.addPotentialAttacks``); so does this attack, in the order of (sender,
    receiver) pairs.

    References
    ----------
    .. [1] J. Verbraeken, M. de Vos, J. Pouwelse, "Bristle: decentralized federated
       learning in Byzantine, non-i.i.d. environments", arXiv:2110.11006, 2021: its noise attack.

    Examples
    --------
    >>> from fedsim.examples import example_view, rounded
    >>> view = example_view()  # peers 5 and 6 attack peer 0; they observe the 5 honest heads
    >>> torch.sign(SplitNoise().craft(view)[(5, 0)])  # class 0 negative, class 1 positive
    tensor([[-1., -1., -1.],
            [ 1.,  1.,  1.]])
    """

    name = "split_noise"
    parameters = {"scale": Interval(float, 0, None, closed="neither")}

    def __init__(self, scale: float = 0.5):
        self.scale = float(scale)

    def craft(self, view):
        n_classes, width = view.own_heads.shape[1:]
        return {(s, r): split_noise(n_classes, width, self.scale, view.rng).to(view.own_heads.dtype)
                for s in view.byzantine_ids for r in view.receivers.get(s, [])}
