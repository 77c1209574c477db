"""A sweep's tables: ``results.csv`` (one row per run), ``table.csv`` (one row per cell)
and ``table.md`` (cells laid out as rows x columns), with mean, sample standard
deviation and a 95 % confidence interval over seeds.

Statistics over the ``n`` seeds of a cell: the mean, the *sample* standard deviation
(``ddof=1``; undefined for one seed) and the 95 % confidence interval of the mean,
``mean ± t(0.975, n-1) · std / sqrt(n)`` with Student's t quantile from
``scipy.stats.t`` (scipy is a dependency of scikit-learn, which fedsim requires).
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fedsim.runner import rounds_to_accuracy
from fedsim.study.spec import Sweep, render

# The last metrics row's values copied into results.csv as final_<key> (round and the
# per-row wall time are covered by the run's own columns).
FINAL_KEYS = ("accuracy_mean", "accuracy_min", "accuracy_max", "accuracy_std", "loss_mean",
              "consensus_distance", "messages_dropped", "messages_nonfinite", "attack_success_rate")
TIMING_COLUMNS = ("wall_time_s", "loop_time_s")


@dataclass(frozen=True)
class Metric:
    column: str        # a results.csv column
    title: str
    higher_is_better: bool
    digits: int


def table_metrics(target: float) -> list[Metric]:
    return [Metric("final_accuracy_mean", "Final accuracy (mean over honest peers)", True, 4),
            Metric("best_accuracy_mean", "Best accuracy over rounds", True, 4),
            Metric("rounds_to_accuracy", f"Rounds to accuracy >= {target:g}", False, 1)]


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def run_row(sweep: Sweep, cell, seed: int, run_dir: Path, relative: str) -> dict:
    """One results.csv row: the cell's swept values, the seed, and the run's figures."""
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = read_metrics(run_dir)
    final = summary.get("final") or {}
    row = {"cell": cell.index}
    row.update({key: render(value) for key, value in cell.settings.items()})
    row.update({"seed": seed, "run_dir": relative})
    row.update({f"final_{k}": final[k] for k in FINAL_KEYS if k in final})
    row["best_accuracy_mean"] = summary["best_accuracy_mean"]
    # the runner's count at output.target_accuracy, which the sweep sets to its target; run
    # directories written before summary.json had it are counted here the same way
    row["rounds_to_accuracy"] = summary["rounds_to_accuracy"] if "rounds_to_accuracy" in summary \
        else rounds_to_accuracy(metrics, sweep.target_accuracy)
    row["rounds_to_90pct_final"] = summary.get("rounds_to_90pct_final")
    row["n_byzantine"] = summary.get("n_byzantine")
    row["bytes_sent"] = summary["bytes_sent"]
    row.update({k: summary.get(k) for k in TIMING_COLUMNS})
    return row


def results_rows(sweep: Sweep, sweep_dir: Path, run_dirs: dict) -> list[dict]:
    """results.csv's rows, of the finished runs (those with a summary.json)."""
    return [run_row(sweep, cell, seed, sweep_dir / run_dirs[cell.index, seed], run_dirs[cell.index, seed])
            for cell, seed in sweep.runs() if (sweep_dir / run_dirs[cell.index, seed] / "summary.json").exists()]


def write_csv(rows: list[dict], path: Path) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})


def t_quantile_975(df: int) -> float:
    from scipy.stats import t
    return float(t.ppf(0.975, df))


