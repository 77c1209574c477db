"""The information plane of the exchanged heads: ``I(X;T)`` and ``I(T;Y)`` of the head's
softmax output ``T`` over the global test set, for the honest peers whose heads a run
saved (``output.save_heads``), round by round.

Shwartz-Ziv & Tishby 2017, "Opening the black box of deep neural networks via
information", arXiv:1703.00810: each unit of ``T`` is discretised into equal bins over
its activation range, the binned vectors are the values of a discrete ``T``, and with
``X`` the (uniform, finite) set of inputs and ``Y`` the labels::

    I(X;T) = H(T) - H(T|X)                    (= H(T): T is a function of X)
    I(T;Y) = H(T) - H(T|Y),   H(T|Y) = sum_y p(y) H(T | Y = y)

in bits, every probability the empirical frequency over the samples.

Where the paper is silent the authors' code decides (github.com/ravidziv/IDNNs at commit
e53f054, ``idnns/information/information_process.py``): the bin edges are
``np.linspace(low, high, n_bins)`` (``get_information``, line 183: ``n_bins`` edges over
tanh's ``[-1, 1]``, default 30 in ``idnns/networks/network_paramters.py`` line 83; here the
softmax's ``[0, 1]``), a value's bin is ``np.digitize(v, edges) - 1``
(``calc_information_for_layer``, line 20; the top edge ``high`` itself is the last index),
``X``'s values are the distinct input rows (``extract_probs``, line 162: ``np.unique`` over
``x``'s rows) and ``H(T|X)``, ``H(T|Y)`` are averages of the entropies within each group
(``idnns/information/mutual_information_calculation.py``, ``calc_condtion_entropy`` line 22
and ``calc_information_from_mat`` line 31), all in ``log2``.
"""
from __future__ import annotations

import json

import numpy as np
import torch

__all__ = ["N_BINS", "bin_values", "entropy_bits", "conditional_entropy_bits", "information_plane",
           "head_outputs", "run_information_plane", "summary_table"]

N_BINS = 30


