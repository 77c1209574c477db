"""Backdoor with a pixel-pattern trigger (Bagdasaryan et al. 2020; Gu et al. BadNets)."""
from __future__ import annotations

from typing import Optional

import torch

from attacks.base import Attack, EvaluationSet, PoisonedData, send_to_all, send_trained
from attacks.byzantine._reference import reference_head
from fedsim.registry import register

MODES = ("replace", "add")


def default_patch_size(height: int, width: int) -> int:
    """3 pixels on a 28x28 image, scaled with the smaller side, at least 1:
    ``max(1, round(3 * min(H, W) / 28))`` (1 on 8x8 digits, 3 on 32x32)."""
    return max(1, round(3 * min(height, width) / 28))


def add_trigger(images: torch.Tensor, patch_size: int, value: float = 1.0) -> torch.Tensor:
    """A copy of ``images [m, ..., H, W]`` with the bottom-right ``patch_size`` square
    set to ``value`` in every channel."""
    out = images.clone()
    out[..., -patch_size:, -patch_size:] = value
    return out


def model_replacement(head: torch.Tensor, reference: torch.Tensor, boost: float) -> torch.Tensor:
    """``reference + boost * (head - reference)`` (Bagdasaryan et al.'s scaling, gamma = boost)."""
    return reference + boost * (head - reference)


@register("attacks", "backdoor")
class Backdoor(Attack):
    """Backdoor: Bagdasaryan, Veit, Hua, Estrin, Shmatikov (AISTATS 2020), "How to
    backdoor federated learning", with the pixel-pattern trigger of Gu, Dolan-Gavitt,
    Garg (2017), "BadNets".

    Data: the Byzantine peers' training images get a bright square (``value`` 1.0, the
    top of the [0, 1] range) in the bottom-right corner and the label ``target``.
    ``mode="replace"`` (default) triggers and relabels a random ``poison_fraction`` of
    their samples in place (the paper mixes backdoored and clean inputs in each batch,
    keeping the main task); ``mode="add"`` keeps every clean sample and appends
    triggered copies of that fraction.

    Model replacement: each peer sends ``reference + boost * (head - reference)``, with
    reference its head at the start of the round (the paper's ``G + gamma (X - G)``,
    ``gamma = n / eta`` to replace the global model); ``boost = 1`` sends the trained
    head unchanged.

    Defaults: ``target=0``, ``patch_size=None`` (3 on 28x28 images, scaled with the
    image side, see :func:`default_patch_size`), ``poison_fraction=0.5``, ``boost=1``.
    The engine measures the attack success rate on :meth:`evaluation_set`.
    """

    name = "backdoor"
    poisons_data = True

    def __init__(self, target: int = 0, patch_size: Optional[int] = None, poison_fraction: float = 0.5,
                 boost: float = 1.0, mode: str = "replace", value: float = 1.0):
        if not isinstance(target, int) or target < 0:
            raise ValueError(f"target must be a class id >= 0, not {target!r}")
        if patch_size is not None and (not isinstance(patch_size, int) or patch_size < 1):
            raise ValueError(f"patch_size must be an integer >= 1, not {patch_size!r}")
        if not 0.0 < poison_fraction <= 1.0:
            raise ValueError(f"poison_fraction must be in (0, 1], not {poison_fraction!r}")
        if not boost > 0:
            raise ValueError(f"boost must be > 0, not {boost!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.target, self.patch_size = target, patch_size
        self.poison_fraction, self.boost, self.mode, self.value = float(poison_fraction), float(boost), mode, float(value)

    def trigger(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[m, 1, H, W]`` in [0, 1] with the trigger patch set."""
        height, width = images.shape[-2:]
        size = self.patch_size or default_patch_size(height, width)
        if size > min(height, width):
            raise ValueError(f"patch_size {size} does not fit {height}x{width} images")
        return add_trigger(images, size, self.value)

    def poison(self, images, labels, n_classes, rng):
        if self.target >= n_classes:
            raise ValueError(f"backdoor target {self.target} is outside 0..{n_classes - 1}")
        count = int(round(self.poison_fraction * labels.shape[0]))
        chosen = torch.randperm(labels.shape[0], generator=rng)[:count]
        if self.mode == "replace":
            images, labels = images.clone(), labels.clone()
            images[chosen] = self.trigger(images[chosen])
            labels[chosen] = self.target
            return PoisonedData(labels=labels, images=images)
        extra_labels = torch.full((count,), self.target, dtype=labels.dtype)
        return PoisonedData(labels=torch.cat([labels, extra_labels]),
                            images=torch.cat([images, self.trigger(images[chosen])]))

    def evaluation_set(self, test_images, test_labels):
        """The test images of every class but ``target``, triggered: the success rate is
        the share of them classified as ``target``."""
        keep = test_labels != self.target
        return EvaluationSet(images=self.trigger(test_images[keep]), target=int(self.target))

    def craft(self, view):
        if self.boost == 1.0:
            return send_trained(view)
        return send_to_all(view, {
            s: model_replacement(view.own_head(s), reference_head(view, s), self.boost)
            for s in view.byzantine_ids})