def describe(values: list[float]) -> dict:
    """``n``, ``mean``, sample ``std`` (ddof=1) and the 95 % Student-t interval of the mean;
    std and the interval are None for fewer than two values."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95_low": None, "ci95_high": None}
    mean = sum(values) / n
    if n < 2:
        return {"n": 1, "mean": mean, "std": None, "ci95_low": None, "ci95_high": None}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half}


def cell_stats(sweep: Sweep, rows: list[dict]) -> list[dict]:
    """One table.csv row per cell: swept values, seeds, and per metric n, mean, std, CI."""
    out = []
    for cell in sweep.cells:
        mine = [r for r in rows if r["cell"] == cell.index]
        row = {"cell": cell.index, "label": cell.label}
        row.update({key: render(value) for key, value in cell.settings.items()})
        row["seeds"] = len(mine)
        for metric in table_metrics(sweep.target_accuracy):
            values = [float(r[metric.column]) for r in mine if r.get(metric.column) not in (None, "")]
            row.update({f"{metric.column}_{k}": v for k, v in describe(values).items()})
        out.append(row)
    return out


def default_layout(sweep: Sweep, rows: Optional[str], cols: Optional[str]) -> tuple:
    """``(row factor, column factor, other factors)`` as factor indices (None: absent)."""
    order = list(range(len(sweep.factors)))
    r = sweep.factor_of(rows) if rows is not None else None
    c = sweep.factor_of(cols) if cols is not None else None
    free = [i for i in order if i not in (r, c)]
    if r is None and free:
        r = free.pop(0)
    if c is None and free and cols is None:
        c = free.pop(0)
    return r, c, free


@dataclass
class Grid:
    """Where each cell goes in a rows x columns table."""
    row_title: str
    row_labels: list
    col_title: str
    col_labels: list
    position: dict       # cell index -> (row, col)


def grid(sweep: Sweep, rows: Optional[str] = None, cols: Optional[str] = None) -> Grid:
    r, c, others = default_layout(sweep, rows, cols)
    f = sweep.factors
    row_names = f[r].labels(rows) if r is not None else None
    col_names = f[c].labels(cols) if c is not None else None
    other_names = [[f"{f[o].keys[0]}={n}" for n in f[o].labels()] for o in others]
    row_keys, position = [], {}
    for cell in sweep.cells:
        parts = ([row_names[cell.levels[r]]] if r is not None else []) + \
                [other_names[k][cell.levels[o]] for k, o in enumerate(others)]
        label = " | ".join(parts) or "base"
        if label not in row_keys:
            row_keys.append(label)
        position[cell.index] = (row_keys.index(label), cell.levels[c] if c is not None else 0)
    row_title = " | ".join(([rows or f[r].keys[0]] if r is not None else [])
                           + [f[o].keys[0] for o in others]) or "scenario"
    return Grid(row_title, row_keys, (cols or f[c].keys[0]) if c is not None else "",
                col_names if c is not None else [""], position)


def _text(stats: dict, digits: int, seeds: int, bold: bool) -> str:
    if stats["mean"] is None:
        return "never" if seeds else "–"
    text = f"{stats['mean']:.{digits}f}"
    if stats["std"] is not None:
        text += f" ± {stats['std']:.{digits}f}"
    text = f"**{text}**" if bold else text
    if stats["ci95_low"] is not None:
        text += f" [{stats['ci95_low']:.{digits}f}, {stats['ci95_high']:.{digits}f}]"
    if stats["n"] < seeds:
        text += f" ({stats['n']}/{seeds} runs)"
    return text


def markdown(sweep: Sweep, stats: list[dict], layout: Grid) -> str:
    """One rows x columns table per metric; the best mean of each column in bold."""
    seeds = sweep.seeds
    parts = [f"# Sweep `{sweep.name}` (scenario `{sweep.base.get('name', 'scenario')}`)", "",
             f"Each entry: mean ± sample standard deviation (ddof=1) over {len(seeds)} seed"
             f"{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))}), then the 95 % confidence "
             "interval of the mean in brackets (Student t, n-1 degrees of freedom). "
             "Bold: the best mean of its column. `(k/n runs)`: only k of the n runs reached the target; "
             "`never`: none did.", ""]
    for metric in table_metrics(sweep.target_accuracy):
        key = metric.column
        cells = {layout.position[s["cell"]]: s for s in stats}
        best = {}
        for (i, j), s in cells.items():
            mean = s[f"{key}_mean"]
            if mean is not None:
                better = max if metric.higher_is_better else min
                best[j] = mean if j not in best else better(best[j], mean)
        header = [layout.row_title] + [f"{layout.col_title}={c}" if layout.col_title else metric.column
                                       for c in layout.col_labels]
        lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(layout.col_labels)]
        for i, label in enumerate(layout.row_labels):
            entries = []
            for j in range(len(layout.col_labels)):
                s = cells.get((i, j))
                if s is None:
                    entries.append("")
                    continue
                own = {k: s[f"{key}_{k}"] for k in ("n", "mean", "std", "ci95_low", "ci95_high")}
                bold = own["mean"] is not None and own["mean"] == best.get(j)
                entries.append(_text(own, metric.digits, s["seeds"], bold))
            lines.append(f"| {label} | " + " | ".join(entries) + " |")
        parts += [f"## {metric.title} (`{key}`)", ""] + lines + [""]
    return "\n".join(parts)


def write_tables(sweep: Sweep, sweep_dir: Path, run_dirs: dict, rows: Optional[str] = None,
                 cols: Optional[str] = None) -> list[Path]:
    """results.csv, table.csv and table.md in ``sweep_dir``; returns their paths."""
    sweep_dir = Path(sweep_dir)
    results = results_rows(sweep, sweep_dir, run_dirs)
    write_csv(results, sweep_dir / "results.csv")
    stats = cell_stats(sweep, results)
    write_csv(stats, sweep_dir / "table.csv")
    layout = grid(sweep, rows or sweep.rows, cols or sweep.cols)
    (sweep_dir / "table.md").write_text(markdown(sweep, stats, layout))
    return [sweep_dir / "results.csv", sweep_dir / "table.csv", sweep_dir / "table.md"]
