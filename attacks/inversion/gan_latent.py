"""Latent-space search with a generative image prior: the first stage of GIAS (Jeon,
Kim, Lee, Kim, Ok 2021, "Gradient inversion with generative image prior", NeurIPS) and
the gradient-based variant of GGL (Li, Han, Wang, Yu, Liu, Huang 2022, "Auditing privacy
defenses in federated learning via generative gradient leakage", CVPR).

Images are ``G(z)`` for a generator ``G`` trained on public data; the latent codes
``z [S*B, latent_dim]`` minimise the Inverting-Gradients matching loss

    1 - cos(T(replay(H0, backbone(G(z)), labels) - H0), H1 - H0)
      + latent_weight * mean_i (||z_i||^2 / latent_dim - 1)^2

with Adam, labels inferred from the update (iDLG / LLG counting). The second term is
GGL's idea of keeping ``z`` where the prior ``N(0, I)`` puts its mass (here: on the
typical sphere ``||z||^2 ~ latent_dim``); GIAS's first stage has no such term
(``latent_weight = 0``). ``restarts`` independent draws ``z ~ N(0, I)``; the one with the
smallest matching loss wins.

Defaults (for CPU speed): ``iterations`` 200, ``lr`` 0.05, ``restarts`` 2,
``latent_weight`` 1e-2.
"""
from __future__ import annotations

from typing import Optional

import torch

from attacks.inversion.base import (InversionAttack, Reconstruction, VictimUpdate, check_positive,
                                    check_positive_int, default_rng, features_of, frozen)
from attacks.inversion.labels import infer_labels, labels_per_step
from attacks.inversion.matching import cosine_distance
from fedsim.registry import register


def latent_prior(z: torch.Tensor) -> torch.Tensor:
    """``mean_i (||z_i||^2 / d - 1)^2``: 0 on the sphere where N(0, I_d) concentrates."""
    return (z.pow(2).mean(dim=-1) - 1.0).pow(2).mean()


def require_generator(generator: Optional[torch.nn.Module], name: str, update: VictimUpdate) -> torch.nn.Module:
    if generator is None or not hasattr(generator, "latent_dim"):
        raise ValueError(f"{name} needs a trained generator (attacks.inversion.generator.train_generator)")
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
        return cosine_distance(self.update.dummy_delta(self.features(images), self.labels), self.observed)


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


@register("inversions", "gan_latent")
class GANLatent(InversionAttack):
    name = "gan_latent"
    needs_generator = True

    def __init__(self, iterations: int = 200, lr: float = 0.05, restarts: int = 2, latent_weight: float = 1e-2):
        self.iterations = check_positive_int("iterations", iterations)
        self.lr = check_positive("lr", lr)
        self.restarts = check_positive_int("restarts", restarts)
        self.latent_weight = check_positive("latent_weight", latent_weight, allow_zero=True)

    def reconstruct(self, update: VictimUpdate, backbone: torch.nn.Module,
                    generator: Optional[torch.nn.Module] = None,
                    rng: Optional[torch.Generator] = None) -> Reconstruction:
        generator = require_generator(generator, self.name, update)
        rng = default_rng(rng)
        labels = labels_per_step(infer_labels(update), update.local_steps, update.batch_size)
        best = None
        with frozen(backbone), frozen(generator):
            matcher = _Matcher(update, backbone, labels)
            for _ in range(self.restarts):
                z0 = torch.randn(update.n_samples, generator.latent_dim, generator=rng)
                z = search_latent(matcher, generator, z0, self.iterations, self.lr, self.latent_weight)
                with torch.no_grad():
                    images = generator(z)
                    distance = float(matcher(images))
                if best is None or distance < best[0]:
                    best = (distance, images)
            images = best[1].reshape(matcher.shape)
            with torch.no_grad():
                feats = matcher.features(images)
        return Reconstruction(images=images, labels=labels, features=feats)
