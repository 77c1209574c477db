"""The sweep file: a base scenario, the keys it varies, the seeds; and its cells.

A sweep file is YAML::

    name: defenses_vs_attacks        # optional; default: the file's stem
    base: ../quickstart.yaml         # a scenario path (relative to this file) or an inline mapping
    axes:                            # every combination of these values (a product)
      adversary.fraction: [0.1, 0.2]
      adversary.attack.name: [gaussian, alie]
    zip:                             # keys varied together: one group, or a list of groups
      defense.name: [mean, trimmed_mean]
      defense.args: [{}, {f: 2}]
    seeds: 3                         # or [0, 1, 2]; default: the base scenario's seed
    target_accuracy: 0.9             # rounds_to_accuracy's target, set as every run's output.target_accuracy
                                     # (default: the base's output.target_accuracy)
    rows: defense.name               # default table layout (--rows / --cols override)
    cols: adversary.attack.name

Keys are dotted scenario paths (``fedsim init --full`` lists them all); a key may name a
whole section (``defense: [{name: mean}, {name: krum, args: {f: 2}}]``). Each axis and
each zip group is a *factor*; the cells are the product of the factors' levels, in file
order (axes first, then zip groups), and every cell runs once per seed.
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel

from fedsim import config as cfg

SWEEP_KEYS = ("name", "base", "axes", "zip", "seeds", "target_accuracy", "rows", "cols")
# Keys a sweep may not vary: the seed has its own entry, the run directory is the sweep's.
RESERVED_KEYS = {"seed": "use the sweep's `seeds:` entry", "output.dir": "each run's directory is set by the sweep",
                 "output.target_accuracy": "use the sweep's `target_accuracy:` entry"}


def render(value: Any) -> str:
    """A short text for a swept value: scalars as YAML writes them, a ``{name, args}``
    mapping as ``name(k=v, ...)``, other mappings and lists as compact JSON."""
    if isinstance(value, dict) and set(value) <= {"name", "args"} and "name" in value:
        args = value.get("args") or {}
        inner = ", ".join(f"{k}={render(v)}" for k, v in args.items())
        return f"{value['name']}({inner})" if inner else str(value["name"])
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Factor:
    """Keys varied together (one key for an axis); ``levels[i][j]`` is key ``j``'s value at level ``i``."""

    keys: tuple
    levels: tuple

    def labels(self, key: Optional[str] = None) -> list[str]:
        """One label per level: ``key``'s value (default: the first key's); a value shared
        by several levels gets the other keys' values in brackets: ``gaussian (fraction=0.0)``."""
        j = self.keys.index(key) if key is not None else 0
        mine = [render(level[j]) for level in self.levels]
        out = []
        for level, label in zip(self.levels, mine):
            if mine.count(label) > 1 and len(self.keys) > 1:
                rest = ", ".join(f"{k.rsplit('.', 1)[-1]}={render(v)}" for i, (k, v) in enumerate(zip(self.keys, level))
                                 if i != j)
                label = f"{label} ({rest})"
            out.append(label)
        return out


@dataclass(frozen=True)
class Cell:
    index: int
    levels: tuple          # one level index per factor
    settings: dict         # dotted key -> value
    label: str             # "defense.name=krum, adversary.fraction=0.2"

    def run_name(self, seed: int) -> str:
        """The run directory's name: readable values, a hash of the settings (names stay
        unique and short whatever the values), the seed."""
        text = "_".join(render(v) for v in self.settings.values()) or "base"
        slug = re.sub(r"[^A-Za-z0-9.=+-]+", "-", text).strip("-")[:80] or "cell"
        digest = hashlib.sha1(json.dumps(self.settings, sort_keys=True, default=str).encode()).hexdigest()[:6]
        return f"{slug}-{digest}-s{seed}"


@dataclass
class Sweep:
    path: Path             # the sweep file ("<inline>" for a dict)
    name: str
    base: dict             # the base scenario with --set applied
    factors: list
    seeds: list
    target_accuracy: float = 0.9
    rows: Optional[str] = None
    cols: Optional[str] = None
    cells: list = field(default_factory=list)

    @property
    def swept_keys(self) -> list[str]:
        return [k for f in self.factors for k in f.keys]

    def factor_of(self, key: str) -> int:
        return next(i for i, f in enumerate(self.factors) if key in f.keys)

    def scenario(self, cell: Cell, seed: int) -> dict:
        """The base with the cell's settings, the seed and the sweep's target accuracy."""
        data = copy.deepcopy(self.base)
        for key, value in cell.settings.items():
            set_key(data, key, copy.deepcopy(value))
        data["seed"] = seed
        set_key(data, "output.target_accuracy", self.target_accuracy)
        return data

    def runs(self):
        """``(cell, seed)`` for every run, cell-major."""
        return [(cell, seed) for cell in self.cells for seed in self.seeds]


