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
- ``kyoto2013``: the Kyoto University honeypot traffic data as GRU-SVM (Agarap 2017)
  prepares it, from files the user gives (see :func:`load_kyoto2013`).

``digits`` and ``fashion_mnist`` take ``view``: ``images`` ``[N, 1, H, W]`` (default) or
``sequences`` ``[N, H, W]``, each image the sequence of its ``H`` rows of ``W`` pixels,
for sequence backbones such as ``gru`` (:func:`as_view`).
"""
from __future__ import annotations

import dataclasses
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

from fedsim.params import Boolean, Interval, Options, declare, defaults
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


VIEWS = Options("images", "sequences")


def as_view(dataset: Dataset, view: str) -> Dataset:
    """``images``: unchanged ``[N, 1, H, W]``; ``sequences``: ``[N, H, W]``, each
    one-channel image the sequence of its ``H`` rows (``W`` features per step), as
    sequential MNIST is read row by row (Le, Jaitly, Hinton 2015 read it pixel by pixel)."""
    if view == "images":
        return dataset
    if view != "sequences":
        raise ValueError(f"view must be 'images' or 'sequences'; got {view!r}")
    return dataclasses.replace(dataset, train_images=dataset.train_images.squeeze(1),
                               test_images=dataset.test_images.squeeze(1))


# --------------------------------------------------------------------------- digits

def _ten_classes(args) -> int:
    return 10


@register("datasets", "digits")
@declare({"view": VIEWS}, class_count=_ten_classes)
def load_digits(*, root: Optional[str] = None, seed: int = 0, test_fraction: float = 0.2,
                view: str = "images") -> Dataset:
    """scikit-learn's 8x8 handwritten digits (UCI ML optical recognition), /16 to [0, 1].

    ``root`` is ignored (the data ships with scikit-learn). ``view`` [images]: see
    :func:`as_view`.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    return as_view(_from_arrays("digits", images, labels, train_idx, test_idx, 10, "sklearn"), view)


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
@declare({"download": Boolean(), "view": VIEWS}, class_count=_ten_classes)
def load_fashion_mnist(*, root: Optional[str] = None, seed: int = 0, test_fraction: float = 0.2,
                       download: bool = True, view: str = "images") -> Dataset:
    """Fashion-MNIST (28x28 grey, 10 classes), official split; pixels /255.

    ``download`` [True]: when no directory holds the files, fetch them from the public
    mirror into the user cache (short timeout). ``view`` [images]: see :func:`as_view`.
    ``seed`` and ``test_fraction`` are ignored.
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

    return as_view(Dataset(name="fashion_mnist",
                           train_images=images(arrays["train_images"]),
                           train_labels=torch.from_numpy(arrays["train_labels"].astype(np.int64)),
                           test_images=images(arrays["test_images"]),
                           test_labels=torch.from_numpy(arrays["test_labels"].astype(np.int64)),
                           n_classes=10, source=source), view)


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


# --------------------------------------------------------------------------- kyoto2013

# The 24 columns of the Kyoto 2006+ honeypot traffic data (Song et al. 2011, "Statistical
# analysis of honeypot data and building of Kyoto 2006+ dataset for NIDS evaluation"), in
# file order, named as GRU-SVM's authors name them (AFAgarap/gru-svm dataset/normalize_data.py).
KYOTO2013_COLUMNS = (
    "duration", "service", "src_bytes", "dest_bytes", "count", "same_srv_rate", "serror_rate",
    "srv_serror_rate", "dst_host_count", "dst_host_srv_count", "dst_host_same_src_port_rate",
    "dst_host_serror_rate", "dst_host_srv_serror_rate", "flag", "ids_detection", "malware_detection",
    "ashula_detection", "label", "src_ip_add", "src_port_num", "dst_ip_add", "dst_port_num",
    "start_time", "protocol")
KYOTO2013_CONTINUOUS = (
    "duration", "src_bytes", "dest_bytes", "count", "same_srv_rate", "serror_rate", "srv_serror_rate",
    "dst_host_count", "dst_host_srv_count", "dst_host_same_src_port_rate", "dst_host_serror_rate",
    "dst_host_srv_serror_rate", "src_port_num", "dst_port_num", "start_time")
KYOTO2013_SYMBOLIC_BINNED = ("service", "flag")     # indexed, then binned like the continuous ones
KYOTO2013_DETECTIONS = ("ids_detection", "malware_detection", "ashula_detection")   # 0, or a signature
KYOTO2013_DROPPED = ("label", "src_ip_add", "dst_ip_add")
KYOTO2013_FEATURES = tuple(c for c in KYOTO2013_COLUMNS if c not in KYOTO2013_DROPPED)   # 21
KYOTO2013_BINS = 10
KYOTO2013_LABELS = {1: 0, -1: 1, -2: 1}   # normal; known attack, unknown attack -> 1 = attack


def equal_width_bins(values: np.ndarray, n_bins: int = KYOTO2013_BINS) -> np.ndarray:
    """Bin index in ``0..n_bins-1``: ``np.digitize(v, linspace(min, max, n_bins), right=True)``,
    the bucket binning of GRU-SVM's dataset/bin_data.py (``min`` -> 0, ``max`` -> n_bins-1;
    a constant column -> 0)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values.astype(np.int64)
    edges = np.linspace(values.min(), values.max(), n_bins)
    return np.digitize(values, edges, right=True).astype(np.int64)


