"""Feature-space attacks: find the victim's backbone features from the update, then images
with those features (:class:`FeatureMatching`), and the two public-split baselines that
turn the same features into images without any optimisation (:class:`FeatureDecoder`,
:class:`FeatureRetrieval`).

Stage 1 (every attack here): the features ``f`` of the victim's samples and their labels,
:mod:`attacks.inversion.victim_features` (exact for one sample, searched otherwise).
Stage 2 differs: nearest public image, the public decoder's image, or images optimised to
have the features ``f``.
"""
from __future__ import annotations

from typing import Optional

import torch

from attacks.inversion.base import (InversionAttack, Reconstruction, VictimUpdate, default_rng,
                                    features_of, frozen)
from attacks.inversion.public_prior import PublicPrior, nearest
from attacks.inversion.victim_features import recover_victim_features, update_labels
from fedsim.params import Boolean, Interval
from fedsim.registry import register

_STAGE1 = {"feature_iterations": Interval(int, 1, None), "feature_lr": Interval(float, 0, None, closed="neither"),
           "feature_restarts": Interval(int, 1, None), "kept_only": Boolean(), "decoder_steps": Interval(int, 1, None)}


class _FeatureSpaceAttack(InversionAttack):
    """Stage 1 and the public prior, shared by the feature-space attacks."""

    def __init__(self, feature_iterations: int = 300, feature_lr: float = 0.05, feature_restarts: int = 2,
                 kept_only: bool = False, decoder_steps: int = 2000):
        self.feature_iterations, self.feature_lr = feature_iterations, float(feature_lr)
        self.feature_restarts, self.kept_only, self.decoder_steps = feature_restarts, bool(kept_only), decoder_steps

    def prepare(self, public_images, cache=None, seed=0):
        """The public split (:class:`~attacks.inversion.public_prior.PublicPrior`); its
        features and decoder are built for the backbone the first reconstruction gets, or
        loaded from ``cache``."""
        path = None if cache is None else cache.path("feature_decoders", seed=int(seed), steps=self.decoder_steps)
        return PublicPrior(public_images, seed, self.decoder_steps, path)

    def reconstruct(self, update: VictimUpdate, backbone: torch.nn.Module, generator: Optional[PublicPrior] = None,
                    rng: Optional[torch.Generator] = None) -> Reconstruction:
        if not isinstance(generator, PublicPrior):
            raise ValueError(f"{self.name} needs the public split: its prepare()'s result")
        rng = default_rng(rng)
        ndim = len(update.image_shape)
        with frozen(backbone):
            public = generator.features(backbone)
            labels = update_labels(update, self.kept_only)
            picks = torch.randint(0, public.shape[0], (self.feature_restarts, update.n_samples), generator=rng)
            starts = public[picks].view(self.feature_restarts, update.local_steps, update.batch_size, -1)
            target = recover_victim_features(update, labels, starts, self.feature_iterations, self.feature_lr,
                                             self.kept_only)
            images = self.images_for(target.reshape(update.n_samples, -1), backbone, generator, rng)
            images = images.reshape(update.local_steps, update.batch_size, *update.image_shape)
            with torch.no_grad():
                feats = features_of(backbone, images, ndim)
        return Reconstruction(images=images, labels=labels, features=feats)

    def images_for(self, target: torch.Tensor, backbone: torch.nn.Module, prior: PublicPrior,
                   rng: torch.Generator) -> torch.Tensor:
        """``[N, *image_shape]`` images for the target features ``[N, D]``."""
        raise NotImplementedError


