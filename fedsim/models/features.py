"""Frozen-backbone features, computed once per run and cached on disk.

``prepare_features`` builds the backbone, pre-trains it on the public split, freezes
it and runs it over every training and test sample. The backbone's weights and the
features are stored under ``cache_dir()/features/<key>/``, where ``key`` is the
SHA-256 of a canonical JSON of everything that determines them; a second run with
the same inputs loads them and skips pre-training.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from fedsim.models.backbones import build_backbone
from fedsim.models.pretrain import freeze, pretrain_backbone

log = logging.getLogger(__name__)

# Bump when the cached files' layout or the computation changes in a way the key misses.
# 2: pre-training and featurising run with one torch thread (one_thread); entries of
# format 1 were computed with whatever thread count the process had, so their last bits
# (and, through chaotic runs such as averaging under noise, whole points of accuracy)
# depended on the machine and on who filled the cache.
CACHE_FORMAT = 2
_BACKBONE_FILE, _FEATURES_FILE, _META_FILE = "backbone.pt", "features.pt", "meta.json"


def cache_dir() -> Path:
    """``$FEDSIM_CACHE``, else ``$XDG_CACHE_HOME/fedsim``, else ``~/.cache/fedsim``."""
    if os.environ.get("FEDSIM_CACHE"):
        return Path(os.environ["FEDSIM_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "fedsim"
    return Path.home() / ".cache" / "fedsim"


@contextlib.contextmanager
def one_thread():
    """Run the block with one torch intra-op thread, then restore the count. Pre-training
    and featurising split large reductions (convolution weight gradients over a batch)
    across threads, so their last bits depend on the thread count; with one thread the
    features, and so every run's numbers, are the same on every machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def compute_features(backbone: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """``[N, *input_shape] -> [N, feature_dim]`` float32, in eval mode, without gradients."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    backbone.eval()
    if len(images) == 0:
        return torch.zeros(0, backbone.feature_dim)
    chunks = [backbone(images[i:i + int(batch_size)]) for i in range(0, len(images), int(batch_size))]
    return torch.cat(chunks).float().contiguous()


@dataclass
class FeatureSet:
    backbone: nn.Module           # frozen, eval mode
    train_features: torch.Tensor  # [N_train, D], row i = dataset.train_images[i]
    test_features: torch.Tensor   # [N_test, D]
    from_cache: bool
    pretrain_stats: dict = field(default_factory=dict)
    key: str = ""


def _digest_tensor(hasher, tensor: torch.Tensor) -> None:
    array = np.ascontiguousarray(tensor.detach().cpu().numpy())
    hasher.update(f"{array.dtype.str}{array.shape}".encode())
    hasher.update(memoryview(array).cast("B"))


def content_digest(tensors: dict) -> str:
    """BLAKE2b of a flat mapping of names to tensors (names, dtypes, shapes and bytes, in
    name order): stored next to a cache entry and recomputed when it is loaded, so a
    damaged or altered entry is recomputed instead of used."""
    hasher = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        hasher.update(f"{name}\0".encode())
        _digest_tensor(hasher, tensors[name])
    return hasher.hexdigest()


def dataset_fingerprint(dataset) -> str:
    """BLAKE2b of the dataset's four arrays (dtype, shape and bytes)."""
    hasher = hashlib.blake2b(digest_size=16)
    for tensor in (dataset.train_images, dataset.train_labels, dataset.test_images, dataset.test_labels):
        _digest_tensor(hasher, tensor)
    return hasher.hexdigest()


def _canonical(value: Any) -> Any:
    """JSON-ready form in which equal settings look equal (tuples as lists, numpy as Python)."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def normalise_pretrain(pretrain: Optional[dict]) -> dict:
    """Pre-training settings with defaults filled in (epochs 10, lr 1e-3, batch 64, all classes)."""
    settings = {"epochs": 10, "lr": 1e-3, "batch_size": 64, "classes": None}
    unknown = set(pretrain or {}) - set(settings)
    if unknown:
        raise ValueError(f"unknown pretrain settings {sorted(unknown)}; allowed: {sorted(settings)}")
    settings.update(pretrain or {})
    settings["epochs"], settings["batch_size"] = int(settings["epochs"]), int(settings["batch_size"])
    settings["lr"] = float(settings["lr"])
    if settings["classes"] is not None:
        settings["classes"] = sorted(int(c) for c in settings["classes"])
    return settings


def resolved_backbone_args(backbone: str, backbone_args: dict) -> dict:
    """The backbone's arguments with its defaults filled in, so that a change of a
    default in the code also changes the cache key."""
    import inspect
    from fedsim.registry import lookup
    params = inspect.signature(lookup("backbones", backbone)).parameters.values()
    resolved = {p.name: p.default for p in params
                if p.default is not inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_KEYWORD}
    resolved.update(backbone_args)
    return resolved


def feature_key(dataset, public_idx, backbone: str, backbone_args: dict, pretrain: dict, seed: int) -> str:
    """SHA-256 of the canonical JSON of every input that determines the features."""
    public = np.sort(np.asarray(public_idx, dtype=np.int64))
    description = {
        "format": CACHE_FORMAT,
        "dataset": {"name": dataset.name, "fingerprint": dataset_fingerprint(dataset)},
        "public_idx": hashlib.sha256(public.tobytes()).hexdigest(),
        "backbone": {"name": backbone, "args": _canonical(resolved_backbone_args(backbone, backbone_args))},
        "pretrain": _canonical(normalise_pretrain(pretrain)),
        "seed": int(seed),
        "torch": torch.__version__,
    }
    text = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _build(dataset, backbone: str, backbone_args: dict, seed: int) -> nn.Module:
    """The backbone with its initial weights drawn from ``torch.manual_seed(seed)`` without
    disturbing the caller's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build_backbone(backbone, dataset.image_shape, **backbone_args)


