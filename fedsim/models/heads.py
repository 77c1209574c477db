"""Output layers ("heads") as pure tensor math.

A head travels as one tensor of shape ``[C, D+1]``: row ``c`` holds class ``c``'s
weights (``[:D]``) and its bias (``[D]``). Every function here also accepts stacked
heads ``[..., C, D+1]`` so that a whole group of peers is handled in one call.

Losses (chosen by ``model.head``):

- ``linear``: softmax cross-entropy, ``-log softmax(z)_y``.
- ``l2svm``: the L2-SVM of Tang (2013, "Deep Learning using Linear Support Vector
  Machines") used as the output layer of GRU-SVM (Agarap 2017): one-vs-rest targets
  ``t_c = +1`` if ``c == y`` else ``-1`` and loss ``sum_c max(0, 1 - t_c z_c)^2``
  (the weight penalty is the optimizer's ``weight_decay``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fedsim.functional import adam_step
from fedsim.registry import register


def split_head(head: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weights [..., C, D], bias [..., C])`` views of ``head [..., C, D+1]``."""
    return head[..., :-1], head[..., -1]


def with_bias_column(features: torch.Tensor) -> torch.Tensor:
    """``[..., m, D] -> [..., m, D+1]`` with a trailing column of ones."""
    ones = torch.ones(*features.shape[:-1], 1, dtype=features.dtype, device=features.device)
    return torch.cat([features, ones], dim=-1)


def head_logits(head: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Logits ``features @ W^T + b``.

    ``head [..., C, D+1]``, ``features [..., m, D]`` (leading dims broadcast)
    -> ``[..., m, C]``.
    """
    weights, bias = split_head(head)
    return features @ weights.transpose(-1, -2) + bias.unsqueeze(-2)


def init_head(n_classes: int, dim: int, seed: int, std: float = 0.01) -> torch.Tensor:
    """The common initial head of every peer: N(0, std^2) weights, zero bias."""
    g = torch.Generator().manual_seed(int(seed))
    head = torch.zeros(n_classes, dim + 1)
    head[:, :-1] = torch.randn(n_classes, dim, generator=g) * std
    return head


class Head:
    """A loss over logits: differentiable form and analytic gradient."""

    name = "head"

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample loss ``[..., m]`` (differentiable with autograd)."""
        raise NotImplementedError

    def logit_grad(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """d(per-sample loss)/d(logits), ``[..., m, C]``, in closed form."""
        raise NotImplementedError

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)

    def loss_and_grad(self, head: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                      logit_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss over the batch and its gradient w.r.t. the head.

        ``head [..., C, D+1]``, ``features [..., B, D]``, ``labels [..., B]``
        -> ``(loss [...], grad [..., C, D+1])`` with
        ``grad = dL/dz^T [x, 1] / B``. ``logit_scale [..., C]`` multiplies each class's
        logit before the loss (FedRS's restricted softmax), and so its gradient.
        """
        x1 = with_bias_column(features)
        logits = x1 @ head.transpose(-1, -2)
        if logit_scale is not None:
            logits = logits * logit_scale.unsqueeze(-2)
        per_sample = self.loss(logits, labels)
        dz = self.logit_grad(logits, labels) / labels.shape[-1]
        if logit_scale is not None:
            dz = dz * logit_scale.unsqueeze(-2)
        return per_sample.mean(dim=-1), dz.transpose(-1, -2) @ x1


@register("heads", "linear")
class SoftmaxHead(Head):
    """Softmax cross-entropy; gradient ``softmax(z) - onehot(y)``."""

    name = "linear"

    def loss(self, logits, labels):
        return -torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)

    def logit_grad(self, logits, labels):
        grad = torch.softmax(logits, dim=-1)
        return grad - F.one_hot(labels, logits.shape[-1]).to(grad.dtype)


@register("heads", "l2svm")
class L2SVMHead(Head):
    """Squared one-vs-rest hinge (Tang 2013; GRU-SVM, Agarap 2017).

    ``loss = sum_c max(0, 1 - t_c z_c)^2``, ``t_c = 2 [c == y] - 1``;
    ``dloss/dz_c = -2 t_c max(0, 1 - t_c z_c)``.
    """

    name = "l2svm"

    @staticmethod
    def _targets(logits, labels):
        return 2.0 * F.one_hot(labels, logits.shape[-1]).to(logits.dtype) - 1.0

    def loss(self, logits, labels):
        t = self._targets(logits, labels)
        return torch.clamp(1.0 - t * logits, min=0.0).pow(2).sum(dim=-1)

    def logit_grad(self, logits, labels):
        t = self._targets(logits, labels)
        return -2.0 * t * torch.clamp(1.0 - t * logits, min=0.0)


def get_head(name: str) -> Head:
    from fedsim.registry import create
    return create("heads", name)


def fit_head(features: torch.Tensor, labels: torch.Tensor, n_classes: int, loss: str = "linear",
             steps: int = 300, lr: float = 0.05, weight_decay: float = 1e-4) -> torch.Tensor:
    """A head fitted on ``features`` by full-batch Adam (deterministic; no random draws).

    Used for ``model.head_init: public``: the common initial head is the output layer
    pre-trained on the public split, so every peer starts from a model that already
    knows all (public) classes, as in transfer learning of the whole network.
    """
    head_fn = get_head(loss)
    head = torch.zeros(n_classes, features.shape[1] + 1)
    m, v = torch.zeros_like(head), torch.zeros_like(head)
    for t in range(1, steps + 1):
        _, grad = head_fn.loss_and_grad(head, features, labels)
        grad = grad + weight_decay * head
        update, m, v = adam_step(grad, m, v, t, lr)
        head -= update
    return head