@register("inversions", "retrieval")
class FeatureRetrieval(_FeatureSpaceAttack):
    """Retrieval baseline: the public image whose backbone features are nearest to the
    victim's (recovered) features. No paper: the nearest-neighbour reference of
    Dosovitskiy & Brox 2016 ("Inverting visual representations with convolutional
    networks"), with the features of stage 1 (:mod:`attacks.inversion.victim_features`).

    ``x_i = argmin_{x in public} ||backbone(x) - f_i||_2``.

    Parameters
    ----------
    feature_iterations : int >= 1, default 300
        Adam steps of the feature search (unused for one SGD sample: exact recovery).
    feature_lr : float > 0, default 0.05
        Its step size, relative to the mean public feature entry.
    feature_restarts : int >= 1, default 2
        Starts of the feature search (features of random public images).
    kept_only : bool, default False
        Top-k-aware: match only the sent entries, labels from their signs.
    decoder_steps : int >= 1, default 2000
        Training steps of the public decoder (built with the public features).

    References
    ----------
    .. [1] A. Dosovitskiy, T. Brox, "Inverting visual representations with convolutional
       networks", CVPR 2016.

    Examples
    --------
    >>> nearest(torch.tensor([[0.9, 0.1]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    tensor([1])
    """

    name = "retrieval"
    parameters = dict(_STAGE1)

    def images_for(self, target, backbone, prior, rng):
        return prior.images[nearest(target, prior.features(backbone))].clone()


@register("inversions", "decoder")
class FeatureDecoder(_FeatureSpaceAttack):
    """Learned inversion baseline: a decoder trained on the public split maps the victim's
    (recovered) features to images. Dosovitskiy & Brox 2016, "Inverting visual
    representations with convolutional networks", CVPR (an MLP decoder here,
    :class:`~attacks.inversion.public_prior.Decoder`).

    ``x_i = decoder(f_i)``, the decoder minimising the pixel MSE on public ``(backbone(x), x)``.

    Parameters
    ----------
    feature_iterations : int >= 1, default 300
        Adam steps of the feature search (unused for one SGD sample: exact recovery).
    feature_lr : float > 0, default 0.05
        Its step size, relative to the mean public feature entry.
    feature_restarts : int >= 1, default 2
        Starts of the feature search (features of random public images).
    kept_only : bool, default False
        Top-k-aware: match only the sent entries, labels from their signs.
    decoder_steps : int >= 1, default 2000
        Training steps of the public decoder (built with the public features).

    References
    ----------
    .. [1] A. Dosovitskiy, T. Brox, "Inverting visual representations with convolutional
       networks", CVPR 2016.

    Examples
    --------
    >>> from attacks.inversion.public_prior import Decoder
    >>> Decoder(feature_dim=4, image_shape=(1, 8, 8))(torch.zeros(2, 4)).shape
    torch.Size([2, 1, 8, 8])
    """

    name = "decoder"
    parameters = dict(_STAGE1)

    def images_for(self, target, backbone, prior, rng):
        with torch.no_grad():
            return prior.decoder(backbone)(target.float())