def set_key(data: dict, dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def _model_of(annotation):
    """The pydantic model inside ``annotation`` (``Model`` or ``Optional[Model]``), else None."""
    for arg in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def check_key(dotted: str) -> Optional[str]:
    """None if ``dotted`` names a scenario key (or a key inside a free-form ``args``
    mapping), else what is wrong with it."""
    model = cfg.Scenario
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            prefix = ".".join(parts[:i])
            close = difflib.get_close_matches(part, list(fields), n=1)
            hint = f" (did you mean {'.'.join(parts[:i] + close)}?)" if close else ""
            return f"unknown scenario key{hint}; allowed{' under ' + prefix if prefix else ''}: {', '.join(fields)}"
        annotation = fields[part].annotation
        inner = _model_of(annotation)
        if inner is not None:
            model = inner
            continue
        if i < len(parts) - 1 and getattr(annotation, "__origin__", annotation) is not dict:
            return f"{'.'.join(parts[:i + 1])} is a value, not a mapping"
        return None  # a value, or a free-form mapping (args) whose keys the plug-in checks
    return None


class _Errors:
    def __init__(self, source: str):
        self.source = source

    def __call__(self, key: str, message: str) -> cfg.ScenarioError:
        return cfg.ScenarioError(f"{self.source}: {key}: {message}")


def _factors(raw: dict, err: _Errors) -> list[Factor]:
    factors, seen = [], {}
    axes = raw.get("axes") or {}
    if not isinstance(axes, dict):
        raise err("axes", "must be a mapping of scenario key -> list of values")
    groups = raw.get("zip") or []
    if isinstance(groups, dict):
        groups = [groups]
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise err("zip", "must be a mapping of scenario key -> list of values, or a list of such mappings")
    named = [(f"axes.{k}", {k: v}) for k, v in axes.items()]
    named += [(f"zip[{i}]" if len(groups) > 1 else "zip", g) for i, g in enumerate(groups)]
    for where, group in named:
        if not group:
            raise err(where, "an empty zip group; give at least one key")
        lengths = set()
        for key, values in group.items():
            place = where if where.startswith("axes.") else f"{where}.{key}"
            key = str(key)
            if key in RESERVED_KEYS:
                raise err(place, f"cannot be swept: {RESERVED_KEYS[key]}")
            problem = check_key(key)
            if problem:
                raise err(place, problem)
            if key in seen:
                raise err(place, f"{key} is already varied by {seen[key]}")
            seen[key] = place
            if not isinstance(values, list) or not values:
                raise err(place, f"must be a non-empty list of values (got {values!r})")
            lengths.add(len(values))
        if len(lengths) > 1:
            raise err(where, f"the keys of a zip group need lists of one length (got lengths {sorted(lengths)})")
        keys = tuple(str(k) for k in group)
        levels = tuple(zip(*group.values()))
        factors.append(Factor(keys, levels))
    return factors


def _seeds(raw: dict, base: dict, err: _Errors) -> list[int]:
    if "seeds" not in raw:
        return [int(base.get("seed", 0))]
    seeds = raw["seeds"]
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise err("seeds", f"a count of seeds must be >= 1 (got {seeds})")
        return list(range(seeds))
    if (isinstance(seeds, list) and seeds
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        if len(set(seeds)) != len(seeds):
            raise err("seeds", f"seeds must differ (got {seeds})")
        return list(seeds)
    raise err("seeds", f"must be a count (an int >= 1) or a non-empty list of ints >= 0 (got {seeds!r})")


def _base(raw: dict, path: Path, err: _Errors) -> dict:
    base = raw.get("base")
    if base is None:
        raise err("base", "missing: give a scenario path (relative to the sweep file) or a mapping")
    if isinstance(base, dict):
        return copy.deepcopy(base)
    if isinstance(base, str):
        base_path = Path(base) if Path(base).is_absolute() else path.parent / base
        try:
            return cfg.read_yaml(base_path)
        except cfg.ScenarioError as exc:
            raise err("base", str(exc)) from None
    raise err("base", f"must be a scenario path or a mapping (got {type(base).__name__})")


def check_layout(sweep: Sweep, rows: Optional[str], cols: Optional[str], source: str,
                 flags: tuple = ("rows", "cols")) -> None:
    """``rows`` and ``cols`` (the table layout) must name swept keys of two different factors."""
    swept = sweep.swept_keys
    for flag, key in zip(flags, (rows, cols)):
        if key is not None and key not in swept:
            allowed = ", ".join(swept) or "none (the sweep varies no key)"
            raise cfg.ScenarioError(f"{source}: {flag}: {key!r} is not a swept key; swept keys: {allowed}")
    if rows is not None and cols is not None and sweep.factor_of(rows) == sweep.factor_of(cols):
        raise cfg.ScenarioError(f"{source}: {flags[0]} and {flags[1]}: {rows} and {cols} vary together "
                                "(one zip group); pick keys of two different factors")


def load(path, overrides=None, data: Optional[dict] = None) -> Sweep:
    """Read and check a sweep file (or ``data``, an inline sweep), validate every cell with
    :func:`fedsim.config.from_dict`, and return the :class:`Sweep`. Every problem is a
    :class:`~fedsim.config.ScenarioError` naming the file, the cell and the key."""
    path = Path(path)
    raw = cfg.read_yaml(path) if data is None else copy.deepcopy(data)
    err = _Errors(str(path))
    unknown = [k for k in raw if k not in SWEEP_KEYS]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), SWEEP_KEYS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise err(str(unknown[0]), f"unknown sweep key{hint}; allowed: {', '.join(SWEEP_KEYS)}")
    base = _base(raw, path, err)
    base = cfg.apply_overrides(base, overrides)
    factors = _factors(raw, err)
    target = raw.get("target_accuracy", (base.get("output") or {}).get("target_accuracy", 0.9))
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise err("target_accuracy", f"must be a number in (0, 1] (got {target!r})")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._+-]+", name):
        raise err("name", f"must be a name of letters, digits and ._+- (got {name!r})")
    sweep = Sweep(path=path, name=name, base=base, factors=factors, seeds=_seeds(raw, base, err),
                  target_accuracy=float(target), rows=raw.get("rows"), cols=raw.get("cols"))
    check_layout(sweep, sweep.rows, sweep.cols, str(path))
    for index, levels in enumerate(itertools.product(*(range(len(f.levels)) for f in factors))):
        settings = {k: v for f, lv in zip(factors, levels) for k, v in zip(f.keys, f.levels[lv])}
        label = ", ".join(f"{k}={render(v)}" for k, v in settings.items()) or "base"
        sweep.cells.append(Cell(index, tuple(levels), settings, label))
    for cell, seed in sweep.runs():
        seed_text = f", seed {seed}" if len(sweep.seeds) > 1 else ""
        cfg.from_dict(sweep.scenario(cell, seed), f"{path}: cell {cell.index} [{cell.label}{seed_text}]")
    return sweep


