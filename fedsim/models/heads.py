"""Output layers ("heads") as pure tensor math.

A head travels as one tensor of shape ``[C, D+1]``: row ``c`` holds class ``c``'s
weights (``[:D]``) and its bias (``[D]``). Every function here also accepts stacked
heads ``[..., C, D+1]`` so that a whole group of peers is handled in one call.

Losses (chosen by ``model.head``):

- ``linear``: softmax cross-entropy, ``-log softmax(z)_y``.
- ``l2svm``: the L2-SVM of Tang (2013, "Deep Learning using Linear Support Vector
  Machines") as the output layer of GRU-SVM (Agarap 2017): one-vs-rest targets
  ``t_c = +1`` if ``c == y`` else ``-1``, objective
  ``0.5 ||W||^2 + C sum_n sum_c max(0, 1 - t_c z_c)^2`` (``C`` 0.5), divided by the
  batch size (see :class:`L2SVMHead`).

Either loss can carry the z-loss of Wortsman et al. (2023, "Small-scale proxies for
large-scale Transformer training instabilities", Sec. 3.1.2): ``z_loss * (log Z)^2``
per sample with ``log Z = logsumexp(z)`` (``training.z_loss``, off by default; the
paper uses 1e-4). It pulls ``log Z`` towards 0; its gradient is
``d/dz_c = 2 z_loss log Z softmax(z)_c``.
"""
from __future__ import annotations

import torch

