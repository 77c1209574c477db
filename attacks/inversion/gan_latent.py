"""Latent-space search with a generative image prior (:class:`GANLatent`), shared with GIFD."""
from __future__ import annotations

from typing import Optional

import torch

from attacks.inversion.base import (InversionAttack, Reconstruction, VictimUpdate,
                                    default_rng, dummy_delta, features_of, frozen)
from attacks.inversion.generator import prepared_generator
from attacks.inversion.labels import infer_labels, labels_per_step
from attacks.inversion.matching import cosine_distance
from fedsim.params import Interval
from fedsim.registry import register


def latent_prior(z: torch.Tensor) -> torch.Tensor:
    """``mean_i (||z_i||^2 / d - 1)^2``: 0 on the sphere where N(0, I_d) concentrates."""
    return (z.pow(2).mean(dim=-1) - 1.0).pow(2).mean()


def require_generator(generator: Optional[torch.nn.Module], name: str, update: VictimUpdate) -> torch.nn.Module:
    if generator is None or not hasattr(generator, "latent_dim"):
        raise ValueError(f"{name} needs a trained generator (its prepare(), or "
                         f"attacks.inversion.generator.train_generator)")
    shape = tuple(getattr(generator, "image_shape", update.image_shape))
    if torch.Size(shape).numel() != torch.Size(update.image_shape).numel():
        raise ValueError(f"{name}: the generator makes images of shape {shape}, the victim's are "
                         f"{update.image_shape}")
    return generator


class _Matcher:
    """The matching loss of an update for images ``[S*B, *image_shape]``."""

    def __init__(self, update: VictimUpdate, backbone: torch.nn.Module, labels: torch.Tensor):
        self.update, self.backbone, self.labels = update, backbone, labels
        self.observed = update.observed_delta
        self.shape = (update.local_steps, update.batch_size, *update.image_shape)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return features_of(self.backbone, images.reshape(self.shape), len(self.update.image_shape))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return cosine_distance(dummy_delta(self.update, self.features(images), self.labels), self.observed)


def search_latent(matcher: _Matcher, generator: torch.nn.Module, z: torch.Tensor, iterations: int, lr: float,
                  latent_weight: float) -> torch.Tensor:
    """Adam on ``z`` for ``iterations`` steps; returns the final ``z`` (detached)."""
    z = z.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    for _ in range(iterations):
        optimizer.zero_grad()
        loss = matcher(generator(z))
        if latent_weight:
            loss = loss + latent_weight * latent_prior(z)
        loss.backward()
        optimizer.step()
    return z.detach()


def best_generated(update: VictimUpdate, backbone: torch.nn.Module, generator: torch.nn.Module,
                   rng: Optional[torch.Generator], restarts: int, candidates) -> Reconstruction:
    """The images with the smallest matching loss among those ``candidates(matcher, z0)``
    yields, over ``restarts`` latent draws ``z0 ~ N(0, I)`` (labels inferred from the
    update); backbone and generator stay frozen."""
    rng = default_rng(rng)
    labels = labels_per_step(infer_labels(update), update.local_steps, update.batch_size)
    best = None
    with frozen(backbone), frozen(generator):
        matcher = _Matcher(update, backbone, labels)
        for _ in range(restarts):
            z0 = torch.randn(update.n_samples, generator.latent_dim, generator=rng)
            for images in candidates(matcher, z0):
                with torch.no_grad():
                    distance = float(matcher(images))
                if best is None or distance < best[0]:
                    best = (distance, images)
        images = best[1].reshape(matcher.shape)
        with torch.no_grad():
            feats = matcher.features(images)
    return Reconstruction(images=images, labels=labels, features=feats)


@register("inversions", "gan_latent")
class GANLatent(InversionAttack):
    """Latent search: find generator codes whose images reproduce the observed update.
    The first stage of GIAS (Jeon, Kim, Lee, Kim, Ok 2021, "Gradient inversion with
    generative image prior", NeurIPS) and the gradient-based variant of GGL (Li, Han,
    Wang, Yu, Liu, Huang 2022, "Auditing privacy defenses in federated learning via
    generative gradient leakage", CVPR).

    Images are ``G(z)`` for a generator ``G`` trained on public data; the latent codes
    ``z [S*B, latent_dim]`` minimise the Inverting-Gradients matching loss::

        1 - cos(T(replay(H0, backbone(G(z)), labels) - H0), H1 - H0)
          + latent_weight * mean_i (||z_i||^2 / latent_dim - 1)^2

    with Adam, labels inferred from the update (iDLG / LLG counting).

    Parameters
    ----------
    iterations : int >= 1, default 200
        Adam steps per restart (for CPU speed).
    lr : float > 0, default 0.05
        Adam's step size.
    restarts : int >= 1, default 2
        Independent draws ``z ~ N(0, I)``; the one with the smallest matching loss wins.
    latent_weight : float >= 0, default 1e-2
        Weight of the latent prior (:func:`latent_prior`).

    Notes
    -----
    The second term is GGL's idea of keeping ``z`` where the prior ``N(0, I)`` puts its
    mass (here: on the typical sphere ``||z||^2 ~ latent_dim``); GIAS's first stage has no
    such term (``latent_weight = 0``).

    References
    ----------
    .. [1] J. Jeon, J. Kim, K. Lee, S. Kim, J. Ok, "Gradient inversion with generative
       image prior", NeurIPS 2021.
    .. [2] Z. Li, J. Han, Y. Wang, H. Yu, Y. Liu, H. Huang, "Auditing privacy defenses in
       federated learning via generative gradient leakage", CVPR 2022.

    Examples
    --------
    A run needs a generator trained on public images (:mod:`attacks.inversion.generator`);
    the prior it keeps the codes near:

    >>> latent_prior(torch.tensor([[1.0, -1.0], [2.0, 0.0]]))  # on the sphere, then off it
    tensor(0.5000)
    """

    name = "gan_latent"
    parameters = {"iterations": Interval(int, 1, None), "lr": Interval(float, 0, None, closed="neither"), "restarts": Interval(int, 1, None),
                  "latent_weight": Interval(float, 0, None)}

    def prepare(self, public_images, cache=None, seed=0):
        """The image generator, trained on the public split (or loaded from ``cache``)."""
        return prepared_generator(public_images, cache, seed)

    def __init__(self, iterations: int = 200, lr: float = 0.05, restarts: int = 2, latent_weight: float = 1e-2):
        self.iterations, self.lr, self.restarts = iterations, float(lr), restarts
        self.latent_weight = float(latent_weight)

    def reconstruct(self, update: VictimUpdate, backbone: torch.nn.Module,
                    generator: Optional[torch.nn.Module] = None,
                    rng: Optional[torch.Generator] = None) -> Reconstruction:
        generator = require_generator(generator, self.name, update)

        def candidates(matcher, z0):
            z = search_latent(matcher, generator, z0, self.iterations, self.lr, self.latent_weight)
            with torch.no_grad():
                images = generator(z)
            yield images

        return best_generated(update, backbone, generator, rng, self.restarts, candidates)
