"""A small DCGAN (Radford, Metz, Chintala 2016, "Unsupervised representation learning with
deep convolutional generative adversarial networks") for single-channel images whose
side lengths are multiples of 4 (8x8 digits, 28x28 (Fashion-)MNIST): the image prior of
the generative inversion attacks (``gan_latent``, ``gifd``).

Generator, as a list of blocks so that GIFD can start from the input of any block:

    block 0: z [N, latent_dim] -> Linear -> [2w, H/4, W/4] -> BatchNorm -> ReLU
    block 1: ConvTranspose 4x4 stride 2 -> [w, H/2, W/2] -> BatchNorm -> ReLU
    block 2: ConvTranspose 4x4 stride 2 -> [1, H, W] -> sigmoid (images in [0, 1])

Discriminator: Conv 4x4/2 -> LeakyReLU(0.2) -> Conv 4x4/2 -> BatchNorm -> LeakyReLU(0.2)
-> Linear -> logit. Training: the non-saturating GAN loss, Adam (betas 0.5, 0.999) as in
DCGAN, ``z ~ N(0, I)``. Defaults chosen for 2 CPU cores: ``width`` 32, ``latent_dim`` 32,
batch 64, learning rate 1e-3 (DCGAN's 2e-4 needs more steps than the budget here), and
``epochs`` enough for about ``steps`` (1500) updates when not given.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
from torch import nn
import torch.nn.functional as F

from attacks.inversion.base import check_positive, check_positive_int
from fedsim.api import ArtifactCache
from fedsim.models.features import content_digest


def _chw(image_shape: tuple) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or shape[0] != 1 or shape[1] % 4 or shape[2] % 4 or min(shape) < 1:
        raise ValueError(f"the generator needs single-channel images with sides divisible by 4, "
                         f"(1, H, W) or (H, W); got {tuple(image_shape)}")
    return shape  # type: ignore[return-value]


class _Reshape(nn.Module):
    def __init__(self, shape: tuple):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


class Generator(nn.Module):
    """``forward(z [N, latent_dim]) -> images [N, *image_shape]`` in [0, 1], split into
    ``blocks``; ``forward_from(h, k)`` runs blocks ``k..`` on ``h`` (the input of block
    ``k``)."""

    def __init__(self, image_shape: tuple, latent_dim: int = 32, width: int = 32):
        super().__init__()
        channels, height, width_px = _chw(image_shape)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        w = self.width = check_positive_int("width", width)
        base = (height // 4, width_px // 4)
        self.blocks = nn.ModuleList([
            nn.Sequential(nn.Linear(self.latent_dim, 2 * w * base[0] * base[1]), _Reshape((2 * w, *base)),
                          nn.BatchNorm2d(2 * w), nn.ReLU()),
            nn.Sequential(nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU()),
            nn.Sequential(nn.ConvTranspose2d(w, channels, 4, 2, 1), nn.Sigmoid(), _Reshape(self.image_shape)),
        ])

    def forward_from(self, h: torch.Tensor, k: int) -> torch.Tensor:
        for block in self.blocks[k:]:
            h = block(h)
        return h

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.forward_from(z, 0)


class Discriminator(nn.Module):
    def __init__(self, image_shape: tuple, width: int = 32):
        super().__init__()
        channels, height, width_px = _chw(image_shape)
        w = check_positive_int("width", width)
        self.net = nn.Sequential(
            _Reshape((channels, height, width_px)),
            nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * w * (height // 4) * (width_px // 4), 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).squeeze(-1)


def train_generator(images: torch.Tensor, latent_dim: int = 32, epochs: Optional[int] = None, seed: int = 0,
                    batch_size: int = 64, lr: float = 1e-3, width: int = 32, steps: int = 1500) -> Generator:
    """Train a :class:`Generator` on ``images [N, *image_shape]`` (values in [0, 1]);
    returns it frozen, in eval mode. Deterministic for a given ``seed`` (the global
    random state is left as it was)."""
    if images.dim() < 3 or images.shape[0] < 2:
        raise ValueError(f"images must be [N, (1,) H, W] with N >= 2; got shape {tuple(images.shape)}")
    batch_size = min(check_positive_int("batch_size", batch_size), images.shape[0])
    check_positive("lr", lr)
    steps_per_epoch = math.ceil(images.shape[0] / batch_size)
    if epochs is None:
        epochs = max(1, math.ceil(check_positive_int("steps", steps) / steps_per_epoch))
    epochs = check_positive_int("epochs", epochs)
    images = images.float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        generator = Generator(tuple(images.shape[1:]), latent_dim, width)
        discriminator = Discriminator(tuple(images.shape[1:]), width)
        opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
        draws = torch.Generator().manual_seed(int(seed))
        for _ in range(epochs):
            order = torch.randperm(images.shape[0], generator=draws)
            for start in range(0, images.shape[0] - batch_size + 1, batch_size):
                real = images[order[start:start + batch_size]]
                z = torch.randn(real.shape[0], generator.latent_dim, generator=draws)
                fake = generator(z)
                # Discriminator: real -> 1, fake -> 0.
                opt_d.zero_grad()
                real_logit, fake_logit = discriminator(real), discriminator(fake.detach())
                loss_d = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                          + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
                loss_d.backward()
                opt_d.step()
                # Generator: the non-saturating loss -log D(G(z)).
                opt_g.zero_grad()
                fake_logit = discriminator(fake)
                F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit)).backward()
                opt_g.step()
    generator.eval()
    for p in generator.parameters():
        p.requires_grad_(False)
    return generator


# Bumped when the stored form of a generator changes: older cache entries are then ignored.
CACHE_FORMAT = 2  # 2: a state dict, constructor arguments and a content digest (1: a pickled module)


def prepared_generator(public_images: torch.Tensor, cache: Optional[ArtifactCache], seed: int) -> Generator:
    """The generator the generative attacks search with: trained on the public split's
    ``public_images`` (:func:`train_generator` with ``seed``), or loaded from ``cache``
    where an earlier run with the same data and seed stored it."""
    if cache is None:
        return train_generator(public_images, seed=seed)
    path = cache.path("generators", seed=int(seed), format=CACHE_FORMAT)
    generator = load_generator(path)
    if generator is None:
        generator = train_generator(public_images, seed=seed)
        save_generator(generator, path)
    return generator


def load_generator(path: Path) -> Optional[Generator]:
    """The generator stored at ``path``; ``None`` when there is none or it cannot be
    trusted: read with ``weights_only=True`` (plain tensors and containers, never code),
    its constructor arguments checked, its content digest recomputed and compared, its
    weights loaded strictly. A cache entry that fails any of these is rebuilt."""
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if not (isinstance(stored, dict) and stored.get("format") == CACHE_FORMAT
                and isinstance(stored.get("state"), dict) and isinstance(stored.get("args"), dict)):
            return None
        args = stored["args"]
        if set(args) != {"image_shape", "latent_dim", "width"} or \
                not all(isinstance(v, int) and not isinstance(v, bool) for v in (*args["image_shape"],
                                                                                 args["latent_dim"], args["width"])):
            return None
        if stored.get("digest") != content_digest(stored["state"]):
            return None
        generator = Generator(tuple(args["image_shape"]), args["latent_dim"], args["width"])
        generator.load_state_dict(stored["state"], strict=True)
    except Exception:  # unreadable, truncated, tampered or from another layout: rebuild it
        return None
    generator.eval()
    for p in generator.parameters():
        p.requires_grad_(False)
    return generator


def save_generator(generator: Generator, path: Path) -> None:
    """Store ``generator`` at ``path`` as its state dict, its constructor arguments and
    the state's content digest (written to a temporary file, then renamed)."""
    state = {k: v.detach().clone() for k, v in generator.state_dict().items()}
    stored = {"format": CACHE_FORMAT, "state": state, "digest": content_digest(state),
              "args": {"image_shape": list(generator.image_shape), "latent_dim": generator.latent_dim,
                       "width": generator.width}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(stored, tmp)
    tmp.replace(path)
