"""Dataset loaders: ``load_dataset(name, root=..., seed=..., test_fraction=..., **args)``.

Every loader returns a :class:`Dataset` of float32 tensors (images ``[N, 1, H, W]`` in
[0, 1]; the synthetic dataset's "images" are vectors ``[N, dim]``) and int64 labels,
with a train and a test split. Loaders are registered under ``"datasets"`` and share
``load_dataset``'s keyword signature minus ``name``; unknown keyword arguments are a
``ValueError``.

- ``digits``: scikit-learn's ``load_digits`` (1797 images, 8x8, 10 classes, values
  0..16 divided by 16), stratified seeded test split of ``test_fraction``.
- ``fashion_mnist``: Xiao, Rasul, Vollgraf (2017), "Fashion-MNIST: a novel image
  dataset for benchmarking machine learning algorithms"; the four IDX files, official
  60000/10000 split (``test_fraction`` is ignored). See :func:`fashion_mnist_search_dirs`
  for where the files are looked for.
- ``synthetic``: Gaussian class clusters (see :func:`load_synthetic`).
"""
from __future__ import annotations

import gzip
import os
import shutil
import stat
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from fedsim.params import Boolean, Interval, declare, defaults
from fedsim.registry import create, lookup, register


class DataError(Exception):
    """A user-facing data problem (missing files, unreadable file): one-line message."""


@dataclass
class Dataset:
    name: str
    train_images: torch.Tensor   # [N, 1, H, W] float32 in [0, 1]; synthetic: [N, dim]
    train_labels: torch.Tensor   # [N] int64
    test_images: torch.Tensor
    test_labels: torch.Tensor
    n_classes: int
    source: str                  # where it was loaded from: a path, "sklearn", "synthetic"

    @property
    def image_shape(self) -> tuple:
        return tuple(self.train_images.shape[1:])


def load_dataset(name: str, *, root: Optional[str] = None, seed: int = 0,
                 test_fraction: float = 0.2, **args) -> Dataset:
    """Load the dataset registered as ``name`` (``fedsim list datasets``)."""
    return create("datasets", name, root=root, seed=seed, test_fraction=test_fraction, **args)


def class_count(name: str, args: dict) -> int:
    """How many classes dataset ``name`` has with (valid) ``args``, without loading it."""
    loader = lookup("datasets", name)
    return loader.class_count({**defaults(loader), **args})