from fedsim.functional import adam_step
from fedsim.params import Interval
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

    def logit_grad(self, logits: torch.Tensor, labels: torch.Tensor, class_dim: int = -1) -> torch.Tensor:
        """d(per-sample loss)/d(logits) in closed form, the shape of ``logits``: ``[..., m,
        C]``, or ``[..., C, m]`` with ``class_dim=-2``."""
        raise NotImplementedError

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)

    def penalty(self, head: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The head's own regulariser per sample of a batch of ``batch_size``: ``(loss [...],
        grad [..., C, D+1])``; None (no work on the training path) unless a head's paper
        has one."""
        return None

    def loss_and_grad(self, head: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                      logit_scale: torch.Tensor | None = None,
                      z_loss: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss over the batch and its gradient w.r.t. the head.

        ``head [..., C, D+1]``, ``features [..., B, D]``, ``labels [..., B]``
        -> ``(loss [...], grad [..., C, D+1])`` with
        ``grad = dL/dz^T [x, 1] / B`` plus the head's :meth:`penalty`. ``logit_scale
        [..., C]`` multiplies each class's logit before the loss (FedRS's restricted
        softmax), and so its gradient; ``z_loss`` adds ``z_loss * (log Z)^2`` per sample
        (module doc).
        """
        logits, grad = self.grad(head, with_bias_column(features), labels, logit_scale, z_loss)
        per_sample = self.loss(logits, labels)
        if z_loss:
            per_sample = per_sample + z_loss * log_partition(logits) ** 2
        loss = per_sample.mean(dim=-1)
        penalty = self.penalty(head, labels.shape[-1])
        return (loss, grad) if penalty is None else (loss + penalty[0], grad)

    def grad(self, head: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor,
             logit_scale: torch.Tensor | None = None, z_loss: float = 0.0,
             class_major: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The gradient of :meth:`loss_and_grad` without the loss: ``inputs [..., B, D+1]``
        are the features with their column of ones (``with_bias_column``), so a caller
        that trains many steps on one buffer appends it once. Returns
        ``(logits [..., B, C], grad [..., C, D+1])``, the logits as the loss sees them.

        ``class_major`` (``training.kernel: fast``) computes the logits as ``head @
        inputs^T [..., C, B]``: the matmul with C = 10 output columns is the slow shape
        for MKL's batched kernels, and the softmax then runs over a middle axis with the
        batch contiguous, which PyTorch vectorises (over a last axis of 10 it does not);
        the gradient is ``dz @ inputs`` without a transpose. It takes about 0.6 of the
        default step's time (``benchmarks/train_speed.py``) and agrees with it to float32
        rounding, not bit for bit: the kernels accumulate in another order. The default,
        sample-major ``inputs @ head^T``, keeps the numbers of earlier releases."""
        logits, dz = self._logits_and_logit_grad(head, inputs, labels, logit_scale, z_loss, class_major)
        dz = dz / labels.shape[-1]
        if logit_scale is not None:
            dz = dz * logit_scale.unsqueeze(-1 if class_major else -2)
        grad = dz @ inputs if class_major else dz.transpose(-1, -2) @ inputs
        penalty = self.penalty(head, labels.shape[-1])
        logits = logits.transpose(-1, -2) if class_major else logits
        return logits, grad if penalty is None else grad + penalty[1]

    def _logits_and_logit_grad(self, head: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor,
                               logit_scale: torch.Tensor | None, z_loss: float,
                               class_major: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits as the loss sees them (scaled by ``logit_scale``) and the per-sample
        loss's gradient w.r.t. them, z-loss included, neither divided by the batch size
        nor multiplied by the scale yet: ``[..., B, C]``, or ``[..., C, B]`` class-major
        (see :meth:`grad`)."""
        class_dim = -2 if class_major else -1   # the class axis of the logits
        logits = head @ inputs.transpose(-1, -2) if class_major else inputs @ head.transpose(-1, -2)
        if logit_scale is not None:
            logits = logits * logit_scale.unsqueeze(-1 if class_major else -2)
        dz = self.logit_grad(logits, labels, class_dim)
        if z_loss:
            dz = dz + z_loss_logit_grad(logits, z_loss, class_dim)
        return logits, dz

    def sgd_step_(self, heads: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor, lr: float,
                  logit_scale: torch.Tensor | None = None, z_loss: float = 0.0) -> None:
        """One plain SGD step on stacked ``heads [n, C, D+1]`` in place, the fast kernel's
        (``training.kernel: fast``): class-major logits as :meth:`grad`, then
        ``heads -= (lr / B) dz @ inputs`` in one fused ``baddbmm_`` (no gradient tensor,
        no separate scaling passes), then ``lr`` times the head's :meth:`penalty` gradient
        at the pre-step heads. The same step as ``heads -= lr * grad(...)`` to float32
        rounding."""
        _, dz = self._logits_and_logit_grad(heads, inputs, labels, logit_scale, z_loss, class_major=True)
        if logit_scale is not None:
            dz = dz * logit_scale.unsqueeze(-1)
        penalty = self.penalty(heads, labels.shape[-1])
        heads.baddbmm_(dz, inputs, alpha=-lr / labels.shape[-1])
        if penalty is not None:
            heads.sub_(penalty[1], alpha=lr)


def log_partition(logits: torch.Tensor) -> torch.Tensor:
    """``log Z = log sum_c exp(z_c)`` of each row of ``logits [..., C]`` -> ``[...]``."""
    return torch.logsumexp(logits, dim=-1)


def z_loss_logit_grad(logits: torch.Tensor, z_loss: float, class_dim: int = -1) -> torch.Tensor:
    """d/dz of ``z_loss * (log Z)^2`` (Wortsman et al. 2023): ``2 z_loss log Z softmax(z)``,
    the classes along ``class_dim`` of ``logits``."""
    log_z = torch.logsumexp(logits, dim=class_dim, keepdim=True)
    return (2.0 * z_loss) * log_z * torch.exp(logits - log_z)


def _label_indicator_added(values: torch.Tensor, labels: torch.Tensor, amount: float,
                           class_dim: int = -1) -> torch.Tensor:
    """``values + amount * onehot(labels)`` without building the one-hot matrix, the
    classes along ``class_dim`` of ``values``. ``values`` is a fresh tensor of the
    caller's: it is updated in place (no copy on the training path) unless autograd
    tracks it, then out of place so autograd can differentiate through it."""
    index = labels.unsqueeze(class_dim)
    amounts = values.new_full((), amount).expand(index.shape)
    if values.requires_grad:
        return values.scatter_add(class_dim, index, amounts)
    return values.scatter_add_(class_dim, index, amounts)


@register("heads", "linear")
class SoftmaxHead(Head):
    """Softmax cross-entropy; gradient ``softmax(z) - onehot(y)``."""

    name = "linear"
    parameters: dict = {}

    def loss(self, logits, labels):
        return -torch.log_softmax(logits, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)

    def logit_grad(self, logits, labels, class_dim=-1):
        return _label_indicator_added(torch.softmax(logits, dim=class_dim), labels, -1.0, class_dim)


@register("heads", "l2svm")
class L2SVMHead(Head):
    """The L2-SVM output layer of GRU-SVM: Agarap (2017), "A Neural Network Architecture
    Combining Gated Recurrent Unit (GRU) and Support Vector Machine (SVM) for Intrusion
    Detection in Network Traffic Data" (its L2-SVM formulation), after Tang (2013)::

        min_W  0.5 ||W||^2 + C sum_n sum_c max(0, 1 - t_nc z_nc)^2,   t_nc = 2 [c == y_n] - 1

    one-vs-rest targets in {-1, +1} for every class, prediction ``argmax_c z_c`` (the
    margins). ``W`` is the weight matrix only: the bias is not penalised. Default ``C``
    0.5, the paper's (its hyper-parameter table; ``SVM_C = 0.5`` in the authors'
    gru_svm_main.py line 39).

    The paper's sum runs over the samples; the authors' code
    (AFAgarap/gru-svm models/gru_svm/gru_svm.py lines 142-153) applies this objective to
    each mini-batch, which is what a local step does here. The engine averages over the
    batch, so the head returns the mini-batch objective divided by the batch size B:
    per-sample loss ``C sum_c max(0, 1 - t_c z_c)^2``, penalty ``0.5 ||W||^2 / B`` (the
    same minimiser; the learning rate absorbs the factor B). Gradients:
    ``dloss/dz_c = -2 C t_c max(0, 1 - t_c z_c)``, ``dpenalty/dW = W / B``.
    """

    name = "l2svm"
    parameters = {"C": Interval(float, 0, None, closed="neither")}

    def __init__(self, C: float = 0.5):
        self.C = float(C)

    @staticmethod
    def _targets(logits, labels, class_dim=-1):
        return _label_indicator_added(torch.full_like(logits, -1.0), labels, 2.0, class_dim)

    def loss(self, logits, labels):
        t = self._targets(logits, labels)
        return self.C * torch.clamp(1.0 - t * logits, min=0.0).pow(2).sum(dim=-1)

    def logit_grad(self, logits, labels, class_dim=-1):
        t = self._targets(logits, labels, class_dim)
        return -2.0 * self.C * t * torch.clamp(1.0 - t * logits, min=0.0)

    def penalty(self, head, batch_size):
        weights = torch.zeros_like(head)
        weights[..., :-1] = head[..., :-1]
        return 0.5 * weights.pow(2).sum(dim=(-2, -1)) / batch_size, weights / batch_size


def get_head(name: str, **args) -> Head:
    from fedsim.registry import create
    return create("heads", name, **args)


def fit_head(features: torch.Tensor, labels: torch.Tensor, n_classes: int, loss: str = "linear",
             steps: int = 300, lr: float = 0.05, weight_decay: float = 1e-4,
             head_args: dict | None = None) -> torch.Tensor:
    """A head fitted on ``features`` by full-batch Adam (deterministic; no random draws).

    Used for ``model.head_init: public``: the common initial head is the output layer
    pre-trained on the public split, so every peer starts from a model that already
    knows all (public) classes, as in transfer learning of the whole network.
    """
    head_fn = get_head(loss, **(head_args or {}))
    head = torch.zeros(n_classes, features.shape[1] + 1)
    m, v = torch.zeros_like(head), torch.zeros_like(head)
    for t in range(1, steps + 1):
        _, grad = head_fn.loss_and_grad(head, features, labels)
        grad = grad + weight_decay * head
        update, m, v = adam_step(grad, m, v, t, lr)
        head -= update
    return head
