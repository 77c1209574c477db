"""A sweep's figures (in ``SWEEP_DIR/figures``, PNG and PDF): the heatmap of final
accuracy (the table's layout), every cell's accuracy over rounds, and, where
``adversary.fraction`` is swept, final accuracy against the attacker fraction.
``compare`` draws several run directories' curves in one figure."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fedsim import plots, tables
from fedsim.study.spec import Sweep, render


def caption(sweep: Sweep) -> str:
    seeds = len(sweep.seeds)
    return (f"Sweep {sweep.name} ({sweep.path.name}) of scenario {sweep.base.get('name', 'scenario')}: "
            f"{len(sweep.cells)} cells x {seeds} seed{'s' if seeds != 1 else ''} "
            f"({', '.join(map(str, sweep.seeds))}); accuracy of each honest peer's head on the global test set, "
            "averaged over honest peers, then over seeds.")


def _short(cell) -> str:
    return ", ".join(render(v) for v in cell.settings.values()) or "base"


def seed_curves(sweep: Sweep, sweep_dir: Path, run_dirs: dict, cell):
    """``(rounds, [seeds x rounds] accuracy_mean)`` of a cell's finished runs, or None."""
    runs = [sweep_dir / run_dirs[cell.index, seed] for seed in sweep.seeds]
    curves = [tables.read_metrics(run) for run in runs if (run / "summary.json").exists()]
    if not curves:
        return None
    return [r["round"] for r in curves[0]], np.array([[r["accuracy_mean"] for r in c] for c in curves])


def draw_figures(sweep: Sweep, sweep_dir: Path, run_dirs: dict, rows=None, cols=None) -> list[Path]:
    results = tables.results_rows(sweep, sweep_dir, run_dirs)
    stats = {s["cell"]: s for s in tables.cell_stats(sweep, results)}
    layout = tables.grid(sweep, rows or sweep.rows, cols or sweep.cols)
    out = sweep_dir / "figures"
    out.mkdir(exist_ok=True)
    text = caption(sweep)
    written = []

    n_rows, n_cols = len(layout.row_labels), len(layout.col_labels)
    values = [[np.nan] * n_cols for _ in range(n_rows)]
    texts = [[""] * n_cols for _ in range(n_rows)]
    for cell in sweep.cells:
        i, j = layout.position[cell.index]
        s = stats[cell.index]
        if s["final_accuracy_mean_mean"] is not None:
            values[i][j] = s["final_accuracy_mean_mean"]
            texts[i][j] = f"{s['final_accuracy_mean_mean']:.3f}" + \
                (f"\n±{s['final_accuracy_mean_std']:.3f}" if s["final_accuracy_mean_std"] is not None else "")
    written += plots.heatmap(values, texts, layout.row_labels, layout.col_labels or [""], layout.row_title,
                             layout.col_title, out / "heatmap",
                             "Final accuracy (mean ± std over seeds)", text)

    series = []
    for cell in sweep.cells:
        found = seed_curves(sweep, sweep_dir, run_dirs, cell)
        if found is not None:
            rounds, acc = found
            spread = acc.std(axis=0, ddof=1) if acc.shape[0] > 1 else np.zeros(acc.shape[1])
            series.append((_short(cell), rounds, acc.mean(axis=0), spread))
    written += plots.curves(series, out / "curves", "Accuracy over rounds", text,
                            band="± 1 sample std over seeds" if len(sweep.seeds) > 1 else "",
                            legend_title=", ".join(sweep.swept_keys))

    if "adversary.fraction" in sweep.swept_keys:
        written += _fraction_figure(sweep, stats, out, text)
    return written


def _fraction_figure(sweep: Sweep, stats: dict, out: Path, text: str) -> list[Path]:
    k = sweep.factor_of("adversary.fraction")
    position = sweep.factors[k].keys.index("adversary.fraction")
    groups: dict = {}
    for cell in sweep.cells:
        others = tuple(level for f, level in enumerate(cell.levels) if f != k)
        groups.setdefault(others, []).append(cell)
    series = []
    for cells in groups.values():
        label = ", ".join(render(v) for key, v in cells[0].settings.items()
                          if key not in sweep.factors[k].keys) or "base"
        cells = sorted(cells, key=lambda c: sweep.factors[k].levels[c.levels[k]][position])
        s = [stats[c.index] for c in cells]
        nan = float("nan")
        series.append((label, [sweep.factors[k].levels[c.levels[k]][position] for c in cells],
                       [x["final_accuracy_mean_mean"] if x["final_accuracy_mean_mean"] is not None else nan for x in s],
                       [x["final_accuracy_mean_ci95_low"] if x["final_accuracy_mean_ci95_low"] is not None else nan
                        for x in s],
                       [x["final_accuracy_mean_ci95_high"] if x["final_accuracy_mean_ci95_high"] is not None else nan
                        for x in s]))
    others = [key for key in sweep.swept_keys if key not in sweep.factors[k].keys]
    return plots.fraction_plot(series, out / "accuracy_vs_fraction",
                               "Final accuracy against the attacker fraction (band: 95 % CI over seeds)", text,
                               legend_title=", ".join(others))


def compare(run_dirs: list[Path], labels: list[str], out: Path) -> list[Path]:
    """Several runs' mean accuracy over rounds (over honest peers) in one figure; ``out``
    without suffix, or with .png/.pdf: both are written."""
    import json
    lines, names = [], []
    for run_dir, label in zip(run_dirs, labels):
        rows = tables.read_metrics(run_dir)
        lines.append((label, [r["round"] for r in rows], [r["accuracy_mean"] for r in rows], np.zeros(len(rows))))
        summary = run_dir / "summary.json"
        names.append(json.loads(summary.read_text()).get("name", run_dir.name) if summary.exists() else run_dir.name)
    text = (f"Scenario{'s' if len(set(names)) > 1 else ''} {', '.join(dict.fromkeys(names))}: "
            f"mean accuracy over honest peers; runs {', '.join(str(d) for d in run_dirs)}")
    stem = out.with_suffix("") if out.suffix in (".png", ".pdf") else out
    return plots.curves(lines, stem, "Accuracy over rounds", text, band="")