# ---------------------------------------------------------------------------
# the plan on disk: SWEEP_DIR/sweep.json, what `fedsim plot SWEEP_DIR` and the tables read

PLAN_FILE = "sweep.json"


def plan_dict(sweep: Sweep, run_dirs: dict) -> dict:
    """What the sweep directory records of its sweep; ``run_dirs[(cell index, seed)]`` is a
    run directory relative to the sweep directory."""
    return {
        "name": sweep.name, "sweep_file": str(sweep.path), "scenario": sweep.base.get("name", "scenario"),
        "target_accuracy": sweep.target_accuracy, "seeds": sweep.seeds, "rows": sweep.rows, "cols": sweep.cols,
        "factors": [{"keys": list(f.keys), "levels": [list(level) for level in f.levels]} for f in sweep.factors],
        "cells": [{"index": c.index, "levels": list(c.levels), "settings": c.settings, "label": c.label,
                   "runs": {str(seed): run_dirs[c.index, seed] for seed in sweep.seeds}} for c in sweep.cells],
    }


def from_plan(plan: dict) -> tuple[Sweep, dict]:
    """The :class:`Sweep` (without its base) and the run directories of a ``sweep.json``."""
    factors = [Factor(tuple(f["keys"]), tuple(tuple(level) for level in f["levels"])) for f in plan["factors"]]
    sweep = Sweep(path=Path(plan["sweep_file"]), name=plan["name"], base={"name": plan["scenario"]},
                  factors=factors, seeds=list(plan["seeds"]), target_accuracy=plan["target_accuracy"],
                  rows=plan.get("rows"), cols=plan.get("cols"))
    run_dirs = {}
    for c in plan["cells"]:
        sweep.cells.append(Cell(c["index"], tuple(c["levels"]), c["settings"], c["label"]))
        run_dirs.update({(c["index"], int(seed)): path for seed, path in c["runs"].items()})
    return sweep, run_dirs


def read_plan(sweep_dir) -> tuple[Sweep, dict]:
    return from_plan(json.loads((Path(sweep_dir) / PLAN_FILE).read_text()))
