"""Deep Leakage from Gradients (:class:`DLG`)."""
from __future__ import annotations

from typing import Optional

import torch

from attacks.inversion.base import (InversionAttack, Reconstruction, VictimUpdate,
                                    default_rng, dummy_delta, features_of, frozen)
from attacks.inversion.labels import infer_labels, labels_per_step
from attacks.inversion.matching import l2_distance
from fedsim.params import Interval
from fedsim.registry import register


@register("inversions", "dlg")
class DLG(InversionAttack):
    """DLG: optimise dummy images and soft labels until their replayed update matches the observed one.
    Zhu, Liu, Han 2019, "Deep leakage from gradients", NeurIPS.

    Dummy images ``x'`` and dummy label logits ``y'`` (soft labels ``softmax(y')``) are
    optimised jointly with L-BFGS to minimise the squared distance between the dummy update
    and the observed one::

        min_{x', y'} || T(replay(H0, backbone(x'), softmax(y')) - H0) - (H1 - H0) ||^2

    (``T`` the sender's privacy transform when the attacker knows it, else the identity).
    Initialisation ``x', y' ~ N(0, 1)`` as in the paper; the reported labels are
    ``argmax y'`` and the reported images are clamped to [0, 1].

    Parameters
    ----------
    iterations : int >= 1, default 100
        L-BFGS iterations (for CPU speed; the paper runs 300 outer steps of up to 20 each).
    lr : float > 0, default 1
        L-BFGS step size (the paper's).
    restarts : int >= 1, default 1
        Independent starts; the one with the smallest distance wins (the paper has none).
    history_size : int >= 1, default 100
        L-BFGS history.

    Notes
    -----
    The paper's L-BFGS has no line search (PyTorch's default); we use a strong-Wolfe line
    search, which keeps L-BFGS from diverging on the un-normalised L2 objective without
    changing its optimum.

    References
    ----------
    .. [1] L. Zhu, Z. Liu, S. Han, "Deep leakage from gradients", NeurIPS 2019.

    Examples
    --------
    >>> from fedsim.examples import example_update, rounded
    >>> update = example_update()  # one SGD step on the private sample [0.9, 0.1] of class 0
    >>> backbone = torch.nn.Identity()  # a toy backbone: an image is its feature vector
    >>> result = DLG(iterations=20).reconstruct(update, backbone, rng=torch.Generator().manual_seed(0))
    >>> rounded(result.images, 1), result.labels
    (tensor([[[0.9000, 0.1000]]]), tensor([[0]]))
    """

    name = "dlg"
    parameters = {"iterations": Interval(int, 1, None), "lr": Interval(float, 0, None, closed="neither"), "restarts": Interval(int, 1, None),
                  "history_size": Interval(int, 1, None)}

    def __init__(self, iterations: int = 100, lr: float = 1.0, restarts: int = 1, history_size: int = 100):
        self.iterations, self.lr, self.restarts, self.history_size = iterations, float(lr), restarts, history_size

    def reconstruct(self, update: VictimUpdate, backbone: torch.nn.Module,
                    generator: Optional[torch.nn.Module] = None,
                    rng: Optional[torch.Generator] = None) -> Reconstruction:
        rng = default_rng(rng)
        steps, batch, n_classes = update.local_steps, update.batch_size, update.n_classes
        ndim = len(update.image_shape)
        observed = update.observed_delta
        known = self.known_labels(update)
        best = None
        with frozen(backbone):
            for _ in range(self.restarts):
                images = torch.randn(steps, batch, *update.image_shape, generator=rng).requires_grad_(True)
                label_logits = torch.randn(steps, batch, n_classes, generator=rng).requires_grad_(known is None)
                dummy_labels = (lambda: torch.softmax(label_logits, -1)) if known is None else (lambda: known)
                variables = [images] if known is not None else [images, label_logits]
                optimizer = torch.optim.LBFGS(variables, lr=self.lr, max_iter=self.iterations,
                                              history_size=self.history_size, tolerance_grad=1e-12,
                                              tolerance_change=1e-14, line_search_fn="strong_wolfe")

                def closure():
                    optimizer.zero_grad()
                    feats = features_of(backbone, images, ndim)
                    loss = l2_distance(dummy_delta(update, feats, dummy_labels()), observed)
                    loss.backward()
                    return loss

                optimizer.step(closure)
                with torch.no_grad():
                    feats = features_of(backbone, images, ndim)
                    distance = float(l2_distance(dummy_delta(update, feats, dummy_labels()), observed))
                labels = label_logits.detach().argmax(-1) if known is None else known
                if best is None or distance < best[0]:
                    best = (distance, images.detach().clone(), labels)
            _, images, labels = best
            images = images.clamp(0.0, 1.0)
            with torch.no_grad():
                feats = features_of(backbone, images, ndim)
        return Reconstruction(images=images, labels=labels, features=feats)

    def known_labels(self, update: VictimUpdate) -> Optional[torch.Tensor]:
        """``[S, B]`` labels fixed before the search, or ``None``: DLG learns soft labels."""
        return None


@register("inversions", "idlg")
class IDLG(DLG):
    """iDLG: DLG with the label known from the update, images alone optimised by L-BFGS.
    Zhao, Mopuri, Bilen 2020, "iDLG: improved deep leakage from gradients", arXiv:2001.02610.

    The label is read from the update (the class whose bias gradient is negative, iDLG's
    rule; LLG counting for batches, :func:`attacks.inversion.labels.infer_labels`); then::

        min_{x'} || T(replay(H0, backbone(x'), y) - H0) - (H1 - H0) ||^2

    with L-BFGS from ``x' ~ N(0, 1)``, as DLG.

    Parameters
    ----------
    iterations : int >= 1, default 100
        L-BFGS iterations (for CPU speed, as DLG).
    lr : float > 0, default 1
        L-BFGS step size (the paper's).
    restarts : int >= 1, default 1
        Independent starts; the one with the smallest distance wins.
    history_size : int >= 1, default 100
        L-BFGS history.

    References
    ----------
    .. [1] B. Zhao, K. R. Mopuri, H. Bilen, "iDLG: improved deep leakage from gradients",
       arXiv:2001.02610, 2020.

    Examples
    --------
    >>> from fedsim.examples import example_update, rounded
    >>> update = example_update()  # one SGD step on the private sample [0.9, 0.1] of class 0
    >>> result = IDLG(iterations=20).reconstruct(update, torch.nn.Identity(), rng=torch.Generator().manual_seed(0))
    >>> rounded(result.images, 1), result.labels
    (tensor([[[0.9000, 0.1000]]]), tensor([[0]]))
    """

    name = "idlg"

    def known_labels(self, update: VictimUpdate) -> Optional[torch.Tensor]:
        return labels_per_step(infer_labels(update), update.local_steps, update.batch_size)