def _index_symbols(symbols: list[str]) -> np.ndarray:
    """``[0, n-1]`` by the sorted distinct symbols (scikit-learn's LabelEncoder)."""
    _, index = np.unique(np.asarray(symbols, dtype=object).astype(str), return_inverse=True)
    return index.astype(np.int64)


def _clock_hours(text: str) -> float:
    """``hh:mm:ss`` -> hours (the authors' continuous start time)."""
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return hours + minutes / 60 + seconds / 3600


def kyoto2013_files(root: Optional[str]) -> list[Path]:
    """The ``*.txt`` (tab-separated, as published) and ``*.csv`` (comma-separated) files
    under ``root``, sorted by path; a :class:`DataError` when there is no root or none."""
    if not root:
        raise DataError("kyoto2013: set data.root to the directory holding the Kyoto 2013 traffic files "
                        "(*.txt tab-separated as published at http://www.takakura.com/Kyoto_data/, or *.csv; "
                        "24 columns); the data is not bundled")
    check_root(root)
    files = sorted(p for p in Path(root).expanduser().rglob("*") if p.is_file() and p.suffix in (".txt", ".csv"))
    if not files:
        raise DataError(f"kyoto2013: data.root: {root}: no *.txt or *.csv file")
    return files


def read_kyoto2013(files: Sequence[Path]) -> tuple[dict[str, list], np.ndarray]:
    """``(columns, labels)``: the raw text of each column but the label, and the labels
    mapped to 1 = attack (known -1 or unknown -2), 0 = normal (1). A line with other than
    24 fields, a non-number where a number belongs, a start time that is not ``hh:mm:ss``
    or a label outside {1, -1, -2} is a :class:`DataError` naming the file and line."""
    columns: dict[str, list] = {name: [] for name in KYOTO2013_COLUMNS if name != "label"}
    labels: list[int] = []
    numeric = set(KYOTO2013_CONTINUOUS) - {"start_time"}
    for path in files:
        delimiter = "\t" if path.suffix == ".txt" else ","
        try:
            lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = [f.strip() for f in line.split(delimiter)]
            if len(fields) != len(KYOTO2013_COLUMNS):
                raise DataError(f"{path}:{number}: expected {len(KYOTO2013_COLUMNS)} "
                                f"{'tab' if delimiter == chr(9) else 'comma'}-separated fields of the Kyoto 2013 "
                                f"format, got {len(fields)}")
            row = dict(zip(KYOTO2013_COLUMNS, fields))
            try:
                label = KYOTO2013_LABELS[int(row["label"])]
                values = {name: float(row[name]) for name in numeric}
                values["start_time"] = _clock_hours(row["start_time"])
            except (ValueError, KeyError):
                raise DataError(f"{path}:{number}: not a Kyoto 2013 record (label in 1, -1, -2; numbers in "
                                f"{', '.join(sorted(numeric))}; start_time hh:mm:ss)") from None
            if not all(np.isfinite(v) for v in values.values()):
                raise DataError(f"{path}:{number}: a numeric field is not finite")
            labels.append(label)
            for name in columns:
                columns[name].append(values.get(name, row[name]))
    if not labels:
        raise DataError(f"kyoto2013: no record in {', '.join(str(p) for p in files)}")
    return columns, np.asarray(labels, dtype=np.int64)


