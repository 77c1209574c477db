"""The run directory: config.yaml, metrics.jsonl, summary.json, plots/, checkpoints/.

Everything read back from a run directory is treated as untrusted: checkpoints and
``privacy.pt`` are loaded with ``torch.load(weights_only=True)`` (tensors and plain
containers, never code) and checked for the expected structure; the ``latest`` marker
may only name a ``round_NNNNN.pt`` file inside ``checkpoints/``. A problem is a
:class:`RunDirError` naming the file (one ``error:`` line on the command line), except
where the run can go on without the file: a damaged latest checkpoint falls back to the
previous one, and a line of metrics.jsonl cut short by a kill is dropped and redone.
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from fedsim.config import ScenarioError, read_yaml

log = logging.getLogger("fedsim")

CHECKPOINT_NAME = re.compile(r"round_[0-9]{5,}\.pt")
KEEP_CHECKPOINTS = 2
_MARKER_MAX_BYTES = 64
_PRIVACY_MAX_ITEMS = 64  # a run keeps 8 victims' reconstructions of 8 pairs each


class RunDirError(ScenarioError):
    """A run directory (or a file in it) that cannot be used: one line naming the file."""


def default_dir(name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{name}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = Path(f"{base}-{k}")
    return path


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    """``value`` with numpy arrays as tensors and numpy scalars as Python numbers, so that
    ``torch.load(weights_only=True)`` can read it back."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0][:160]}" if text else exc.__class__.__name__


def _checkpoint_problem(state: Any) -> Optional[str]:
    """Why ``state`` is not a checkpoint this version wrote, or None."""
    if not isinstance(state, dict):
        return f"holds a {type(state).__name__}, not a checkpoint"
    missing = {"round", "peers", "totals", "wall_time_s", "scenario"} - set(state)
    if missing:
        return f"not a checkpoint (missing {', '.join(sorted(missing))})"
    if not isinstance(state["round"], int) or isinstance(state["round"], bool) or state["round"] < 1:
        return "not a checkpoint (round is not a positive integer)"
    if not isinstance(state["peers"], dict) or not isinstance(state["scenario"], dict):
        return "not a checkpoint (peers or scenario is not a mapping)"
    totals = state["totals"]
    if not isinstance(totals, dict) or any(not isinstance(totals.get(k), int)
                                           for k in ("bytes_sent", "messages_dropped", "messages_nonfinite")):
        return "not a checkpoint (totals)"
    if not isinstance(state["wall_time_s"], (int, float)) or not math.isfinite(state["wall_time_s"]):
        return "not a checkpoint (wall_time_s)"
    return None


