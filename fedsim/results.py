"""The run directory: config.yaml, metrics.jsonl, summary.json, plots/, checkpoints/."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import yaml


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
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)
        return self

    def write_config(self, config: dict) -> None:
        atomic_write(self.path / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())

    def read_config(self) -> dict:
        return yaml.safe_load((self.path / "config.yaml").read_text())

    def append_metrics(self, row: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_metrics(self) -> list[dict]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a kill: everything after it is redone
        return rows

    def rewrite_metrics(self, rows: list[dict]) -> None:
        atomic_write(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.path / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())

    def save_checkpoint(self, round_: int, state: dict) -> None:
        path = self.checkpoints / f"round_{round_:05d}.pt"
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        atomic_write(self.checkpoints / "latest", f"{path.name}\n".encode())
        for old in sorted(self.checkpoints.glob("round_*.pt"))[:-2]:
            old.unlink()  # keep the last two

    def latest_checkpoint(self):
        marker = self.checkpoints / "latest"
        if not marker.exists():
            return None
        path = self.checkpoints / marker.read_text().strip()
        return torch.load(path, weights_only=False) if path.exists() else None
