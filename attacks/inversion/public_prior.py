"""What an attacker learns from the public split about the frozen backbone: the public
images' features, a decoder from features to images, and nearest-neighbour retrieval.

The attacks of :mod:`attacks.inversion.feature_matching` recover (or estimate) the
backbone features of the victim's samples from the update and then need images with those
features. Two baselines come from the public split alone:

- *retrieval*: the public image whose features are nearest (L2) to the target features;
- *decoder*: an MLP ``features [D] -> image`` (``D -> 256 -> 512 -> H*W``, ReLU, sigmoid
  output) trained on the public ``(backbone(x), x)`` pairs to minimise the pixel MSE, the
  learned inversion model of Dosovitskiy & Brox 2016 ("Inverting visual representations
  with convolutional networks", CVPR; an MLP here, for 8x8 and 28x28 images), Adam lr 1e-3,
  batch 128, ``decoder_steps`` steps.

:class:`PublicPrior` is what these attacks' ``prepare`` returns: it holds the public images
and builds the features and the decoder for a backbone the first time one is asked for
(``prepare`` does not see the backbone), seeded by the run's seed, and cached under the
run's cache key (which names the backbone's features).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from attacks.inversion.base import frozen
from fedsim.models.features import content_digest


def public_features(backbone: nn.Module, images: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """``[N, D]`` backbone features of ``images [N, *image_shape]`` (no gradient)."""
    with frozen(backbone), torch.no_grad():
        return torch.cat([backbone(images[i:i + chunk].float()) for i in range(0, images.shape[0], chunk)])


def nearest(targets: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """``[M]`` index of the row of ``candidates [N, D]`` nearest (L2) to each row of ``targets [M, D]``."""
    return torch.cdist(targets.float(), candidates.float()).argmin(dim=1)


class Decoder(nn.Module):
    """``features [N, D] -> images [N, *image_shape]`` in [0, 1]."""

    def __init__(self, feature_dim: int, image_shape: tuple):
        super().__init__()
        self.image_shape = tuple(image_shape)
        pixels = int(torch.Size(image_shape).numel())
        self.net = nn.Sequential(nn.Linear(feature_dim, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(),
                                 nn.Linear(512, pixels), nn.Sigmoid())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).reshape(features.shape[0], *self.image_shape)


def train_decoder(features: torch.Tensor, images: torch.Tensor, steps: int, seed: int) -> Decoder:
    """A :class:`Decoder` fitted to ``images`` from ``features`` (pixel MSE, Adam 1e-3,
    batches of 128 drawn with ``seed``), returned frozen in eval mode."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        decoder = Decoder(features.shape[1], tuple(images.shape[1:]))
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    images = images.float()
    for _ in range(steps):
        batch = torch.randint(0, features.shape[0], (min(128, features.shape[0]),), generator=g)
        optimizer.zero_grad()
        nn.functional.mse_loss(decoder(features[batch]), images[batch]).backward()
        optimizer.step()
    decoder.eval()
    for p in decoder.parameters():
        p.requires_grad_(False)
    return decoder


CACHE_FORMAT = 1


class PublicPrior:
    """The public split and, per backbone, its features and decoder (built on first use and
    stored at ``path`` when given: the run's cache key identifies the backbone)."""

    def __init__(self, images: torch.Tensor, seed: int, decoder_steps: int, path: Optional[Path] = None):
        self.images, self.seed, self.decoder_steps, self.path = images.float(), int(seed), int(decoder_steps), path
        self._for: dict = {}

    def features(self, backbone: nn.Module) -> torch.Tensor:
        return self._built(backbone)[0]

    def decoder(self, backbone: nn.Module) -> Decoder:
        return self._built(backbone)[1]

    def _built(self, backbone: nn.Module):
        key = id(backbone)
        if key not in self._for:
            built = self._load()
            if built is None:
                feats = public_features(backbone, self.images)
                built = (feats, train_decoder(feats, self.images, self.decoder_steps, self.seed))
                self._save(*built)
            self._for = {key: built}
        return self._for[key]

    def _save(self, feats: torch.Tensor, decoder: Decoder) -> None:
        if self.path is None:
            return
        tensors = {"features": feats, **{f"state.{k}": v.detach().clone() for k, v in decoder.state_dict().items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({"format": CACHE_FORMAT, "tensors": tensors, "digest": content_digest(tensors)}, tmp)
        tmp.replace(self.path)

    def _load(self):
        """``(features, decoder)`` from ``path``, or ``None`` when absent or not to be
        trusted (read with ``weights_only=True``, digest recomputed, shapes checked, the
        decoder's weights loaded strictly): then they are rebuilt."""
        if self.path is None or not self.path.is_file():
            return None
        try:
            stored = torch.load(self.path, map_location="cpu", weights_only=True)
            tensors = stored["tensors"]
            if stored.get("format") != CACHE_FORMAT or stored.get("digest") != content_digest(tensors):
                return None
            feats = tensors["features"]
            if feats.dim() != 2 or feats.shape[0] != self.images.shape[0]:
                return None
            decoder = Decoder(feats.shape[1], tuple(self.images.shape[1:]))
            decoder.load_state_dict({k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")},
                                    strict=True)
        except Exception:  # unreadable, truncated, tampered or from another layout: rebuild
            return None
        decoder.eval()
        for p in decoder.parameters():
            p.requires_grad_(False)
        return feats, decoder
