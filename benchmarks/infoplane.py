"""The information plane of the exchanged heads (issue 15 item 4): runs
scenarios/studies/infoplane.yaml, then ``fedsim infoplane`` on every run, and writes the
table into docs/components.md.

    python benchmarks/infoplane.py [--jobs 2] [--sweep runs/sweeps/infoplane]
                                   [--out docs/components.md]

Each run saves 4 sampled honest peers' heads every round (``output.save_heads``);
:func:`fedsim.infoplane.run_information_plane` estimates ``I(X;T)`` and ``I(T;Y)`` of their
softmax outputs on the global test set (30 bins). Per cell and round: the mean over the
saved peers, then mean ± sample std over the seeds; the round where ``I(X;T)`` peaks (the
end of the fitting phase) and how much it falls by the last round (compression).
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
from bristle_reproduction import mean_std, short  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "scenarios" / "studies" / "infoplane.yaml"
BEGIN, END = "<!-- infoplane: written by benchmarks/infoplane.py -->", "<!-- end infoplane -->"
SECTION = "## The information plane"
FIGURE = ROOT / "docs" / "figures" / "infoplane_{dataset}.png"   # seed 0, no attack
SHOWN_ROUNDS = (1, 2, 3, 5, 10, 20, 30)


def run(sweep_dir: Path, jobs: int) -> list[dict]:
    """The sweep's results rows, each with ``infoplane``: its rows of infoplane.jsonl."""
    from fedsim import infoplane, study
    out = study.run_sweep(study.load(STUDY), out=sweep_dir, jobs=jobs, progress=False)
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        run_dir = out / row["run_dir"]
        done = run_dir / "infoplane.jsonl"
        if done.exists():
            row["infoplane"] = [json.loads(line) for line in done.read_text().splitlines()]
        else:
            row["infoplane"] = infoplane.run_information_plane(run_dir)
        row["figure"] = run_dir / "plots" / "infoplane.png"
    return rows


def attack_of(row: dict) -> str:
    return "none" if row["adversary"] in ("", "null") else short(row["adversary"])


def per_round(rows: list[dict], key: str) -> dict:
    """``{round: mean of key over the saved peers}`` of one run."""
    out: dict = {}
    for r in rows:
        out.setdefault(r["round"], []).append(r[key])
    return {k: statistics.fmean(v) for k, v in out.items()}


def _ms(values, digits=2) -> str:
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def document(rows: list[dict], command: str) -> str:
    cells: dict = {}
    for row in rows:
        cells.setdefault((row["data.dataset"], row["defense.name"], attack_of(row)), []).append(row)
    h_y = {dataset: runs[0]["infoplane"][0]["H_Y"] for (dataset, _, _), runs in cells.items()}
    lines = [f"Command: `{command}` ({len({r['seed'] for r in rows})} seeds; quickstart setting, "
             f"4 saved honest peers per run, 30 bins over [0, 1] per softmax unit). "
             "H(Y) (" + ", ".join(f"{d} {h:.3f}" for d, h in h_y.items()) + " bits) is the most I(T;Y) can "
             "be; I(X;T) is at most log2 of the number of test samples.", ""]
    header = "| dataset | defense | attack | | " + " | ".join(f"round {k}" for k in SHOWN_ROUNDS) + \
             " | peak round of I(X;T) | I(X;T) peak minus last | final accuracy (%) |"
    lines += [header, "|---|---|---|---|" + "---:|" * (len(SHOWN_ROUNDS) + 3)]
    for (dataset, defense, attack), runs in cells.items():
        xt = [per_round(r["infoplane"], "I_XT") for r in runs]
        ty = [per_round(r["infoplane"], "I_TY") for r in runs]
        last = max(xt[0])
        peaks = [max(x, key=x.get) for x in xt]
        drops = [max(x.values()) - x[last] for x in xt]
        acc = [100 * float(r["final_accuracy_mean"]) for r in runs]
        lines.append(f"| {dataset} | {defense} | {attack} | I(X;T) | " + " | ".join(_ms([x[k] for x in xt]) for k in SHOWN_ROUNDS)
                     + f" | {_ms(peaks, 1)} | {_ms(drops)} | {_ms(acc, 1)} |")
        lines.append("| | | | I(T;Y) | " + " | ".join(_ms([y[k] for y in ty], 3) for k in SHOWN_ROUNDS) + " | | | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "docs" / "components.md"))
    parser.add_argument("--sweep", default=str(ROOT / "runs" / "sweeps" / "infoplane"))
    args = parser.parse_args(argv)
    rows = run(Path(args.sweep), args.jobs)
    FIGURE.parent.mkdir(exist_ok=True)
    for dataset in ("digits", "fashion_mnist"):
        clean = next(r for r in rows if r["data.dataset"] == dataset and attack_of(r) == "none" and str(r["seed"]) == "0")
        shutil.copyfile(clean["figure"], FIGURE.parent / FIGURE.name.format(dataset=dataset))
    write_section(Path(args.out), BEGIN, END, document(rows, "python benchmarks/infoplane.py"), after=SECTION)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
