"""Feature extractors ("backbones"): ``build_backbone(name, input_shape, **args)``.

A backbone is an ``nn.Module`` with an int attribute ``feature_dim`` whose forward maps
``[B, *input_shape]`` to ``[B, feature_dim]``. It is pre-trained on the public split
(:mod:`fedsim.models.pretrain`), frozen, and run once over every sample
(:mod:`fedsim.models.features`); peers then only train a head on its features.
Factories are registered under ``"backbones"`` as ``f(input_shape, **args)``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from fedsim.params import Boolean, Interval, ListOf, declare
from fedsim.registry import create, register


def build_backbone(name: str, input_shape: tuple, **args) -> nn.Module:
    """Build the backbone registered as ``name`` for inputs of shape ``input_shape``."""
    input_shape = tuple(int(s) for s in input_shape)
    if not input_shape or any(s < 1 for s in input_shape):
        raise ValueError(f"backbone {name!r}: input_shape must be non-empty and positive; got {input_shape}")
    return create("backbones", name, input_shape, **args)


def _image_shape(name: str, input_shape: tuple) -> tuple[int, int, int]:
    """``(channels, height, width)``; a 2-D shape is one channel."""
    if len(input_shape) == 2:
        return (1, *input_shape)
    if len(input_shape) == 3:
        return input_shape  # type: ignore[return-value]
    raise ValueError(f"backbone {name!r} needs image inputs (C, H, W) or (H, W); got shape "
                     f"{input_shape} (use 'mlp' or 'identity' for vectors)")


# Layer sizes: one int or a non-empty list of them.
SIZES = [Interval(int, 1, None), ListOf(Interval(int, 1, None), min_length=1)]


def _sizes(values) -> tuple[int, ...]:
    return (values,) if isinstance(values, int) else tuple(values)


class _ToImage(nn.Module):
    """``[B, H, W] -> [B, 1, H, W]`` when the input shape was 2-D; identity otherwise."""

    def __init__(self, input_shape: tuple):
        super().__init__()
        self.add_channel = len(input_shape) == 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1) if self.add_channel else x


# --------------------------------------------------------------------------- cnn

class SmallCNN(nn.Module):
    """Conv blocks (3x3 conv, padding 1 -> [BatchNorm] -> ReLU -> 2x2 max-pool), one per
    entry of ``channels``, then flatten -> linear -> ReLU to ``feature_dim``.

    In the spirit of the small MNIST CNN that Bristle (Verbraeken, de Vos, Pouwelse 2021)
    pre-trains and freezes, and of FedAvg's "CNN" (McMahan et al. 2017), scaled down for
    CPUs.
    A pool is skipped when the map is already 1 pixel wide, so 8x8 (-> 2x2) and 28x28
    (-> 7x7) inputs both work.
    """

    def __init__(self, input_shape: tuple, channels: Sequence[int], feature_dim: int, batch_norm: bool = True):
        super().__init__()
        in_channels, height, width = _image_shape("cnn", input_shape)
        layers: list[nn.Module] = [_ToImage(input_shape)]
        for out_channels in channels:
            layers.append(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            if min(height, width) >= 2:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        layers += [nn.Flatten(), nn.Linear(in_channels * height * width, feature_dim), nn.ReLU(inplace=True)]
        self.layers = nn.Sequential(*layers)
        self.feature_dim = int(feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register("backbones", "cnn")
@declare({"channels": SIZES, "feature_dim": Interval(int, 1, None), "batch_norm": Boolean()})
def cnn(input_shape: tuple, channels: Sequence[int] = (16, 32), feature_dim: int = 64,
        batch_norm: bool = True) -> nn.Module:
    """Small CNN (:class:`SmallCNN`). Defaults: ``channels`` (16, 32), ``feature_dim`` 64,
    ``batch_norm`` True.

    Chosen by measurement (public split 20%, seed 0, pre-training 10 epochs, Adam lr 1e-3,
    batch 64; logistic regression on the other 80%'s features): test accuracy 0.96 on
    digits and 0.895 on Fashion-MNIST, with Fashion-MNIST pre-training in about 20 s on 2
    CPU cores. BatchNorm matters on digits, whose 287 public images give only 50 steps:
    without it the same network reaches 0.89.
    """
    return SmallCNN(input_shape, _sizes(channels), feature_dim, batch_norm)


# --------------------------------------------------------------------------- mobilenetv2

def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``), never
    going more than 10% below ``value``: the channel rounding of MobileNetV2's reference
    implementation, which its width multiplier relies on."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _conv_bn_relu6(in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                   groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """MobileNetV2's bottleneck: 1x1 expansion (x t) + ReLU6, 3x3 depthwise (stride s) +
    ReLU6, linear 1x1 projection (BatchNorm after each conv, no activation after the
    projection). ``y = x + block(x)`` when ``stride == 1`` and the channels match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn_relu6(in_channels, hidden, 1))
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_residual else self.block(x)


# (expansion t, output channels c, repeats n, nominal stride s): the paper's Table 2 cut
# after the 96-channel stage (the 160/320 stages and the 32x spatial reduction are sized
# for 224x224 images). Rows with t=None use the ``expansion`` argument.
MOBILENETV2_STAGES = ((1, 16, 1, 1), (None, 24, 2, 2), (None, 32, 3, 2), (None, 64, 2, 2), (None, 96, 1, 1))
MOBILENETV2_STEM = 32