@register("inversions", "feature_matching")
class FeatureMatching(_FeatureSpaceAttack):
    """Feature matching with a decoder prior: images ``decoder(u)`` whose backbone features
    match the victim's (recovered) features, the decoder input ``u`` searched from several
    starts, each sample's lowest feature loss kept. Mahendran & Vedaldi 2015,
    "Understanding deep image representations by inverting them" (CVPR: search for images
    with given features under an image prior, TV), with the learned decoder of Dosovitskiy &
    Brox 2016 as the prior (as GIAS / GGL search a generator's input, Jeon et al. 2021), on
    the features that analytic recovery gives exactly for one sample (Phong et al. 2018) or
    the feature search estimates (:mod:`attacks.inversion.victim_features`); restarts kept
    by the loss as in Geiping et al. 2020.

    ::

        min_u  ||backbone(decoder(u_i)) - f_i||^2 / ||f_i||^2 + tv_weight * TV(decoder(u_i))

    by Adam (``iterations`` steps, step ``lr`` times the mean ``|f|``) from ``u = f`` and
    ``restarts - 1`` starts ``f + N(0, (mean |f|)^2)``; per sample the start with the
    smallest feature term wins.

    Parameters
    ----------
    iterations : int >= 0, default 200
        Adam steps on the decoder input per start.
    lr : float > 0, default 0.05
        Their step size, relative to the mean feature entry.
    restarts : int >= 1, default 2
        Starts (1: from the recovered features alone).
    tv_weight : float >= 0, default 1e-2
        Weight of the total variation (Geiping et al.'s anisotropic TV, per image).
    feature_iterations : int >= 1, default 300
        Adam steps of the feature search (unused for one SGD sample: exact recovery).
    feature_lr : float > 0, default 0.05
        Its step size, relative to the mean public feature entry.
    feature_restarts : int >= 1, default 2
        Starts of the feature search (features of random public images).
    kept_only : bool, default False
        Top-k-aware: match only the sent entries, labels from their signs.
    decoder_steps : int >= 1, default 2000
        Training steps of the public decoder (built with the public features).

    Notes
    -----
    The decoder's own image (:class:`FeatureDecoder`) is the pixel-MSE-optimal guess given
    the features; matching the features moves away from it towards an image that has them,
    which helps where the features pin the image down (digits) and costs PSNR where many
    images share them (Fashion-MNIST): docs/inversion.md has both.

    References
    ----------
    .. [1] A. Mahendran, A. Vedaldi, "Understanding deep image representations by inverting
       them", CVPR 2015.
    .. [2] A. Dosovitskiy, T. Brox, "Inverting visual representations with convolutional
       networks", CVPR 2016.
    .. [3] J. Jeon, J. Kim, K. Lee, S. Kim, J. Ok, "Gradient inversion with generative
       image prior", NeurIPS 2021.
    .. [4] L. T. Phong, Y. Aono, T. Hayashi, L. Wang, S. Moriai, "Privacy-preserving deep
       learning via additively homomorphic encryption", IEEE TIFS 2018.
    .. [5] J. Geiping, H. Bauermeister, H. Droege, M. Moeller, "Inverting gradients -- how
       easy is it to break privacy in federated learning?", NeurIPS 2020.

    Examples
    --------
    >>> per_sample_tv(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))  # one 2x2 image, a vertical edge
    tensor([1.])
    """

    name = "feature_matching"
    parameters = {"iterations": Interval(int, 0, None), "lr": Interval(float, 0, None, closed="neither"),
                  "restarts": Interval(int, 1, None), "tv_weight": Interval(float, 0, None), **_STAGE1}

    def __init__(self, iterations: int = 200, lr: float = 0.05, restarts: int = 2, tv_weight: float = 1e-2,
                 feature_iterations: int = 300, feature_lr: float = 0.05, feature_restarts: int = 2,
                 kept_only: bool = False, decoder_steps: int = 2000):
        super().__init__(feature_iterations, feature_lr, feature_restarts, kept_only, decoder_steps)
        self.iterations, self.lr, self.restarts, self.tv_weight = iterations, float(lr), restarts, float(tv_weight)

    def images_for(self, target, backbone, prior, rng):
        decoder = prior.decoder(backbone)
        target = target.float()
        scale = float(target.abs().mean().clamp_min(1e-6))
        norm = target.pow(2).sum(dim=1).clamp_min(1e-12)
        feature_term = lambda x: (backbone(x) - target).pow(2).sum(dim=1) / norm  # noqa: E731
        best_images, best_loss = None, None
        for restart in range(self.restarts):
            u = target.clone() if restart == 0 else target + scale * torch.randn(target.shape, generator=rng)
            u.requires_grad_(True)
            optimizer = torch.optim.Adam([u], lr=self.lr * scale)
            for _ in range(self.iterations):
                optimizer.zero_grad()
                images = decoder(u)
                (feature_term(images) + self.tv_weight * per_sample_tv(images)).sum().backward()
                optimizer.step()
            with torch.no_grad():
                images = decoder(u)
                loss = feature_term(images)
            if best_loss is None:
                best_images, best_loss = images, loss
            else:
                better = (loss < best_loss).view(-1, *[1] * (images.dim() - 1))
                best_images, best_loss = torch.where(better, images, best_images), torch.minimum(loss, best_loss)
        return best_images


def per_sample_tv(images: torch.Tensor) -> torch.Tensor:
    """``[N]`` Geiping et al.'s anisotropic total variation of each image ``[N, ..., H, W]``:
    mean ``|horizontal difference|`` plus mean ``|vertical difference|``."""
    flat = images.reshape(images.shape[0], -1, *images.shape[-2:])
    dx = (flat[..., :, 1:] - flat[..., :, :-1]).abs().flatten(1).mean(dim=1)
    dy = (flat[..., 1:, :] - flat[..., :-1, :]).abs().flatten(1).mean(dim=1)
    return dx + dy
