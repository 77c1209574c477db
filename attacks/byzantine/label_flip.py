"""Label flipping (data poisoning)."""
from __future__ import annotations

from typing import Optional

import torch

from attacks.base import Attack, PoisonedData, send_trained
from fedsim.params import Boolean, Digits, Interval, MappingOf
from fedsim.registry import register


def flip_labels(labels: torch.Tensor, n_classes: int, mapping: Optional[dict] = None) -> torch.Tensor:
    """``c -> mapping[c]`` (labels not in ``mapping`` stay), or ``c -> C - 1 - c`` without one."""
    if mapping is None:
        return (n_classes - 1) - labels
    table = torch.arange(n_classes, dtype=labels.dtype)
    for source, target in mapping.items():
        source, target = int(source), int(target)
        for c in (source, target):
            if not 0 <= c < n_classes:
                raise ValueError(f"label_flip mapping: class {c} is outside 0..{n_classes - 1}")
        table[source] = target
    return table[labels]


def shift_labels(labels: torch.Tensor, n_classes: int, shift: int) -> torch.Tensor:
    """``c -> (c + shift) mod C``; ``shift = -1`` is the Bristle paper's "label flip all"."""
    return torch.remainder(labels + int(shift), n_classes)


def swap_first_two(labels: torch.Tensor) -> torch.Tensor:
    """Swap the two lowest classes present in ``labels`` (the Bristle paper's "label flip
    2"); labels holding fewer than two classes are returned unchanged."""
    present = torch.unique(labels)
    if len(present) < 2:
        return labels.clone()
    first, second = present[0], present[1]
    return torch.where(labels == first, second, torch.where(labels == second, first, labels))


@register("attacks", "label_flip")
class LabelFlip(Attack):
    """Label flipping: Byzantine peers train on flipped labels, then send their heads honestly.
    Biggio, Nelson, Laskov 2012, "Poisoning attacks against support vector machines",
    ICML (the reversal ``c -> C - 1 - c`` as in Fang et al. 2020 and Karimireddy et al. 2022).

    Every training label ``c`` of a Byzantine peer becomes ``C - 1 - c``, or
    ``mapping[c]``, or ``(c + shift) mod C``, or the two lowest held classes swap. Images
    are not changed. The peers then train honestly on the flipped data and send what
    they trained.

    Parameters
    ----------
    mapping : dict, default None
        ``{source: target}`` class ids (unmapped labels are kept; keys may be strings,
        as YAML writes them).
    shift : int, default None
        Every label ``c`` becomes ``(c + shift) mod C``.
    swap_first_two : bool, default False
        The two lowest classes the peer holds swap labels.

    Notes
    -----
    At most one of ``mapping``, ``shift`` and ``swap_first_two``; none of them means the
    reversal ``C - 1 - c``. The two label flips of the Bristle paper (Verbraeken et al.
    2021, section 6; its reference implementation jverbraeken/trustchain-superapp,
    ``fedml/.../dataset/mnist/CustomMnistManager.kt`` lines 33-45): ``shift=-1``, "label
    flip all" (the reference labels the images of class ``c + 1`` as ``c``), and
    ``swap_first_two=True``, "label flip 2" (the reference's ``usedIndices[0]`` and
    ``usedIndices[1]``).

    References
    ----------
    .. [1] B. Biggio, B. Nelson, P. Laskov, "Poisoning attacks against support vector
       machines", ICML 2012.
    .. [2] J. Verbraeken, M. de Vos, J. Pouwelse, "Bristle: decentralized federated
       learning in Byzantine, non-i.i.d. environments", arXiv:2110.11006, 2021: its two label flips.

    Examples
    --------
    >>> from fedsim.examples import example_data
    >>> features, labels = example_data()
    >>> labels, flip_labels(labels, 2)
    (tensor([0, 1, 0, 1]), tensor([1, 0, 1, 0]))
    """

    name = "label_flip"
    poisons_data = True
    # Keys may arrive as digit strings (JSON has no int keys).
    parameters = {"mapping": [None, MappingOf([Interval(int, 0, None), Digits()], Interval(int, 0, None))],
                  "shift": [None, Interval(int)], "swap_first_two": Boolean()}

    def __init__(self, mapping: Optional[dict] = None, shift: Optional[int] = None,
                 swap_first_two: bool = False):
        self.mapping = None if mapping is None else {int(k): v for k, v in mapping.items()}
        self.shift, self.swap_first_two = shift, bool(swap_first_two)

    @staticmethod
    def check_run(args, facts):
        mapping = args["mapping"] or {}
        if sum([args["mapping"] is not None, args["shift"] is not None, bool(args["swap_first_two"])]) > 1:
            return [("shift", "must not be combined with mapping or swap_first_two: give one rule")]
        if facts.n_classes is not None and any(int(c) >= facts.n_classes for pair in mapping.items() for c in pair):
            return [("mapping", f"must map class ids below {facts.n_classes}, the dataset's number of classes")]
        return []

    def poison(self, images, labels, n_classes, rng):
        if self.shift is not None:
            return PoisonedData(labels=shift_labels(labels, n_classes, self.shift))
        if self.swap_first_two:
            return PoisonedData(labels=swap_first_two(labels))
        return PoisonedData(labels=flip_labels(labels, n_classes, self.mapping))

    def craft(self, view):
        return send_trained(view)
