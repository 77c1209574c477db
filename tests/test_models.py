"""Backbones, pre-training and the feature cache."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from fedsim.data.datasets import Dataset
from fedsim.models.backbones import InvertedResidual, build_backbone, make_divisible
from fedsim.models.features import cache_dir, compute_features, feature_key, prepare_features
from fedsim.models.pretrain import pretrain_backbone
from fedsim.registry import names


@pytest.mark.parametrize("name, args, dim", [
    ("cnn", {}, 64), ("cnn", {"channels": [4], "feature_dim": 10, "batch_norm": False}, 10),
    ("mobilenetv2", {"width": 0.25, "feature_dim": 24}, 24), ("mlp", {"hidden": [20, 12]}, 12),
])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_backbone_output_shape(name, args, dim, shape):
    torch.manual_seed(0)
    model = build_backbone(name, shape, **args).eval()
    assert model.feature_dim == dim
    out = model(torch.rand(3, *shape))
    assert out.shape == (3, dim) and torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (5,)])
def test_identity_flattens(shape):
    model = build_backbone("identity", shape)
    assert model.feature_dim == math.prod(shape)
    x = torch.rand(2, *shape)
    assert torch.equal(model(x), x.reshape(2, -1))
    assert list(model.parameters()) == []


def test_backbones_registered_and_validated():
    assert names("backbones") == ["cnn", "gru", "identity", "mlp", "mobilenetv2"]
    with pytest.raises(ValueError, match="image inputs"):
        build_backbone("cnn", (32,))


def test_make_divisible_matches_hand_values():
    # nearest multiple of 8, never more than 10% below: 32*0.5=16 -> 16; 24*0.35=8.4 -> 8;
    # 96*0.75=72 -> 72; 12 -> 16 (int(12+4)//8*8 = 16); 3 -> 8 (at least the divisor);
    # 36 -> 40 (int(40)//8*8 = 40); 19 -> 16 (int(23)//8*8 = 16, and 16 >= 0.9*19 = 17.1 fails -> 24)
    assert [make_divisible(v) for v in (16, 8.4, 72, 12, 3, 36, 19)] == [16, 8, 72, 16, 8, 40, 24]


def test_inverted_residual_uses_skip_only_for_stride_1_same_channels():
    assert InvertedResidual(16, 16, 1, 6).use_residual
    assert not InvertedResidual(16, 16, 2, 6).use_residual
    assert not InvertedResidual(16, 24, 1, 6).use_residual
    block = InvertedResidual(8, 8, 1, 6).eval()
    # zero the last BatchNorm's scale and shift: the block's branch outputs 0, so y = x
    last_bn = block.block[-1]
    nn.init.zeros_(last_bn.weight), nn.init.zeros_(last_bn.bias)
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(block(x), x)
    # expansion 6: hidden width 48 in the depthwise conv; expansion 1 has no 1x1 expansion
    assert block.block[1][0].out_channels == 48 and block.block[1][0].groups == 48
    assert sum(isinstance(m, nn.Conv2d) for m in InvertedResidual(8, 8, 1, 1).modules()) == 2


def test_mobilenetv2_width_scales_channels_and_strides_adapt():
    def conv_channels(model):
        return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]

    full = build_backbone("mobilenetv2", (1, 28, 28), min_size=2)
    half = build_backbone("mobilenetv2", (1, 28, 28), width=0.5, min_size=2)
    assert all(c % 8 == 0 for c in conv_channels(full) + conv_channels(half))
    assert conv_channels(full)[0] == 32 and conv_channels(half)[0] == 16   # stem 32 * width
    # widest conv: the expansion of the 96-channel stage's input, 64 * 6 (half width: 32 * 6)
    assert max(conv_channels(full)) == 64 * 6 and max(conv_channels(half)) == 32 * 6
    assert conv_channels(full)[-1] == conv_channels(half)[-1] == 64         # feature_dim not scaled
    n_full = sum(p.numel() for p in full.parameters())
    n_half = sum(p.numel() for p in half.parameters())
    assert n_half < 0.5 * n_full

    def final_size(model, shape):
        x = torch.rand(1, *shape)
        for layer in model.layers[:-3]:  # up to (not including) the last 1x1 conv and the pooling
            x = layer(x)
        return tuple(x.shape[-2:])

    # min_size 2, three stride-2 stages: 28 -> 14 -> 7 -> 4; 8 -> 4 -> 2, then the third keeps stride 1
    assert final_size(full.eval(), (1, 28, 28)) == (4, 4)
    assert final_size(build_backbone("mobilenetv2", (1, 8, 8), min_size=2).eval(), (1, 8, 8)) == (2, 2)
    assert final_size(build_backbone("mobilenetv2", (1, 3, 3), min_size=2).eval(), (1, 3, 3)) == (2, 2)
    # the default min_size 8: 28 -> 14 -> 7 (7 <= 8: the third stride-2 stage keeps stride 1);
    # 8x8 is never reduced
    assert final_size(build_backbone("mobilenetv2", (1, 28, 28)).eval(), (1, 28, 28)) == (7, 7)
    assert final_size(build_backbone("mobilenetv2", (1, 8, 8)).eval(), (1, 8, 8)) == (8, 8)


def _toy_images(n=120, seed=0):
    """Two classes of 8x8 images: bright top half vs bright bottom half, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.rand(n, 1, 8, 8, generator=g) * 0.3
    images[labels == 0, :, :4] += 0.7
    images[labels == 1, :, 4:] += 0.7
    return images, labels