def kyoto2013_bins(columns: dict[str, list]) -> np.ndarray:
    """``[N, 21]`` bin indices in ``0..9``, one per feature of :data:`KYOTO2013_FEATURES`."""
    binned = []
    for name in KYOTO2013_FEATURES:
        raw = columns[name]
        if name in KYOTO2013_CONTINUOUS:
            binned.append(equal_width_bins(raw))
        elif name in KYOTO2013_DETECTIONS:
            binned.append(np.asarray([0 if value == "0" else 1 for value in raw], dtype=np.int64))
        else:   # service, flag: indexed then binned; protocol (tcp, udp, icmp): indexed
            index = _index_symbols(raw)
            binned.append(equal_width_bins(index) if name in KYOTO2013_SYMBOLIC_BINNED
                          or index.max() >= KYOTO2013_BINS else index)
    return np.stack(binned, axis=1)


def _two_classes(args) -> int:
    return 2


@register("datasets", "kyoto2013")
@declare({}, class_count=_two_classes)
def load_kyoto2013(*, root: Optional[str] = None, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """The Kyoto University honeypot traffic data of 2013 (Song et al. 2011's Kyoto 2006+
    format), prepared as GRU-SVM does: Agarap (2017), "A Neural Network Architecture
    Combining Gated Recurrent Unit (GRU) and Support Vector Machine (SVM) for Intrusion
    Detection in Network Traffic Data" (its data preparation) and the authors' dataset/*.py.

    Reads every ``*.txt`` (tab-separated, as published) and ``*.csv`` (comma-separated,
    as the authors convert them) file under ``data.root`` (the data is not bundled:
    :func:`kyoto2013_files`). Each record has the 24 columns of
    :data:`KYOTO2013_COLUMNS`. Preparation (dataset/normalize_data.py, bin_data.py):
    the two IP addresses are dropped; the label becomes 1 = attack (-1 known, -2
    unknown) and 0 = normal (1); the three detection columns become 1 when they hold a
    signature (anything but ``0``); ``start_time`` ``hh:mm:ss`` becomes hours; the 15
    continuous columns (:data:`KYOTO2013_CONTINUOUS`) and the indexed ``service`` and
    ``flag`` are cut into 10 equal-width bins over their range across all files
    (:func:`equal_width_bins`); ``protocol`` is indexed. The authors standardise before
    binning; an affine map does not move equal-width bins, so that step is left out.
    Every one of the 21 features is then one-hot over 10 values, as the authors' model
    does (``tf.one_hot(x, depth=10)``): a sample is the sequence ``[21, 10]`` that the
    ``gru`` backbone reads, label in {0, 1}. Stratified seeded test split of
    ``test_fraction``.
    """
    files = kyoto2013_files(root)
    columns, labels = read_kyoto2013(files)
    onehot = np.eye(KYOTO2013_BINS, dtype=np.float32)[kyoto2013_bins(columns)]
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    return _from_arrays("kyoto2013", onehot, labels, train_idx, test_idx, 2, str(Path(root).expanduser()))