class RunDir:
    def __init__(self, path):
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    def create(self) -> "RunDir":
        """Make the directory and its checkpoints/; any file-system problem is a
        :class:`RunDirError` naming the path and the reason."""
        for directory in (self.path, self.checkpoints):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                raise RunDirError(f"{directory}: cannot create the run directory: a file of that name "
                                  "exists") from None
            except NotADirectoryError:
                raise RunDirError(f"{directory}: cannot create the run directory: a part of the path is "
                                  "a file") from None
            except OSError as exc:
                raise RunDirError(f"{directory}: cannot create the run directory: "
                                  f"{exc.strerror or _reason(exc)}") from None
        if not os.access(self.path, os.W_OK | os.X_OK) or not os.access(self.checkpoints, os.W_OK | os.X_OK):
            raise RunDirError(f"{self.path}: cannot write into the run directory: permission denied")
        return self

    def write_config(self, config: dict) -> None:
        import yaml
        atomic_write(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())

    def read_config(self) -> dict:
        """The run's config.yaml as a mapping (a :class:`ScenarioError` naming the file if
        it is missing, not a file, not UTF-8, too large or not a YAML mapping)."""
        return read_yaml(self.path / "config.yaml")

    def append_metrics(self, row: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_metrics(self) -> list[dict]:
        """The rows of metrics.jsonl up to the first one that is not a complete JSON object
        with an integer ``round`` (a line cut short by a kill: it and anything after it
        are redone on resume)."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        try:
            lines = path.read_bytes().split(b"\n")
        except OSError as exc:
            raise RunDirError(f"{path}: cannot read metrics: {exc.strerror or _reason(exc)}") from None
        rows = []
        for line in lines:
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            if not isinstance(row, dict) or not isinstance(row.get("round"), int):
                break
            rows.append(row)
        return rows

    def rewrite_metrics(self, rows: list[dict]) -> None:
        atomic_write(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.path / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())

    # ------------------------------------------------------------- saved heads
    @property
    def heads_dir(self) -> Path:
        return self.path / "heads"

    def save_heads(self, round_: int, peer_ids: list, heads: torch.Tensor) -> None:
        """``heads/round_NNNNN.pt``: the heads ``[k, C, D+1]`` of peers ``peer_ids`` after
        round ``round_`` (``output.save_heads``; read by ``fedsim infoplane``)."""
        self.heads_dir.mkdir(exist_ok=True)
        buffer = io.BytesIO()
        torch.save({"round": int(round_), "peer_ids": [int(i) for i in peer_ids],
                    "heads": heads.detach().cpu().clone()}, buffer)
        atomic_write(self.heads_dir / f"round_{round_:05d}.pt", buffer.getvalue())

    def read_heads(self) -> list[dict]:
        """The saved heads by round (``weights_only=True``), each checked: ``round`` int,
        ``peer_ids`` a list of ints, ``heads`` a float tensor ``[len(peer_ids), C, P]``.
        Anything else is a :class:`RunDirError` naming the file."""
        saved = []
        for path in sorted(self.heads_dir.glob("round_*.pt")):
            if not CHECKPOINT_NAME.fullmatch(path.name):
                continue
            try:
                entry = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # truncated, garbage, or holds code: never unpickled
                raise RunDirError(f"{path}: cannot read the saved heads ({_reason(exc)})") from None
            ok = (isinstance(entry, dict) and isinstance(entry.get("round"), int)
                  and isinstance(entry.get("peer_ids"), list) and all(isinstance(i, int) for i in entry["peer_ids"])
                  and isinstance(entry.get("heads"), torch.Tensor) and entry["heads"].is_floating_point()
                  and entry["heads"].dim() == 3 and entry["heads"].shape[0] == len(entry["peer_ids"]))
            if not ok:
                raise RunDirError(f"{path}: not saved heads (expected round, peer_ids and heads [k, C, D+1])")
            saved.append(entry)
        return saved

    # ------------------------------------------------------------- checkpoints
    def save_checkpoint(self, round_: int, state: dict) -> None:
        """Write ``round_NNNNN.pt`` atomically, point ``latest`` at it, keep the last two."""
        path = self.checkpoints / f"round_{round_:05d}.pt"
        if path.is_dir() and not path.is_symlink():  # damage in our own directory, skipped on resume
            shutil.rmtree(path)
        buffer = io.BytesIO()
        torch.save(_plain(state), buffer)
        atomic_write(path, buffer.getvalue())
        atomic_write(self.checkpoints / "latest", f"{path.name}\n".encode())
        for old in sorted(self.checkpoints.glob("round_*.pt"))[:-KEEP_CHECKPOINTS]:
            old.unlink()

    def _marker_target(self) -> Optional[Path]:
        """The checkpoint the ``latest`` marker names, or None without a marker."""
        marker = self.checkpoints / "latest"
        try:
            mode = marker.lstat().st_mode
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RunDirError(f"{marker}: cannot read the checkpoint marker: {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            raise RunDirError(f"{marker}: the checkpoint marker is not a regular file")
        try:
            with open(marker, "rb") as fh:
                name = fh.read(_MARKER_MAX_BYTES + 1).decode("ascii").strip()
        except (OSError, UnicodeDecodeError):
            name = None
        if not name or not CHECKPOINT_NAME.fullmatch(name):
            raise RunDirError(f"{marker}: the checkpoint marker must name a round_NNNNN.pt file in "
                              f"{self.checkpoints}")
        return self.checkpoints / name

    def _load_checkpoint(self, path: Path) -> dict:
        """One checkpoint file, checked; raises ValueError saying why it cannot be used."""
        try:
            mode = path.lstat().st_mode
        except OSError as exc:
            raise ValueError(exc.strerror or _reason(exc)) from None
        if not stat.S_ISREG(mode):
            raise ValueError("not a regular file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, empty, garbage, or holds code: never unpickled
            raise ValueError(f"cannot be read ({_reason(exc)})") from None
        problem = _checkpoint_problem(state)
        if problem:
            raise ValueError(problem)
        return state

    def latest_checkpoint(self) -> Optional[dict]:
        """The newest checkpoint that loads, or None when the run has none yet.

        Tried in order: the file the ``latest`` marker names, then the other
        ``round_*.pt`` files, newest first (a damaged latest one falls back to the
        previous with a warning). None loads: a :class:`RunDirError` naming the file.
        """
        named = self._marker_target()
        others = sorted((p for p in self.checkpoints.glob("round_*.pt")
                         if CHECKPOINT_NAME.fullmatch(p.name) and p != named), reverse=True)
        candidates = ([named] if named is not None else []) + others
        failures = []
        for path in candidates:
            try:
                state = self._load_checkpoint(path)
            except ValueError as exc:
                failures.append((path, str(exc)))
                continue
            for bad, why in failures:
                log.warning("warning: %s: %s; resuming from %s instead", bad, why, path.name)
            return state
        if failures:
            bad, why = failures[0]
            more = f" (and {len(failures) - 1} earlier checkpoint(s) fail too)" if len(failures) > 1 else ""
            raise RunDirError(f"{bad}: cannot resume: the checkpoint {why}{more}")
        return None


def read_privacy_record(path) -> list[dict]:
    """The reconstructions kept in a run's ``privacy.pt`` (``weights_only=True``), checked:
    a list of ``{"true", "rebuilt"}`` image tensors with ``pairs``, ``victim`` and ``round``.
    Anything else is a :class:`RunDirError` naming the file."""
    path = Path(path)
    try:
        kept = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, garbage, or holds code: never unpickled
        raise RunDirError(f"{path}: cannot read the privacy record ({_reason(exc)})") from None
    ok = isinstance(kept, list) and len(kept) <= _PRIVACY_MAX_ITEMS and all(
        isinstance(k, dict) and isinstance(k.get("true"), torch.Tensor) and isinstance(k.get("rebuilt"), torch.Tensor)
        and k["true"].dim() >= 3 and k["rebuilt"].dim() >= 3 and isinstance(k.get("pairs"), list)
        and len(k["pairs"]) <= _PRIVACY_MAX_ITEMS
        and all(isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(i, int) and i >= 0 for i in p)
                for p in k["pairs"])
        and isinstance(k.get("victim"), int) and isinstance(k.get("round"), int)
        for k in kept)
    if not ok:
        raise RunDirError(f"{path}: not a privacy record (expected a list of reconstructions)")
    return kept