def test_pretrain_learns_then_freezes_and_is_seeded():
    images, labels = _toy_images()

    def run(seed):
        torch.manual_seed(0)
        model = build_backbone("cnn", (1, 8, 8), channels=[4, 8], feature_dim=8)
        stats = pretrain_backbone(model, images, labels, 2, epochs=5, lr=1e-2, batch_size=16, seed=seed)
        return model, stats

    model, stats = run(0)
    assert stats["skipped"] is None and stats["steps"] == 5 * math.ceil(120 / 16)
    assert stats["train_accuracy"] > 0.9  # the task is linearly separable
    assert not model.training and all(not p.requires_grad for p in model.parameters())
    again, _ = run(0)
    other, _ = run(1)
    same = [torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values())]
    assert all(same)
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


def test_pretrain_class_subset_and_skips():
    images, labels = _toy_images()
    labels = labels + torch.arange(120) % 3 * 2  # six classes 0..5
    model = build_backbone("mlp", (1, 8, 8), hidden=[8])
    stats = pretrain_backbone(model, images, labels, 6, epochs=1, batch_size=7, classes=[0, 5])
    assert stats["n_samples"] == int(((labels == 0) | (labels == 5)).sum()) == 40
    assert stats["steps"] == math.ceil(40 / 7)
    ident = build_backbone("identity", (1, 8, 8))
    assert pretrain_backbone(ident, images, labels, 6)["skipped"] == "backbone has no parameters"
    empty = build_backbone("mlp", (1, 8, 8), hidden=[8])
    before = [p.clone() for p in empty.parameters()]
    stats = pretrain_backbone(empty, images[:0], labels[:0], 6)
    assert stats["skipped"] == "no public samples" and not any(p.requires_grad for p in empty.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, empty.parameters()))
    with pytest.raises(ValueError, match="classes"):
        pretrain_backbone(empty, images, labels, 6, classes=[6])


def test_compute_features_batches_agree():
    model = build_backbone("cnn", (1, 8, 8), channels=[4], feature_dim=5).eval()
    images, _ = _toy_images(50)
    whole = compute_features(model, images, batch_size=1024)
    pieces = compute_features(model, images, batch_size=7)
    assert whole.shape == (50, 5) and torch.allclose(whole, pieces, atol=1e-6)
    assert not whole.requires_grad


def _toy_dataset():
    images, labels = _toy_images(100)
    return Dataset("toy", images[:80], labels[:80], images[80:], labels[80:], 2, "test")


def test_cache_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDSIM_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("FEDSIM_CACHE")
    assert cache_dir() == tmp_path / "b" / "fedsim"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == cache_dir().home() / ".cache" / "fedsim"