# ----------------------------------------------------------------------------- estimator
def bin_values(values, n_bins: int = N_BINS, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Integer bin index of every entry of ``values``: ``digitize(v, linspace(low, high,
    n_bins)) - 1``, so ``[edge_i, edge_(i+1))`` is bin ``i`` and ``v = high`` is bin
    ``n_bins - 1`` (the authors' binning). Values outside ``[low, high]`` are an error."""
    values = np.asarray(values, dtype=np.float64)
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2; got {n_bins}")
    if values.size and (not np.isfinite(values).all() or values.min() < low or values.max() > high):
        raise ValueError(f"values must lie in [{low}, {high}]")
    return np.digitize(values, np.linspace(low, high, n_bins)) - 1


def _row_codes(rows: np.ndarray) -> np.ndarray:
    """``[n]`` an integer id per distinct row of ``rows`` (``[n, d]``)."""
    rows = np.asarray(rows)
    if rows.ndim == 1:
        rows = rows[:, None]
    return np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1)


def entropy_bits(codes) -> float:
    """Entropy in bits of the empirical distribution of ``codes`` (one value per sample)."""
    _, counts = np.unique(np.asarray(codes), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def conditional_entropy_bits(codes, groups) -> float:
    """``H(codes | groups) = sum_g p(g) H(codes | group = g)`` in bits, computed as
    ``H(codes, groups) - H(groups)`` (the same number; one pass instead of one per group,
    which matters for ``H(T|X)`` with thousands of distinct inputs)."""
    codes, groups = np.asarray(codes).reshape(-1), np.asarray(groups).reshape(-1)
    return entropy_bits(_row_codes(np.stack([groups, codes], axis=1))) - entropy_bits(groups)


def information_plane(t, labels, n_bins: int = N_BINS, low: float = 0.0, high: float = 1.0,
                      inputs=None) -> tuple[float, float]:
    """``(I(X;T), I(T;Y))`` in bits of the layer output ``t`` (``[n, units]``, values in
    ``[low, high]``) with ``labels`` (``[n]``), by the module's binning.

    ``inputs`` (``[n, ...]``): the samples whose distinct rows are ``X``'s values; ``None``
    means every sample is its own ``x`` (``H(T|X) = 0``).
    """
    t = np.asarray(t, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if t.ndim != 2 or t.shape[0] != labels.shape[0] or t.shape[0] == 0:
        raise ValueError(f"t must be [n, units] with one label per row; got {t.shape} and {labels.shape}")
    codes = _row_codes(bin_values(t, n_bins, low, high))
    h_t = entropy_bits(codes)
    h_t_given_x = 0.0
    if inputs is not None:
        h_t_given_x = conditional_entropy_bits(codes, _row_codes(np.asarray(inputs).reshape(len(labels), -1)))
    return h_t - h_t_given_x, h_t - conditional_entropy_bits(codes, labels)


# ----------------------------------------------------------------------------- a run
def head_outputs(heads: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``[k, n, C]`` the softmax of each head's logits (``[k, C, D+1]`` heads, ``[n, D]``
    features with the bias column appended)."""
    from fedsim.models.heads import with_bias_column
    logits = with_bias_column(features.to(heads.dtype)) @ heads.transpose(-1, -2)
    return torch.softmax(logits, dim=-1)


def run_information_plane(run_dir, n_bins: int = N_BINS, plot: bool = True) -> list[dict]:
    """Estimate the information plane of a run's saved heads on its global test set.

    Rebuilds the run's world from ``config.yaml`` (the features come from the cache the
    run filled), reads ``heads/`` (:meth:`fedsim.results.RunDir.read_heads`) and writes
    ``infoplane.jsonl`` (one row per round and saved peer: ``round``, ``peer``,
    ``I_XT``, ``I_TY`` in bits, ``H_Y``) and, with ``plot``, ``plots/infoplane.png``.
    Returns the rows.
    """
    from fedsim import config as cfg
    from fedsim.results import RunDir, RunDirError, atomic_write
    from fedsim.topology import Schedule
    from fedsim.world import build_world

    run = RunDir(run_dir)
    if not (run.path / "config.yaml").is_file():
        raise RunDirError(f"{run.path}: not a run directory (no config.yaml)")
    saved = run.read_heads()
    if not saved:
        raise RunDirError(f"{run.path}: the run saved no heads (run it with output.save_heads: k)")
    s = cfg.from_dict(run.read_config(), str(run.path / "config.yaml"))
    schedule = Schedule(s.topology.kind, s.topology.n_peers, s.seed, s.topology.args, s.topology.resample_every)
    world = build_world(s, schedule, keep_images=False, source=str(run.path / "config.yaml"))
    features, labels = world.test_features, world.test_labels.numpy()
    h_y = entropy_bits(labels)
    x_values = _row_codes(features.numpy())   # X: the distinct test feature rows, found once
    rows = []
    for entry in saved:
        outputs = head_outputs(entry["heads"], features).numpy()
        for peer, t in zip(entry["peer_ids"], outputs):
            i_xt, i_ty = information_plane(t, labels, n_bins, inputs=x_values)
            rows.append({"round": entry["round"], "peer": int(peer), "I_XT": i_xt, "I_TY": i_ty, "H_Y": h_y})
    atomic_write(run.path / "infoplane.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    if plot:
        from fedsim.plots import infoplane_plot
        run.plots.mkdir(exist_ok=True)
        infoplane_plot(rows, run.plots / "infoplane.png", title=f"{s.name}: information plane of the heads "
                       f"({n_bins} bins, {len(labels)} test samples)")
    return rows


def summary_table(rows: list[dict]) -> str:
    """A plain-text table: per round, the mean and range of the saved peers' estimates."""
    lines = ["round  I(X;T) bits (min..max)   I(T;Y) bits (min..max)"]
    for r in sorted({row["round"] for row in rows}):
        xs = [row["I_XT"] for row in rows if row["round"] == r]
        ys = [row["I_TY"] for row in rows if row["round"] == r]
        lines.append(f"{r:5d}  {np.mean(xs):6.3f} ({min(xs):.3f}..{max(xs):.3f})   "
                     f"{np.mean(ys):6.3f} ({min(ys):.3f}..{max(ys):.3f})")
    return "\n".join(lines)
