"""Inverting Gradients (:class:`InvertingGradients`) and its step-size schedule."""
from __future__ import annotations

from typing import Optional

import torch

from attacks.inversion.base import (InversionAttack, Reconstruction, VictimUpdate,
                                    default_rng, dummy_delta, features_of, frozen)
from attacks.inversion.labels import infer_labels, labels_per_step
from attacks.inversion.matching import cosine_distance, total_variation
from fedsim.params import Boolean, Interval
from fedsim.registry import register


def step_decay_milestones(iterations: int) -> list[int]:
    """Geiping et al.'s schedule: divide the step size by 10 at 3/8, 5/8, 7/8 of the run."""
    return [int(iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]


@register("inversions", "inverting_gradients")
class InvertingGradients(InversionAttack):
    """Inverting Gradients: match the update's direction (cosine) with a total-variation prior.
    Geiping, Bauermeister, Droege, Moeller 2020, "Inverting gradients -- how easy is it
    to break privacy in federated learning?", NeurIPS.

    Labels are inferred from the update first (:func:`attacks.inversion.labels.infer_labels`,
    iDLG / LLG counting), then dummy images ``x'`` in [0, 1] minimise::

        1 - <d', d> / (||d'|| ||d||)  +  tv_weight * TV(x'),
        d' = T(replay(H0, backbone(x'), labels) - H0),   d = H1 - H0,

    with Adam on the *signed* gradient (``x'.grad <- sign(x'.grad)``), the step size divided
    by 10 at 3/8, 5/8 and 7/8 of the iterations (:func:`step_decay_milestones`), and ``x'``
    clamped to [0, 1] after every step (the paper's "boxed" constraint).

    Parameters
    ----------
    iterations : int >= 1, default 200
        Adam steps per trial (for CPU speed; the paper uses 24k).
    lr : float > 0, default 0.1
        Adam's step size (the paper's).
    restarts : int >= 1, default 2
        Independent trials; the one with the smallest cosine matching loss wins (the
        paper uses 8).
    tv_weight : float >= 0, default 1e-2
        Weight of the total-variation prior.
    signed : bool, default True
        Use the sign of the gradient, as the paper does.

    Notes
    -----
    Trials start from ``x' ~ U[0, 1]`` (the paper draws N(0, 1) in its normalised input
    space; U[0, 1] is the same idea in our un-normalised [0, 1] space).

    References
    ----------
    .. [1] J. Geiping, H. Bauermeister, H. Droege, M. Moeller, "Inverting gradients -- how
       easy is it to break privacy in federated learning?", NeurIPS 2020.

    Examples
    --------
    >>> from fedsim.examples import example_update, rounded
    >>> update = example_update()  # one SGD step on the private sample [0.9, 0.1] of class 0
    >>> attack = InvertingGradients(iterations=100, restarts=1)
    >>> result = attack.reconstruct(update, torch.nn.Identity(), rng=torch.Generator().manual_seed(0))
    >>> rounded(result.images), result.labels
    (tensor([[[0.9000, 0.1000]]]), tensor([[0]]))
    """

    name = "inverting_gradients"
    parameters = {"iterations": Interval(int, 1, None), "lr": Interval(float, 0, None, closed="neither"), "restarts": Interval(int, 1, None),
                  "tv_weight": Interval(float, 0, None), "signed": Boolean()}

    def __init__(self, iterations: int = 200, lr: float = 0.1, restarts: int = 2, tv_weight: float = 1e-2,
                 signed: bool = True):
        self.iterations, self.lr, self.restarts = iterations, float(lr), restarts
        self.tv_weight, self.signed = float(tv_weight), signed

    def reconstruct(self, update: VictimUpdate, backbone: torch.nn.Module,
                    generator: Optional[torch.nn.Module] = None,
                    rng: Optional[torch.Generator] = None) -> Reconstruction:
        rng = default_rng(rng)
        ndim = len(update.image_shape)
        labels = labels_per_step(infer_labels(update), update.local_steps, update.batch_size)
        observed = update.observed_delta
        best = None
        with frozen(backbone):
            for _ in range(self.restarts):
                images = torch.rand(update.local_steps, update.batch_size, *update.image_shape, generator=rng)
                images.requires_grad_(True)
                optimizer = torch.optim.Adam([images], lr=self.lr)
                schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, step_decay_milestones(self.iterations),
                                                                gamma=0.1)
                for _ in range(self.iterations):
                    optimizer.zero_grad()
                    dummy = dummy_delta(update, features_of(backbone, images, ndim), labels)
                    loss = cosine_distance(dummy, observed) + self.tv_weight * total_variation(images, ndim)
                    loss.backward()
                    if self.signed:
                        images.grad.sign_()
                    optimizer.step()
                    schedule.step()
                    with torch.no_grad():
                        images.clamp_(0.0, 1.0)
                with torch.no_grad():
                    distance = float(cosine_distance(dummy_delta(update, features_of(backbone, images, ndim), labels),
                                                     observed))
                if best is None or distance < best[0]:
                    best = (distance, images.detach().clone())
            images = best[1]
            with torch.no_grad():
                feats = features_of(backbone, images, ndim)
        return Reconstruction(images=images, labels=labels, features=feats)