def test_feature_cache_round_trip(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDSIM_CACHE", str(tmp_path))
    data = _toy_dataset()
    public = np.arange(0, 80, 4)
    kwargs = dict(backbone="cnn", backbone_args={"channels": [4], "feature_dim": 6},
                  pretrain={"epochs": 2, "lr": 0.01, "batch_size": 8}, seed=3)
    first = prepare_features(data, public, **kwargs)
    assert not first.from_cache and first.pretrain_stats["steps"] == 2 * math.ceil(20 / 8)
    assert first.train_features.shape == (80, 6) and first.test_features.shape == (20, 6)
    stored = tmp_path / "features" / first.key
    assert sorted(os.listdir(stored)) == ["backbone.pt", "features.pt", "meta.json"]
    assert not [p for p in (tmp_path / "features").iterdir() if p.name.startswith(".")]  # no temp left

    second = prepare_features(data, public, **kwargs)
    assert second.from_cache and second.key == first.key
    assert second.pretrain_stats == first.pretrain_stats  # restored, not recomputed
    assert torch.equal(second.train_features, first.train_features)
    assert torch.equal(second.test_features, first.test_features)
    # the loaded backbone is the trained one, frozen: it recomputes the same features
    assert not any(p.requires_grad for p in second.backbone.parameters())
    assert torch.allclose(compute_features(second.backbone, data.test_images), first.test_features, atol=1e-6)

    # without the cache the same inputs give the same numbers (everything is seeded)
    fresh = prepare_features(data, public, use_cache=False, **kwargs)
    assert not fresh.from_cache and torch.allclose(fresh.train_features, first.train_features, atol=1e-6)


def test_feature_key_changes_with_every_input():
    data = _toy_dataset()
    public = np.arange(10)
    base = dict(backbone="cnn", backbone_args={"feature_dim": 6}, pretrain={"epochs": 2}, seed=0)
    key = feature_key(data, public, **base)
    assert key == feature_key(data, public[::-1], **base)  # the order of the indices does not matter
    # equal settings written differently give the same key: defaults filled in, tuples = lists
    assert key == feature_key(data, public, **{**base, "pretrain": {"epochs": 2, "lr": 0.001}})
    assert feature_key(data, public, **{**base, "backbone_args": {"channels": (16, 32), "feature_dim": 6}}) == \
        feature_key(data, public, **{**base, "backbone_args": {"feature_dim": 6, "channels": [16, 32]}})
    variants = [
        feature_key(data, public[:-1], **base),
        feature_key(data, public, **{**base, "backbone": "mlp"}),
        feature_key(data, public, **{**base, "backbone_args": {"feature_dim": 7}}),
        feature_key(data, public, **{**base, "pretrain": {"epochs": 3}}),
        feature_key(data, public, **{**base, "pretrain": {"epochs": 2, "classes": [1]}}),
        feature_key(data, public, **{**base, "seed": 1}),
    ]
    changed = Dataset("toy", data.train_images.clone(), data.train_labels, data.test_images, data.test_labels, 2, "x")
    changed.train_images[0, 0, 0, 0] += 1e-3
    variants.append(feature_key(changed, public, **base))
    assert len(set(variants + [key])) == len(variants) + 1


def test_prepare_features_key_changes_with_an_arg(monkeypatch, tmp_path):
    monkeypatch.setenv("FEDSIM_CACHE", str(tmp_path))
    data = _toy_dataset()
    a = prepare_features(data, np.arange(20), backbone="mlp", backbone_args={"hidden": [4]},
                         pretrain={"epochs": 1}, seed=0)
    b = prepare_features(data, np.arange(20), backbone="mlp", backbone_args={"hidden": [5]},
                         pretrain={"epochs": 1}, seed=0)
    assert a.key != b.key and not b.from_cache and b.train_features.shape == (80, 5)
    ident = prepare_features(data, np.zeros(0, dtype=np.int64), backbone="identity", backbone_args={},
                             pretrain={}, seed=0)
    assert ident.pretrain_stats["skipped"] and torch.equal(ident.train_features, data.train_images.flatten(1))
