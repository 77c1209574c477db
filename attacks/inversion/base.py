"""Gradient inversion against exchanged heads: what the attacker observes, what it
returns, and the differentiable replay of the victim's local training.

Threat model (a curious neighbour): the victim starts a round from head ``H0``
``[C, D+1]``, runs ``local_steps`` mini-batch steps (SGD or Adam, learning rate
``lr``, ``batch_size`` samples a step, each step a different sample of its private
data) on the loss of the head (``linear`` softmax cross-entropy or ``l2svm``), over
the features of a frozen public backbone, and sends ``H1``. The attacker knows
``H0``, the training hyper-parameters, the backbone and the loss, and searches for
images whose replayed training turns ``H0`` into (something close to) ``H1``.

Every optimisation attack here matches the *dummy update* ``H1' - H0`` (after the
sender's privacy transform, when the adaptive attacker knows it) with the observed
``H1 - H0`` (:func:`dummy_delta`); :func:`replay_local_training` computes ``H1'``
differentiably. The interface and the observed update are :mod:`fedsim.api`'s.
"""
from __future__ import annotations

from typing import Optional

import torch

from fedsim import functional as F
from fedsim.api import INVERSION_LOSSES, INVERSION_OPTIMIZERS, InversionAttack, Reconstruction, VictimUpdate
from fedsim.models.heads import get_head, with_bias_column

__all__ = ["InversionAttack", "Reconstruction", "VictimUpdate", "dummy_delta",
           "head_gradient", "replay_local_training", "frozen", "features_of", "default_rng",
           "check_positive_int", "check_positive"]

def dummy_delta(update: VictimUpdate, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``transform(H1' - H0)`` for dummy ``features [S, B, D]`` and ``labels`` (``[S, B]``
    class ids or ``[S, B, C]`` probabilities), differentiable w.r.t. both: the victim's
    training replayed from ``update.start_head`` (:func:`replay_local_training`), then
    the sender's privacy transform as the adaptive attacker knows it."""
    end = replay_local_training(update.start_head.detach(), features, labels, update.lr, update.optimizer,
                                update.loss, weight_decay=update.weight_decay)
    delta = end - update.start_head.detach()
    return update.transform(delta) if update.transform is not None else delta


def _expected_logit_grad(head_fn, logits: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """``sum_y probs[..., y] * dloss(z, y)/dz``: the logit gradient for soft labels.

    For softmax cross-entropy this is ``softmax(z) - probs`` (DLG's soft-label loss); for
    the L2-SVM it is the expected one-vs-rest hinge gradient.
    """
    n_classes = logits.shape[-1]
    every_label = torch.arange(n_classes, device=logits.device).view(n_classes, *([1] * (logits.dim() - 1)))
    every_label = every_label.expand(n_classes, *logits.shape[:-1])
    grads = head_fn.logit_grad(logits.unsqueeze(0).expand(n_classes, *logits.shape), every_label)
    return (probs.movedim(-1, 0).unsqueeze(-1) * grads).sum(dim=0)


def head_gradient(head: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean-loss gradient ``dz^T [x, 1] / B`` w.r.t. ``head [C, D+1]`` for one batch.

    ``features [B, D]``; ``labels [B]`` (class ids) or ``[B, C]`` (probabilities).
    Closed form (``Head.logit_grad``), differentiable w.r.t. head, features and soft labels.
    """
    head_fn = get_head(loss)
    if labels.dim() == features.dim() - 1:
        return head_fn.loss_and_grad(head, features, labels.long())[1]
    x1 = with_bias_column(features)
    logits = x1 @ head.transpose(-1, -2)
    dz = _expected_logit_grad(head_fn, logits, labels) / features.shape[-2]
    penalty = head_fn.penalty(head, features.shape[-2])   # l2svm's weight term, as in loss_and_grad
    grad = dz.transpose(-1, -2) @ x1
    return grad if penalty is None else grad + penalty[1]


def replay_local_training(start_head: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                          lr: float, optimizer: str = "sgd", loss: str = "linear",
                          weight_decay: float = 0.0) -> torch.Tensor:
    """The victim's local training, replayed differentiably: ``-> end_head [C, D+1]``.

    ``features [S, B, D]`` (one batch per step), ``labels [S, B]`` (class ids) or
    ``[S, B, C]`` (soft labels, e.g. DLG's softmax of learned logits). Each step
    ``g = grad + weight_decay * H``; SGD ``H -= lr g``; Adam (beta 0.9/0.999, eps 1e-8,
    bias-corrected) ``H -= lr m_hat / (sqrt(v_hat) + eps)``. Adam's moments start at zero:
    the attacker does not see the victim's moments from earlier rounds, so a replay of a
    victim whose moments persist across rounds is an approximation from round 2 on.
    Gradients flow to ``features`` and soft ``labels`` through the closed-form head
    gradient (so through the softmax/hinge), i.e. second order in the head.
    """
    if optimizer not in INVERSION_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(INVERSION_OPTIMIZERS)}; got {optimizer!r}")
    if loss not in INVERSION_LOSSES:
        raise ValueError(f"loss must be one of {', '.join(INVERSION_LOSSES)}; got {loss!r}")
    if features.dim() != 3:
        raise ValueError(f"features must be [S, B, D]; got shape {tuple(features.shape)}")
    if labels.shape[:2] != features.shape[:2]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match features {tuple(features.shape)}")
    head = start_head
    m = v = torch.zeros_like(start_head)
    for step in range(features.shape[0]):
        grad = head_gradient(head, features[step], labels[step], loss)
        if weight_decay:
            grad = grad + weight_decay * head
        if optimizer == "sgd":
            head = head - lr * grad
            continue
        # The engine's Adam step; sqrt has an infinite derivative at 0 (exactly-zero hinge
        # gradients): a floor of 1e-30 keeps the backward pass finite.
        update, m, v = F.adam_step(grad, m, v, step + 1, lr, sqrt_floor=1e-30)
        head = head - update
    return head


class frozen:
    """Context manager: ``module`` in eval mode with no parameter gradients, restored after
    (the attacks differentiate w.r.t. inputs only, and must not change the caller's model)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __enter__(self) -> torch.nn.Module:
        self._training = self.module.training
        self._flags = [p.requires_grad for p in self.module.parameters()]
        self.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        return self.module

    def __exit__(self, *exc) -> None:
        for p, flag in zip(self.module.parameters(), self._flags):
            p.requires_grad_(flag)
        self.module.train(self._training)


def features_of(backbone: torch.nn.Module, images: torch.Tensor, image_ndim: int) -> torch.Tensor:
    """``images [S, B, *image_shape] -> features [S, B, D]`` through the backbone."""
    lead = images.shape[:-image_ndim]
    flat = backbone(images.reshape(-1, *images.shape[-image_ndim:]))
    return flat.reshape(*lead, flat.shape[-1])


def default_rng(rng: Optional[torch.Generator]) -> torch.Generator:
    return rng if rng is not None else torch.Generator().manual_seed(0)


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_positive(name: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 or (allow_zero and value == 0)):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}; got {value!r}")
    return float(value)
