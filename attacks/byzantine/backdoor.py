"""Backdoor with a pixel-pattern trigger (Bagdasaryan et al. 2020; Gu et al. BadNets)."""
from __future__ import annotations

from typing import Optional

import torch

from attacks.base import Attack, EvaluationSet, PoisonedData, send_to_all, send_trained
from attacks.byzantine._neighbourhood import byzantine_senders_of, receiver_degree
from attacks.byzantine._reference import reference_head
from fedsim.params import Interval, Options
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
    """Backdoor: train on triggered, relabelled images and scale the update (model replacement).
    Bagdasaryan, Veit, Hua, Estrin, Shmatikov 2020, "How to backdoor federated learning",
    AISTATS, with the pixel-pattern trigger of Gu, Dolan-Gavitt, Garg 2017, "BadNets".

    Data: the Byzantine peers' training images get a bright square (``value``, the top
    of the [0, 1] range) in the bottom-right corner and the label ``target``.
    Model replacement: each peer sends ``reference + boost * (head - reference)``, with
    reference its head at the start of the round (the paper's ``G + gamma (X - G)``,
    ``gamma = n / eta`` to replace the global model).

    Parameters
    ----------
    target : int >= 0, default 0
        The label of triggered images.
    patch_size : int >= 1, default None
        Side of the trigger square; ``None``: 3 on 28x28 images, scaled with the image
        side (:func:`default_patch_size`).
    poison_fraction : float in (0, 1], default 0.5
        Share of a Byzantine peer's samples that are triggered.
    boost : float > 0 or "auto", default 1
        ``gamma``; 1 sends the trained head unchanged. ``"auto"`` replaces each
        receiver's plain average (see Notes).
    mode : {"replace", "add"}, default "replace"
        ``"replace"`` triggers and relabels the chosen samples in place (the paper mixes
        backdoored and clean inputs in each batch, keeping the main task); ``"add"``
        keeps every clean sample and appends triggered copies.
    value : float, default 1.0
        The trigger's pixel value.

    Notes
    -----
    ``boost="auto"``: ``gamma_i = (n_i + 1) / b_i`` for a receiver ``i`` averaging its own
    head and ``n_i`` received ones, ``b_i`` of them Byzantine (``eta = 1``; ``n_i`` from
    the graph when the attack knows the topology, else the sender's own degree, see
    ``attacks.byzantine._neighbourhood``), so that the receiver's mean lands on the
    backdoored head when the honest heads sit near the reference. The engine measures
    the attack success rate on :meth:`evaluation_set`.

    References
    ----------
    .. [1] E. Bagdasaryan, A. Veit, Y. Hua, D. Estrin, V. Shmatikov, "How to backdoor
       federated learning", AISTATS 2020.
    .. [2] T. Gu, B. Dolan-Gavitt, S. Garg, "BadNets: identifying vulnerabilities in the
       machine learning model supply chain", arXiv:1708.06733, 2017.

    Examples
    --------
    >>> from fedsim.examples import example_view, rounded
    >>> view = example_view()  # peers 5 and 6 attack peer 0; they observe the 5 honest heads
    >>> Backdoor().trigger(torch.zeros(1, 1, 4, 4))[0, 0]  # a 1-pixel patch on a small image
    tensor([[0., 0., 0., 0.],
            [0., 0., 0., 0.],
            [0., 0., 0., 0.],
            [0., 0., 0., 1.]])
    >>> rounded(Backdoor(boost=3.0).craft(view)[(5, 0)])  # its trained update, tripled
    tensor([[3.3000, 0.0000, 0.3000],
            [0.0000, 2.7000, 0.0000]])
    """

    name = "backdoor"
    poisons_data = True
    parameters = {"target": Interval(int, 0, None), "patch_size": [None, Interval(int, 1, None)],
                  "poison_fraction": Interval(float, 0, 1, closed="right"),
                  "boost": [Interval(float, 0, None, closed="neither"), Options("auto")],
                  "mode": Options(*MODES),
                  "value": Interval(float)}

    def __init__(self, target: int = 0, patch_size: Optional[int] = None, poison_fraction: float = 0.5,
                 boost: float = 1.0, mode: str = "replace", value: float = 1.0):
        self.target, self.patch_size = target, patch_size
        self.poison_fraction, self.mode, self.value = float(poison_fraction), mode, float(value)
        self.boost = boost if boost == "auto" else float(boost)

    @staticmethod
    def check_run(args, facts):
        if facts.n_classes is not None and args["target"] >= facts.n_classes:
            return [("target", f"must be a class id below {facts.n_classes}, the dataset's number of classes")]
        return []

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
        if self.boost == "auto":
            senders_of = byzantine_senders_of(view)
            return {(s, r): model_replacement(view.own_head(s), reference_head(view, s),
                                              (receiver_degree(view, r, s) + 1) / senders_of[r])
                    for s in view.byzantine_ids for r in view.receivers.get(s, [])}
        if self.boost == 1.0:
            return send_trained(view)
        return send_to_all(view, {
            s: model_replacement(view.own_head(s), reference_head(view, s), self.boost)
            for s in view.byzantine_ids})
