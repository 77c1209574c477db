"""Datasets, partitioners, public split and local test split."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from fedsim.data import datasets as ds
from fedsim.data.datasets import DataError, load_dataset
from fedsim.data.partition import local_test_split, partition, split_public
from fedsim.registry import names

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

# 10 classes of unequal sizes 30, 31, ..., 39 (345 samples), shuffled.
LABELS = np.random.default_rng(7).permutation(np.repeat(np.arange(10), np.arange(30, 40)))


def _assert_disjoint_and_complete(parts, n):
    for p in parts:
        assert p.dtype == np.int64
        assert np.all(np.diff(p) > 0), "each part is sorted and has no duplicate"
    everything = np.concatenate(parts)
    assert len(everything) == n, "no index is given twice"
    assert np.array_equal(np.sort(everything), np.arange(n)), "every index is given"


# --------------------------------------------------------------------------- partitioners

def test_partitioners_registered():
    assert names("partitions") == ["cyclic", "dirichlet", "drift", "iid", "label_groups", "shards"]


@pytest.mark.parametrize("kind, args", [("iid", {}), ("dirichlet", {"alpha": 0.5, "min_samples": 5}),
                                        ("shards", {"classes_per_peer": 2}),
                                        ("cyclic", {"classes_per_peer": 4})])
@pytest.mark.parametrize("n_peers", [7, 10, 13])
def test_partition_disjoint_complete_and_seeded(kind, args, n_peers):
    parts = partition(kind, LABELS, n_peers, seed=3, **args)
    assert len(parts) == n_peers
    _assert_disjoint_and_complete(parts, len(LABELS))
    again = partition(kind, LABELS, n_peers, seed=3, **args)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = partition(kind, LABELS, n_peers, seed=4, **args)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def test_iid_sizes_differ_by_at_most_one():
    sizes = [len(p) for p in partition("iid", LABELS, 10, seed=0)]
    assert sorted(sizes) == [34] * 5 + [35] * 5  # 345 = 10 * 34 + 5


def test_cyclic_peer_i_holds_exactly_classes_i_to_i_plus_k_minus_1():
    k = 4
    parts = partition("cyclic", LABELS, 10, seed=1, classes_per_peer=k)
    for i, p in enumerate(parts):
        assert set(np.unique(LABELS[p])) == {(i + j) % 10 for j in range(k)}
    # Each class is held by k = 4 peers and split evenly: class c has 30 + c samples.
    for c in range(10):
        counts = sorted(int(np.sum(LABELS[p] == c)) for p in parts if np.any(LABELS[p] == c))
        n_c = 30 + c
        assert counts == sorted([n_c // 4 + (1 if r < n_c % 4 else 0) for r in range(4)])


def test_cyclic_with_more_peers_than_classes_wraps_around():
    parts = partition("cyclic", LABELS, 13, seed=1, classes_per_peer=2)
    assert set(np.unique(LABELS[parts[12]])) == {2, 3}  # 12 mod 10 = 2
    assert set(np.unique(LABELS[parts[9]])) == {9, 0}


def test_cyclic_rejects_uncovered_classes_and_bad_k():
    with pytest.raises(ValueError, match="held by no peer"):
        partition("cyclic", LABELS, 3, seed=0, classes_per_peer=2)  # peers 0..2 hold classes 0..3
    with pytest.raises(ValueError, match="classes_per_peer"):
        partition("cyclic", LABELS, 10, seed=0, classes_per_peer=11)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_shards_give_at_most_k_classes(k):
    parts = partition("shards", LABELS, 10, seed=2, classes_per_peer=k)
    assert all(len(np.unique(LABELS[p])) <= k for p in parts)
    assert all(len(p) > 0 for p in parts)


def test_shards_equal_classes_match_mcmahan_sizes():
    # 10 classes x 20 samples, 10 peers x 2 shards: 20 shards of 10 samples, each a single class.
    labels = np.repeat(np.arange(10), 20)
    parts = partition("shards", labels, 10, seed=0, classes_per_peer=2)
    assert [len(p) for p in parts] == [20] * 10
    for p in parts:
        _, counts = np.unique(labels[p], return_counts=True)
        assert sorted(counts.tolist()) in ([20], [10, 10])


def test_shards_rejects_too_few_shards():
    with pytest.raises(ValueError, match="less than the 10 classes"):
        partition("shards", LABELS, 4, seed=0, classes_per_peer=2)
    with pytest.raises(ValueError, match="classes_per_peer"):
        partition("shards", LABELS, 4, seed=0, classes_per_peer=0)


def test_dirichlet_min_samples_and_skew():
    parts = partition("dirichlet", LABELS, 10, seed=5, alpha=0.1, min_samples=15)
    assert min(len(p) for p in parts) >= 15
    # alpha 0.1 concentrates each class on few peers: some peer misses a class entirely,
    # whereas alpha 1000 is close to iid (every peer has every class).
    assert any(len(np.unique(LABELS[p])) < 10 for p in parts)
    flat = partition("dirichlet", LABELS, 5, seed=5, alpha=1000.0, min_samples=1)
    assert all(len(np.unique(LABELS[p])) == 10 for p in flat)


def test_dirichlet_impossible_min_samples_is_a_clear_error():
    with pytest.raises(ValueError, match="exceeds the 345 samples"):
        partition("dirichlet", LABELS, 10, seed=0, min_samples=35)
    with pytest.raises(ValueError, match="no draw in 5 tries"):
        # 34 of the 34.5 possible per peer: essentially never met with alpha 0.05
        partition("dirichlet", LABELS, 10, seed=0, alpha=0.05, min_samples=34, max_tries=5)
    with pytest.raises(ValueError, match="alpha"):
        partition("dirichlet", LABELS, 10, seed=0, alpha=0)


def test_unknown_partition_lists_names():
    with pytest.raises(KeyError, match="allowed: cyclic, dirichlet, drift, iid, label_groups, shards"):
        partition("zipf", LABELS, 3, seed=0)


# --------------------------------------------------------------------------- public split

def test_split_public_is_stratified_and_disjoint():
    public, private = split_public(LABELS, 0.2, seed=0)
    _assert_disjoint_and_complete([public, private], len(LABELS))
    for c in range(10):  # round(0.2 * (30 + c)): 6, 6, 6, 7 (33*0.2=6.6), 7, 7, 7, 7, 8 (38*.2=7.6), 8
        assert int(np.sum(LABELS[public] == c)) == [6, 6, 6, 7, 7, 7, 7, 7, 8, 8][c]
    empty, everything = split_public(LABELS, 0.0, seed=0)
    assert len(empty) == 0 and np.array_equal(everything, np.arange(len(LABELS)))
    with pytest.raises(ValueError, match="fraction"):
        split_public(LABELS, 1.0, seed=0)


# --------------------------------------------------------------------------- local test split

def test_local_test_split_counts():
    labels = np.array([0] * 25 + [1] * 7 + [2] * 1 + [3] * 2)
    indices = np.arange(100, 100 + len(labels))
    all_labels = np.concatenate([np.full(100, 9), labels])  # indices point into this array
    train, test, classes = local_test_split(indices, all_labels, test_per_class=5, seed=0)
    # class 0: min(5, 25 // 2 = 12) = 5; class 1: min(5, 3) = 3; class 2: 1 sample -> not held;
    # class 3: min(5, 1) = 1.
    assert classes.dtype == np.int64 and classes.tolist() == [0, 1, 3]
    assert [int(np.sum(all_labels[test] == c)) for c in range(4)] == [5, 3, 0, 1]
    assert len(train) == len(labels) - 9
    _assert_disjoint_and_complete([train - 100, test - 100], len(labels))
    train0, test0, classes0 = local_test_split(indices, all_labels, test_per_class=0, seed=0)
    assert len(test0) == 0 and np.array_equal(train0, indices) and classes0.tolist() == [0, 1, 3]


# --------------------------------------------------------------------------- datasets

def test_digits_shapes_and_split():
    d = load_dataset("digits", seed=0, test_fraction=0.2)
    assert d.image_shape == (1, 8, 8) and d.n_classes == 10 and d.source == "sklearn"
    assert len(d.train_images) + len(d.test_images) == 1797
    assert d.train_images.dtype == torch.float32 and d.train_labels.dtype == torch.int64
    assert float(d.train_images.min()) == 0.0 and float(d.train_images.max()) == 1.0
    # stratified: class 0 has 178 samples -> round(0.2 * 178) = 36 test samples
    assert int((d.test_labels == 0).sum()) == 36


def test_synthetic_is_deterministic_and_separable():
    a = load_dataset("synthetic", seed=1, n_samples=600, dim=8, n_classes=3, separation=6.0)
    b = load_dataset("synthetic", seed=1, n_samples=600, dim=8, n_classes=3, separation=6.0)
    c = load_dataset("synthetic", seed=2, n_samples=600, dim=8, n_classes=3, separation=6.0)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, c.train_images)
    assert a.image_shape == (8,) and len(a.train_images) == 480 and a.n_classes == 3
    assert torch.bincount(a.train_labels).tolist() == [160, 160, 160]
    # nearest class mean (estimated on train) classifies the test set well: means are
    # ~ sqrt(2) * 6 = 8.5 noise std apart.
    means = torch.stack([a.train_images[a.train_labels == k].mean(0) for k in range(3)])
    predicted = torch.cdist(a.test_images, means).argmin(1)
    assert float((predicted == a.test_labels).float().mean()) > 0.95


@pytest.mark.skipif(not (FASHION_DIR / "train-labels-idx1-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_loads_from_system_dir(monkeypatch):
    monkeypatch.delenv("FEDSIM_DATA", raising=False)
    d = load_dataset("fashion_mnist", download=False)
    assert d.source == str(FASHION_DIR)
    assert d.image_shape == (1, 28, 28) and len(d.train_images) == 60000 and len(d.test_images) == 10000
    assert torch.bincount(d.train_labels).tolist() == [6000] * 10
    assert torch.bincount(d.test_labels).tolist() == [1000] * 10
    assert 0.0 <= float(d.test_images.min()) and float(d.test_images.max()) == 1.0


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def test_fashion_mnist_root_comes_first_and_plain_files_work(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    for stem, array in [("train-images-idx3-ubyte", images), ("t10k-images-idx3-ubyte", images[:2])]:
        _write_idx(tmp_path / stem, array, gz=False)
    for stem, array in [("train-labels-idx1-ubyte", np.array([1, 2, 3])), ("t10k-labels-idx1-ubyte", np.array([4, 5]))]:
        _write_idx(tmp_path / stem, array, gz=True)
    d = load_dataset("fashion_mnist", root=str(tmp_path), download=False)
    assert d.source == str(tmp_path)
    assert d.train_labels.tolist() == [1, 2, 3] and d.test_labels.tolist() == [4, 5]
    assert torch.allclose(d.train_images[1, 0], torch.as_tensor(images[1] / 255.0, dtype=torch.float32))


def test_read_idx_rejects_truncated_file(tmp_path):
    _write_idx(tmp_path / "x", np.zeros((2, 3)), gz=False)
    (tmp_path / "y").write_bytes((tmp_path / "x").read_bytes()[:-1])
    with pytest.raises(DataError, match="truncated"):
        ds.read_idx(tmp_path / "y")


def test_search_order_and_missing_files_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSIM_DATA", str(tmp_path / "env"))
    dirs = ds.fashion_mnist_search_dirs(str(tmp_path / "root"))
    assert dirs[:4] == [tmp_path / "root", tmp_path / "env", tmp_path / "env" / "fashion-mnist",
                        Path("/usr/share/datasets/fashion-mnist")]
    assert dirs[4] == ds.fashion_mnist_cache_dir() and str(dirs[4]).endswith("datasets/fashion-mnist")
    missing = [tmp_path / "root", tmp_path / "env", tmp_path / "nowhere"]
    with pytest.raises(DataError) as err:
        ds.locate_idx_files(missing, download_dir=None)
    message = str(err.value)
    assert "\n" not in message
    for place in missing:
        assert str(place) in message
    assert "apt-get install dataset-fashion-mnist" in message and "$FEDSIM_DATA" in message