class MobileNetV2(nn.Module):
    """Sandler, Howard, Zhu, Zhmoginov, Chen (2018), "MobileNetV2: inverted residuals and
    linear bottlenecks", reduced for 8x8 and 28x28 grey images.

    Stem 3x3 conv (32 channels, stride 1), the stages of :data:`MOBILENETV2_STAGES` (the
    first block of a stage has its stride, the rest stride 1), a 1x1 conv + BN + ReLU6
    to ``feature_dim`` channels, global average pooling. Every channel count except
    ``feature_dim`` is ``make_divisible(c * width, 8)``; ``feature_dim`` is not scaled, so
    that it is the feature size asked for (the paper likewise keeps its last conv at
    1280 for widths below 1). A stride-2 stage keeps stride 1 once the map is
    ``min_size`` pixels or smaller, so the spatial size never drops below ``min_size``
    (8, the default: 8x8 stays 8x8, 28x28 -> 7x7; 2: 8x8 -> 2x2, 28x28 -> 4x4).
    """

    def __init__(self, input_shape: tuple, width: float, expansion: int, feature_dim: int, min_size: int):
        super().__init__()
        in_channels, height, width_px = _image_shape("mobilenetv2", input_shape)
        size = min(height, width_px)
        channels = make_divisible(MOBILENETV2_STEM * width)
        layers: list[nn.Module] = [_ToImage(input_shape), _conv_bn_relu6(in_channels, channels, 3)]
        for t, c, n, s in MOBILENETV2_STAGES:
            out_channels = make_divisible(c * width)
            for i in range(n):
                stride = s if i == 0 and size > min_size else 1
                layers.append(InvertedResidual(channels, out_channels, stride, expansion if t is None else t))
                size = math.ceil(size / stride)
                channels = out_channels
        layers += [_conv_bn_relu6(channels, feature_dim, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.layers = nn.Sequential(*layers)
        self.feature_dim = int(feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register("backbones", "mobilenetv2")
@declare({"width": Interval(float, 0, None, closed="neither"), "expansion": Interval(int, 1, None),
          "feature_dim": Interval(int, 1, None), "min_size": Interval(int, 1, None)})
def mobilenetv2(input_shape: tuple, width: float = 1.0, expansion: int = 6, feature_dim: int = 64,
                min_size: int = 8) -> nn.Module:
    """Reduced MobileNetV2 (:class:`MobileNetV2`). Defaults: ``width`` 1.0, ``expansion`` 6
    (the paper's), ``feature_dim`` 64, ``min_size`` 8.

    ``min_size`` 8 by measurement (docs/components.md, MobileNetV2 section; frozen
    features scored by a softmax probe, public split 20 %, 3 seeds): on digits it keeps
    the 8x8 map and gives 0.936 ± 0.004 where reducing it to 2x2 gave 0.876 ± 0.015 (the
    cnn: 0.967 ± 0.007); pre-training at lr 1e-2 instead of 1e-3 adds two more points
    (0.956 ± 0.006). On a 10,000-image Fashion-MNIST subset (one seed) 7x7 and 4x4 final
    maps are within a point (0.780 and 0.774).
    """
    return MobileNetV2(input_shape, float(width), expansion, feature_dim, min_size)


# --------------------------------------------------------------------------- gru

class GRUEncoder(nn.Module):
    """A GRU (Cho et al. 2014) over a sequence of feature vectors; its last hidden state
    (of the top layer) is the feature vector: the recurrent part of GRU-SVM (Agarap 2017,
    "A Neural Network Architecture Combining Gated Recurrent Unit (GRU) and Support Vector
    Machine (SVM) for Intrusion Detection in Network Traffic Data"), whose output layer is
    the ``l2svm`` head.

    Input ``[B, T, F]``: ``T`` steps of ``F`` features (the ``kyoto2013`` dataset: 21
    one-hot binned features of 10 values; ``digits`` / ``fashion_mnist`` with ``view:
    sequences``: an image's rows). The initial state is zero, as in the authors' code.
    """

    def __init__(self, input_shape: tuple, hidden: int, layers: int):
        super().__init__()
        if len(input_shape) != 2:
            raise ValueError(f"backbone 'gru' needs sequences (steps, features); got shape {input_shape} "
                             f"(for digits or fashion_mnist set data.args.view: sequences)")
        self.gru = nn.GRU(input_shape[1], hidden, num_layers=layers, batch_first=True)
        self.feature_dim = int(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(x)
        return last[-1]


@register("backbones", "gru")
@declare({"hidden": Interval(int, 1, None), "layers": Interval(int, 1, None)})
def gru(input_shape: tuple, hidden: int = 64, layers: int = 1) -> nn.Module:
    """GRU over the rows of a sequence (:class:`GRUEncoder`). Defaults: ``hidden`` 64 (the
    feature size; the paper's cell is 256 for 1.9 million Kyoto records), ``layers`` 1."""
    return GRUEncoder(input_shape, hidden, layers)


# --------------------------------------------------------------------------- mlp, identity

class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU`` per hidden size; ``feature_dim`` = last hidden size."""

    def __init__(self, input_shape: tuple, hidden: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        size = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(size, h), nn.ReLU(inplace=True)]
            size = h
        self.layers = nn.Sequential(*layers)
        self.feature_dim = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register("backbones", "mlp")
@declare({"hidden": SIZES})
def mlp(input_shape: tuple, hidden: Sequence[int] = (128,)) -> nn.Module:
    """Multi-layer perceptron (:class:`MLP`). Default ``hidden`` (128,)."""
    return MLP(input_shape, _sizes(hidden))


class Identity(nn.Module):
    """Flatten: the raw inputs are the features (no parameters, nothing to pre-train)."""

    def __init__(self, input_shape: tuple):
        super().__init__()
        self.feature_dim = int(math.prod(input_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


@register("backbones", "identity")
@declare({})
def identity(input_shape: tuple) -> nn.Module:
    """Flatten (:class:`Identity`); ``feature_dim = prod(input_shape)``."""
    return Identity(input_shape)
