"""Label flipping (data poisoning)."""
from __future__ import annotations

from typing import Optional

import torch

from attacks.base import Attack, PoisonedData, send_trained
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


@register("attacks", "label_flip")
class LabelFlip(Attack):
    """Byzantine peers train on flipped labels, then send their heads honestly.

    Label-flipping data poisoning as used in the Byzantine-robust learning literature
    (e.g. Biggio, Nelson, Laskov 2012, "Poisoning attacks against support vector
    machines"; Fang et al. 2020 and Karimireddy et al. 2022 use ``c -> C - 1 - c``).
    Every training label ``c`` of a Byzantine peer becomes ``C - 1 - c``, or
    ``mapping[c]`` when a ``mapping`` ``{source: target}`` is given (unmapped labels are
    kept; keys may be strings, as YAML writes them). Images are not changed. The
    peers then train honestly on the flipped data and send what they trained.

    Default ``mapping = None`` (the reversal ``C - 1 - c``).
    """

    name = "label_flip"
    poisons_data = True

    def __init__(self, mapping: Optional[dict] = None):
        if mapping is not None:
            if not isinstance(mapping, dict):
                raise ValueError(f"mapping must be a dict {{source: target}}, not {type(mapping).__name__}")
            try:
                mapping = {int(k): int(v) for k, v in mapping.items()}
            except (TypeError, ValueError):
                raise ValueError(f"mapping must map class ids to class ids, got {mapping!r}") from None
            if any(c < 0 for pair in mapping.items() for c in pair):
                raise ValueError(f"mapping holds a negative class id: {mapping!r}")
        self.mapping = mapping

    def poison(self, images, labels, n_classes, rng):
        return PoisonedData(labels=flip_labels(labels, n_classes, self.mapping))

    def craft(self, view):
        return send_trained(view)
