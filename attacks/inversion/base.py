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
``H1 - H0``; :func:`replay_local_training` computes ``H1'`` differentiably.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from fedsim.models.heads import get_head, with_bias_column

OPTIMIZERS = ("sgd", "adam")
LOSSES = ("linear", "l2svm")

# Adam's constants, as in the engine (Kingma & Ba 2015).
ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 0.9, 0.999, 1e-8


@dataclass
class VictimUpdate:
    """One observed update and what the attacker knows (or estimates) about it.

    ``start_head``/``end_head``: ``[C, D+1]`` (``H0``, ``H1``); ``image_shape``: the
    shape of one input image (e.g. ``(1, 28, 28)``); ``transform``: an optional callable
    applied to the dummy update ``H1' - H0`` before matching (the adaptive attacker
    knows the sender's privacy defense); ``weight_decay``: the victim's L2 penalty
    (added to the gradient, as in the engine), 0 by default.
    """

    start_head: torch.Tensor
    end_head: torch.Tensor
    local_steps: int
    batch_size: int
    lr: float
    optimizer: str
    loss: str
    n_classes: int
    image_shape: tuple
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.start_head, torch.Tensor) or self.start_head.dim() != 2:
            raise ValueError(f"start_head must be a [C, D+1] tensor; got {type(self.start_head).__name__} "
                             f"of shape {getattr(self.start_head, 'shape', None)}")
        if not isinstance(self.end_head, torch.Tensor) or self.end_head.shape != self.start_head.shape:
            raise ValueError(f"end_head must have start_head's shape {tuple(self.start_head.shape)}; "
                             f"got {tuple(getattr(self.end_head, 'shape', ()))}")
        for key in ("local_steps", "batch_size", "n_classes"):
            value = getattr(self, key)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{key} must be a positive integer; got {value!r}")
            setattr(self, key, int(value))
        if self.n_classes != self.start_head.shape[0]:
            raise ValueError(f"n_classes {self.n_classes} does not match the head's {self.start_head.shape[0]} rows")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive; got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {self.weight_decay!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        self.image_shape = tuple(int(s) for s in self.image_shape)
        if not self.image_shape or any(s < 1 for s in self.image_shape):
            raise ValueError(f"image_shape must be non-empty and positive; got {self.image_shape}")

    @property
    def n_samples(self) -> int:
        """``local_steps * batch_size``: how many samples the victim trained on."""
        return self.local_steps * self.batch_size

    @property
    def feature_dim(self) -> int:
        return self.start_head.shape[1] - 1

    @property
    def observed_delta(self) -> torch.Tensor:
        """``H1 - H0`` as observed (already transformed by the sender, if it was)."""
        return (self.end_head - self.start_head).detach()

    def dummy_delta(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``transform(H1' - H0)`` for dummy ``features [S, B, D]`` and ``labels`` (``[S, B]``
        class ids or ``[S, B, C]`` probabilities), differentiable w.r.t. both."""
        end = replay_local_training(self.start_head.detach(), features, labels, self.lr, self.optimizer,
                                    self.loss, weight_decay=self.weight_decay)
        delta = end - self.start_head.detach()
        return self.transform(delta) if self.transform is not None else delta


@dataclass
class Reconstruction:
    """What an attack recovers: ``images [S, B, *image_shape]``, ``labels [S, B]``,
    ``features [S, B, D]`` (``S`` = local_steps, ``B`` = batch_size)."""

    images: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor


class InversionAttack:
    """A gradient inversion attack: ``reconstruct(update, backbone, generator, rng)``.

    ``needs_generator`` tells the engine to train (or load from its cache) an image
    generator on the public split and pass it in.
    """

    name = "inversion"
    needs_generator = False

    def reconstruct(self, update: VictimUpdate, backbone: torch.nn.Module,
                    generator: Optional[torch.nn.Module] = None,
                    rng: Optional[torch.Generator] = None) -> Reconstruction:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


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
    return dz.transpose(-1, -2) @ x1


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
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {optimizer!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    if features.dim() != 3:
        raise ValueError(f"features must be [S, B, D]; got shape {tuple(features.shape)}")
    if labels.shape[:2] != features.shape[:2]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match features {tuple(features.shape)}")
    head = start_head
    m = v = None
    for step in range(features.shape[0]):
        grad = head_gradient(head, features[step], labels[step], loss)
        if weight_decay:
            grad = grad + weight_decay * head
        if optimizer == "sgd":
            head = head - lr * grad
            continue
        t = step + 1
        m = (1 - ADAM_BETA1) * grad if m is None else ADAM_BETA1 * m + (1 - ADAM_BETA1) * grad
        v = (1 - ADAM_BETA2) * grad * grad if v is None else ADAM_BETA2 * v + (1 - ADAM_BETA2) * grad * grad
        m_hat, v_hat = m / (1 - ADAM_BETA1 ** t), v / (1 - ADAM_BETA2 ** t)
        # sqrt has an infinite derivative at 0 (exactly-zero hinge gradients); 1e-30 inside
        # keeps the backward pass finite and changes the forward value by < 1e-15.
        head = head - lr * m_hat / ((v_hat + 1e-30).sqrt() + ADAM_EPS)
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