def _load(directory: Path, dataset, backbone: str, backbone_args: dict, seed: int, key: str) -> FeatureSet:
    model = _build(dataset, backbone, backbone_args, seed)
    meta = json.loads((directory / _META_FILE).read_text())
    state = torch.load(directory / _BACKBONE_FILE, map_location="cpu", weights_only=True)
    features = torch.load(directory / _FEATURES_FILE, map_location="cpu", weights_only=True)
    if meta.get("digest") != {"backbone": content_digest(state), "features": content_digest(features)}:
        raise ValueError("cached files do not match their recorded digest")
    model.load_state_dict(state)
    freeze(model)
    train, test = features["train"], features["test"]
    if train.shape != (len(dataset.train_images), model.feature_dim) or \
            test.shape != (len(dataset.test_images), model.feature_dim):
        raise ValueError("cached features have the wrong shape")
    return FeatureSet(model, train, test, True, meta.get("pretrain_stats", {}), key)


def _store(directory: Path, fs: FeatureSet, description: dict) -> None:
    """Write into a fresh temporary sibling directory, then rename it into place (atomic:
    readers see all files or none; when another process won the race, keep its copy)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp-"))
    try:
        state = fs.backbone.state_dict()
        features = {"train": fs.train_features, "test": fs.test_features}
        torch.save(state, tmp / _BACKBONE_FILE)
        torch.save(features, tmp / _FEATURES_FILE)
        digest = {"backbone": content_digest(state), "features": content_digest(features)}
        (tmp / _META_FILE).write_text(json.dumps({**description, "pretrain_stats": fs.pretrain_stats,
                                                  "digest": digest}, indent=1, sort_keys=True, default=str))
        os.rename(tmp, directory)
    except OSError as exc:
        if not (directory / _META_FILE).exists():
            log.warning("could not write the feature cache %s: %s", directory, exc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prepare_features(dataset, public_idx, *, backbone: str, backbone_args: Optional[dict] = None,
                     pretrain: Optional[dict] = None, seed: int = 0, use_cache: bool = True) -> FeatureSet:
    """Build, pre-train (on ``dataset.train_images[public_idx]``), freeze, and featurise.

    ``pretrain``: ``epochs``, ``lr``, ``batch_size``, ``classes`` (see
    :func:`fedsim.models.pretrain.pretrain_backbone`). The backbone's initial weights and
    the pre-training order both come from ``seed``. With ``use_cache`` the result is read
    from / written to ``cache_dir()/features/<key>/``; an unreadable cache entry is
    recomputed and replaced.
    """
    backbone_args = dict(backbone_args or {})
    settings = normalise_pretrain(pretrain)
    public_idx = np.sort(np.asarray(public_idx, dtype=np.int64))
    key = feature_key(dataset, public_idx, backbone, backbone_args, settings, seed)
    directory = cache_dir() / "features" / key
    if use_cache and (directory / _META_FILE).exists():
        try:
            return _load(directory, dataset, backbone, backbone_args, seed, key)
        except Exception as exc:  # a damaged entry is recomputed, not fatal
            log.warning("ignoring unreadable feature cache %s: %s", directory, exc)
            shutil.rmtree(directory, ignore_errors=True)

    model = _build(dataset, backbone, backbone_args, seed)
    index = torch.as_tensor(public_idx)
    with one_thread():
        stats = pretrain_backbone(model, dataset.train_images[index], dataset.train_labels[index],
                                  dataset.n_classes, epochs=settings["epochs"], lr=settings["lr"],
                                  batch_size=settings["batch_size"], classes=settings["classes"], seed=seed)
        fs = FeatureSet(model, compute_features(model, dataset.train_images),
                        compute_features(model, dataset.test_images), False, stats, key)
    if use_cache:
        _store(directory, fs, {"dataset": dataset.name, "backbone": backbone,
                               "backbone_args": _canonical(backbone_args), "pretrain": settings,
                               "seed": int(seed), "torch": torch.__version__})
    return fs
