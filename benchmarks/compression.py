"""Accuracy against bytes on the wire for the update compressors (issue 15 item 5):
runs scenarios/studies/compression.yaml and writes its table into docs/components.md.

    python benchmarks/compression.py [--jobs 2] [--sweep runs/sweeps/compression]
                                     [--out docs/components.md]

Uniform top-k (``topk``), uniform QSGD quantization (``quantize``) and the layer-adaptive
mixed-precision quantizer (``adaptive_quantize``) on the quickstart setting, 3 seeds, with
dense float32 (``none``) as the reference. Every number is computed from the runs
(``fedsim.study.run_sweep``; finished runs are not run again): bytes per message (the
rule's ``bytes_per_message``, as counted in ``bytes_sent``), final accuracy (mean ± sample
std over seeds), rounds to 90 % accuracy and the bytes one peer sent until then, and the
comparison with Bristle's "90 % less communication".
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: one thread per run process

import argparse
import csv
import json
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402
from bristle_reproduction import communication, mean_std  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "scenarios" / "studies" / "compression.yaml"
BEGIN, END = "<!-- compression: written by benchmarks/compression.py -->", "<!-- end compression -->"
FIGURE = ROOT / "docs" / "figures" / "compression_curve.png"   # the PNG; the PDF stays in the sweep directory
SECTION = "## Layer-adaptive sparsity and mixed-precision quantization of the update"
WITHIN = 0.01   # "no loss": final accuracy within one point of dense float32


def run(sweep_dir: Path, jobs: int) -> tuple[list[dict], dict]:
    from fedsim import study
    spec = study.load(STUDY)
    out = study.run_sweep(spec, out=sweep_dir, jobs=jobs, progress=False)
    with open(out / "results.csv") as fh:
        return list(csv.DictReader(fh)), spec.base


def summarise(rows: list[dict], base: dict) -> list[dict]:
    """One entry per cell: rule, args, bytes per message, accuracies and rounds per seed."""
    messages = base["topology"]["n_peers"] * base["topology"]["args"]["degree"] * base["rounds"]
    degree = base["topology"]["args"]["degree"]
    cells: dict = {}
    for row in rows:
        cells.setdefault((row["privacy.defense.name"], row["privacy.defense.args"]), []).append(row)
    out = []
    for (name, args), runs in cells.items():
        per_message = {int(r["bytes_sent"]) // messages for r in runs}
        assert len(per_message) == 1 and all(int(r["bytes_sent"]) % messages == 0 for r in runs)
        per_message = per_message.pop()
        reached = [int(r["rounds_to_accuracy"]) if r["rounds_to_accuracy"] else None for r in runs]
        out.append({"name": name, "args": json.loads(args), "bytes": per_message,
                    "accuracy": [float(r["final_accuracy_mean"]) for r in runs], "seeds": [r["seed"] for r in runs],
                    "rounds": reached,
                    "bytes_to_target": [None if k is None else k * degree * per_message for k in reached]})
    return out


def _ms(values, scale=1.0, digits=1) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "never"
    m, s = mean_std(got)
    text = f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"
    return text + (f" ({len(values) - len(got)}/{len(values)} never)" if len(got) < len(values) else "")


def _args(args: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in args.items()) or "-"


def document(cells: list[dict], base: dict, command: str) -> str:
    dense = next(c for c in cells if c["name"] == "none")
    dense_acc = statistics.fmean(dense["accuracy"])
    comm = communication()
    lines = [f"Command: `{command}` ({len(dense['accuracy'])} seeds; the quickstart setting, "
             f"{base['rounds']} rounds, plain averaging). Bytes per message as counted in `bytes_sent`; "
             f"'to 90 %': the first round with mean accuracy >= 0.9 and the bytes one peer sent until then "
             f"({base['topology']['args']['degree']} messages a round).", "",
             "| rule | args | bytes / message | less than dense | final accuracy (%) | minus dense, same seed "
             "(points) | rounds to 90 % | kB per peer to 90 % |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    dense_by_seed = dict(zip(dense["seeds"], dense["accuracy"]))
    for c in sorted(cells, key=lambda c: (c["name"] != "none", c["name"], -c["bytes"])):
        paired = [a - dense_by_seed[seed] for seed, a in zip(c["seeds"], c["accuracy"])]
        lines.append(f"| {c['name']} | {_args(c['args'])} | {c['bytes']:,} | {100 * (1 - c['bytes'] / dense['bytes']):.1f} % "
                     f"| {_ms(c['accuracy'], 100)} | {_ms(paired, 100, 2)} | {_ms(c['rounds'])} "
                     f"| {_ms(c['bytes_to_target'], 1e-3, 2)} |")
    lossless = [c for c in cells if statistics.fmean(c["accuracy"]) >= dense_acc - WITHIN and c["name"] != "none"]
    lines += ["", f"Within one point of dense float32 ({100 * dense_acc:.1f} %), the smallest message of each rule:"]
    for name in ("topk", "quantize", "adaptive_quantize"):
        mine = [c for c in lossless if c["name"] == name]
        if mine:
            best = min(mine, key=lambda c: c["bytes"])
            lines.append(f"- `{name}` ({_args(best['args'])}): {best['bytes']:,} bytes, "
                         f"{100 * (1 - best['bytes'] / dense['bytes']):.1f} % less than the dense head, "
                         f"{100 * (1 - best['bytes'] / comm['model']):.2f} % less than the whole model "
                         f"({comm['model']:,} bytes), accuracy {_ms(best['accuracy'], 100)} %.")
        else:
            lines.append(f"- `{name}`: no setting of this sweep stays within one point.")
    smallest = min(cells, key=lambda c: c["bytes"])
    lines += [f"- The smallest message of the sweep: `{smallest['name']}` ({_args(smallest['args'])}), "
              f"{smallest['bytes']:,} bytes ({100 * (1 - smallest['bytes'] / dense['bytes']):.1f} % less than "
              f"the dense head), accuracy {_ms(smallest['accuracy'], 100)} %.",
              f"- Bristle's 90 % less communication is the head against the whole model "
              f"({comm['head']:,} against {comm['model']:,} bytes, "
              f"{100 * (1 - comm['head'] / comm['model']):.1f} % less; docs/bristle_reproduction.md)."]
    return "\n".join(lines) + "\n"


def figure(cells: list[dict], base: dict, sweep_dir: Path) -> None:
    """Final accuracy minus dense (same seed, points) against bytes per message, a line per
    rule, the dense head as a single point; drawn into the sweep's figures/, the PNG copied
    to docs/figures."""
    from fedsim.plots import tradeoff_plot
    dense = next(c for c in cells if c["name"] == "none")
    by_seed = dict(zip(dense["seeds"], dense["accuracy"]))
    series = []
    for name in ("none", "topk", "quantize", "adaptive_quantize"):
        mine = sorted((c for c in cells if c["name"] == name), key=lambda c: c["bytes"])
        paired = [[100 * (a - by_seed[s]) for s, a in zip(c["seeds"], c["accuracy"])] for c in mine]
        series.append((name if name != "none" else "dense float32", [c["bytes"] for c in mine],
                       [statistics.fmean(p) for p in paired], [mean_std(p)[1] for p in paired]))
    stem = sweep_dir / "figures" / FIGURE.stem
    stem.parent.mkdir(exist_ok=True)
    tradeoff_plot(series, stem, "Accuracy against communication (quickstart setting)",
                  f"scenarios/studies/compression.yaml, {len(dense['seeds'])} seeds, {base['rounds']} rounds; "
                  "points: mean of the same-seed difference to dense float32, bars: ± 1 std over seeds; "
                  "python benchmarks/compression.py",
                  "bytes per message (log scale)", "final accuracy minus dense (points)")
    FIGURE.parent.mkdir(exist_ok=True)
    shutil.copyfile(stem.with_suffix(".png"), FIGURE)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "docs" / "components.md"))
    parser.add_argument("--sweep", default=str(ROOT / "runs" / "sweeps" / "compression"))
    args = parser.parse_args(argv)
    rows, base = run(Path(args.sweep), args.jobs)
    cells = summarise(rows, base)
    figure(cells, base, Path(args.sweep))
    write_section(Path(args.out), BEGIN, END, document(cells, base, "python benchmarks/compression.py"),
                  after=SECTION)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