def _check_test_fraction(test_fraction: float) -> None:
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, test_idx)``: per class, ``round(test_fraction * count)`` samples go to test.

    Seeded with ``np.random.default_rng(seed)``; both index arrays are sorted.
    """
    _check_test_fraction(test_fraction)
    rng = np.random.default_rng(seed)
    test_parts = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = int(round(test_fraction * len(members)))
        test_parts.append(rng.permutation(members)[:n_test])
    test_idx = np.sort(np.concatenate(test_parts)) if test_parts else np.zeros(0, dtype=np.int64)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


def _from_arrays(name: str, images: np.ndarray, labels: np.ndarray, train_idx: np.ndarray,
                 test_idx: np.ndarray, n_classes: int, source: str) -> Dataset:
    images_t = torch.as_tensor(np.ascontiguousarray(images, dtype=np.float32))
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    train_t, test_t = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    return Dataset(name=name, train_images=images_t[train_t], train_labels=labels_t[train_t],
                   test_images=images_t[test_t], test_labels=labels_t[test_t],
                   n_classes=n_classes, source=source)


# --------------------------------------------------------------------------- digits

def _ten_classes(args) -> int:
    return 10


@register("datasets", "digits")
@declare({}, class_count=_ten_classes)
def load_digits(*, root: Optional[str] = None, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (UCI ML optical recognition), /16 to [0, 1].

    ``root`` is ignored (the data ships with scikit-learn).
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    return _from_arrays("digits", images, labels, train_idx, test_idx, 10, "sklearn")


# --------------------------------------------------------------------------- fashion-mnist

FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian: dataset-fashion-mnist
DOWNLOAD_TIMEOUT_S = 10.0


def fashion_mnist_cache_dir() -> Path:
    from fedsim.models.features import cache_dir

    return cache_dir() / "datasets" / "fashion-mnist"


def check_root(root: Optional[str]) -> None:
    """``data.root``, when given, must be a readable directory: a :class:`DataError` naming
    the path and the reason otherwise (rather than silently looking elsewhere)."""
    if not root:
        return
    path = Path(root).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"data.root: {path}: no such directory") from None
    except OSError as exc:
        raise DataError(f"data.root: {path}: cannot use: {exc.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise DataError(f"data.root: {path}: not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise DataError(f"data.root: {path}: cannot read the directory: permission denied")


def fashion_mnist_search_dirs(root: Optional[str] = None) -> list[Path]:
    """Where the IDX files are looked for, in order.

    ``root`` (if given), ``$FEDSIM_DATA`` and ``$FEDSIM_DATA/fashion-mnist`` (if set),
    ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``), then the
    user cache ``<cache_dir>/datasets/fashion-mnist`` (where a download goes).
    """
    dirs: list[Path] = []
    if root:
        dirs.append(Path(root).expanduser())
    env = os.environ.get("FEDSIM_DATA")
    if env:
        dirs += [Path(env).expanduser(), Path(env).expanduser() / "fashion-mnist"]
    dirs += [FASHION_MNIST_SYSTEM_DIR, fashion_mnist_cache_dir()]
    return dirs


def _find_file(directory: Path, stem: str) -> Optional[Path]:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def find_idx_files(directory: Path, files: dict[str, str] = FASHION_MNIST_FILES) -> Optional[dict[str, Path]]:
    """The path of each file (``.gz`` or un-gzipped) in ``directory``, or None if any is missing."""
    found = {key: _find_file(directory, stem) for key, stem in files.items()}
    return None if any(path is None for path in found.values()) else found  # type: ignore[return-value]


def download_idx_files(target: Path, base_url: str = FASHION_MNIST_MIRROR,
                       files: dict[str, str] = FASHION_MNIST_FILES,
                       timeout: float = DOWNLOAD_TIMEOUT_S) -> dict[str, Path]:
    """Download the ``.gz`` files into ``target`` (each written to a temp file, then renamed)."""
    target.mkdir(parents=True, exist_ok=True)
    found = {}
    for key, stem in files.items():
        destination = target / f"{stem}.gz"
        if not destination.is_file():
            fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{stem}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(base_url + stem + ".gz",
                                                                       timeout=timeout) as response:
                    shutil.copyfileobj(response, out)
                os.replace(tmp, destination)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        found[key] = destination
    return found


def locate_idx_files(search_dirs: Sequence[Path], download_dir: Optional[Path]) -> tuple[dict[str, Path], str]:
    """``(paths, source)``: the first directory holding all four files, else a download.

    ``download_dir=None`` disables the download. Raises :class:`DataError` naming every
    place looked and how to get the files.
    """
    for directory in search_dirs:
        found = find_idx_files(Path(directory))
        if found is not None:
            return found, str(directory)
    download_note = "download disabled"
    if download_dir is not None:
        try:
            return download_idx_files(Path(download_dir)), str(download_dir)
        except Exception as exc:  # any network/file error ends as a user-facing message
            download_note = f"download from {FASHION_MNIST_MIRROR} failed: {type(exc).__name__}: {exc}"
    looked = ", ".join(str(d) for d in search_dirs)
    raise DataError(
        f"fashion_mnist: the IDX files ({', '.join(s + '.gz' for s in FASHION_MNIST_FILES.values())}) "
        f"were not found in any of: {looked}; {download_note}. "
        f"Install them with 'apt-get install dataset-fashion-mnist', or put them in data.root "
        f"or $FEDSIM_DATA")


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (LeCun's MNIST format; ``.gz`` or plain) into a numpy array.

    Header: two zero bytes, a dtype code (0x08 = uint8), the number of dimensions, then
    one big-endian int32 per dimension; the data follow, row-major.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, or a damaged / truncated .gz
        raise DataError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(x) for x in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: truncated IDX file ({data.size} values, header says {shape})")
    return data.reshape(shape)


@register("datasets", "fashion_mnist")
@declare({"download": Boolean()}, class_count=_ten_classes)
def load_fashion_mnist(*, root: Optional[str] = None, seed: int = 0, test_fraction: float = 0.2,
                       download: bool = True) -> Dataset:
    """Fashion-MNIST (28x28 grey, 10 classes), official split; pixels /255.

    ``download`` [True]: when no directory holds the files, fetch them from the public
    mirror into the user cache (short timeout). ``seed`` and ``test_fraction`` are ignored.
    """
    check_root(root)
    paths, source = locate_idx_files(fashion_mnist_search_dirs(root),
                                     fashion_mnist_cache_dir() if download else None)
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise DataError(f"{source}: {split} images and labels differ in length")

    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32)[:, None, :, :] / np.float32(255.0))

    return Dataset(name="fashion_mnist",
                   train_images=images(arrays["train_images"]),
                   train_labels=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
                   test_images=images(arrays["test_images"]),
                   test_labels=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
                   n_classes=10, source=source)


# --------------------------------------------------------------------------- synthetic

def _synthetic_run(args, facts):
    if args["n_samples"] < 2 * args["n_classes"]:
        return [("n_samples", f"must be at least 2 * n_classes = {2 * args['n_classes']}")]
    return []


@register("datasets", "synthetic")
@declare({"n_samples": Interval(int, 4, None), "dim": Interval(int, 1, None), "n_classes": Interval(int, 2, None),
          "separation": Interval(float, 0, None)}, _synthetic_run, class_count=lambda args: args["n_classes"])
def load_synthetic(*, root: Optional[str] = None, seed: int = 0, test_fraction: float = 0.2,
                   n_samples: int = 10000, dim: int = 32, n_classes: int = 10,
                   separation: float = 3.0) -> Dataset:
    """Gaussian class clusters in ``R^dim``.

    Class means ``mu_c ~ N(0, separation^2 / dim * I)``, samples ``x = mu_y + N(0, I)``,
    labels balanced (``i mod n_classes``, shuffled). With this scaling the expected squared
    distance between two means is ``2 * separation^2`` whatever ``dim`` is, i.e. two class
    means lie about ``sqrt(2) * separation`` noise standard deviations apart. Defaults:
    ``n_samples`` 10000, ``dim`` 32, ``n_classes`` 10, ``separation`` 3.0; ``seed`` is the
    scenario seed; stratified test split of ``test_fraction``. ``root`` is ignored.
    """
    n_samples, dim, n_classes = int(n_samples), int(dim), int(n_classes)
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, float(separation) / np.sqrt(dim), size=(n_classes, dim))
    labels = rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)
    vectors = means[labels] + rng.normal(size=(n_samples, dim))
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    return _from_arrays("synthetic", vectors, labels, train_idx, test_idx, n_classes, "synthetic")
