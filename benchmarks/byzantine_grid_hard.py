"""The Byzantine grid that separates defenses: runs its study and writes docs/byzantine_grid.md.

    python benchmarks/byzantine_grid_hard.py [--jobs 2] [--out docs/byzantine_grid.md]
                                             [--sweep runs/sweeps/byzantine_grid_hard]

Runs ``scenarios/studies/byzantine_grid_hard.yaml`` (3 seeds) with
``fedsim.study.run_sweep`` (finished runs are not run again), then writes its section of
the document (between two HTML comment markers; the rest of the file is kept):
final accuracy (mean ± sample std over seeds) per defense and attack, the spread between
the best and the worst defense in each column, and the reading, every number computed
from the runs.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: one thread per run process

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bristle_reproduction import cells, fmt, mean_std, metric, short  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "scenarios" / "studies" / "byzantine_grid_hard.yaml"
SPREAD = 0.30
# This script owns the part of docs/byzantine_grid.md between these markers.
BEGIN, END = "<!-- byzantine_grid_hard: written by benchmarks/byzantine_grid_hard.py -->", "<!-- end byzantine_grid_hard -->"


def run(sweep_dir: Path, jobs: int) -> list[dict]:
    from fedsim import study
    out = study.run_sweep(study.load(STUDY), out=sweep_dir, jobs=jobs, progress=False)
    with open(out / "results.csv") as fh:
        return list(csv.DictReader(fh))


def document(rows: list[dict], command: str) -> str:
    table = cells(rows, ("defense", "adversary"))
    defenses = list(dict.fromkeys(r["defense"] for r in rows))
    attacks = list(dict.fromkeys(r["adversary"] for r in rows))
    mean = {key: mean_std(metric(runs, "final_accuracy_mean"))[0] for key, runs in table.items()}
    lines = ["| defense | " + " | ".join(short(a) for a in attacks) + " |",
             "|---" * (len(attacks) + 1) + "|"]
    for d in defenses:
        lines.append(f"| {d} | " + " | ".join(fmt(metric(table[(d, a)], "final_accuracy_mean"))
                                             for a in attacks) + " |")
    spreads = {a: max(mean[(d, a)] for d in defenses) - min(mean[(d, a)] for d in defenses) for a in attacks}
    best = {a: max(defenses, key=lambda d: mean[(d, a)]) for a in attacks}
    worst = {a: min(defenses, key=lambda d: mean[(d, a)]) for a in attacks}
    lines.append("| **spread (best - worst)** | " + " | ".join(f"**{spreads[a] * 100:.1f}**" for a in attacks) + " |")
    wide = [a for a in attacks if spreads[a] >= SPREAD]
    attacked = [a for a in attacks if short(a) != "none"]
    wins = {d: sum(best[a] == d for a in attacked) for d in defenses}
    losses = {d: sum(worst[a] == d for a in attacked) for d in defenses}
    none = next(a for a in attacks if short(a) == "none")
    reading = [
        f"- Spread of at least {SPREAD * 100:.0f} points between the best and the worst defense in "
        f"{len(wide)} of {len(attacks)} columns ({', '.join(short(a) for a in wide) or 'none'}).",
        "- Best defense per column: " + ", ".join(f"{short(a)}: {best[a]}" for a in attacks) + ".",
        "- Worst defense per column: " + ", ".join(f"{short(a)}: {worst[a]}" for a in attacks) + ".",
        f"- Without attack the rules already differ by {spreads[none] * 100:.1f} points (best {best[none]} "
        f"{mean[(best[none], none)] * 100:.1f}, worst {worst[none]} {mean[(worst[none], none)] * 100:.1f}): on "
        "Dirichlet 0.1 data honest heads disagree, and a rule that keeps one candidate or a coordinate-wise "
        "middle discards what other peers learned about classes it barely holds.",
        "- What each attack costs averaging (points below its no-attack accuracy): "
        + ", ".join(f"{short(a)} {(mean[('mean', none)] - mean[('mean', a)]) * 100:.1f}" for a in attacked) + ".",
        "- Attacks that cost no defense more than 10 points: "
        + (", ".join(short(a) for a in attacked
                     if all(mean[(d, none)] - mean[(d, a)] <= 0.10 for d in defenses)) or "none") + ".",
        "- Wins (best in an attacked column): " + ", ".join(f"{d} {wins[d]}" for d in defenses)
        + "; losses (worst): " + ", ".join(f"{d} {losses[d]}" for d in defenses) + ".",
    ]
    return "\n".join([
        "## A grid that separates defenses",
        "",
        "Final honest accuracy (%, mean ± sample std over 3 seeds) of each defense under each attack, "
        "in a setting chosen so that defenses differ: fashion_mnist, 20 peers on a random 6-regular "
        "graph, Dirichlet 0.1 label skew, every peer starting from the same random head (nothing "
        "pre-fitted: the backbone is pre-trained on the public split, the head is not), 3 local SGD "
        "steps (lr 0.05, batch 32) a round, 20 rounds, 30 % of the peers (6) Byzantine, placed at "
        "random. Rules with a Byzantine bound use `f: auto` (each peer's true number of Byzantine "
        "neighbours). Attacks use their defaults. Regenerate with",
        "",
        f"    {command}",
        "",
        f"(the study `scenarios/studies/byzantine_grid_hard.yaml`, {len(rows)} runs, "
        f"{sum(float(r['wall_time_s']) for r in rows) / 60:.0f} minutes of run time on this shared 2-core machine).",
        "",
        *lines,
        "",
        "## Reading",
        "",
        *reading,
        "",
        "Not covered: this grid fixes one setting. Dirichlet 0.5, shards of 2, random 4-regular, "
        "Erdos-Renyi and dumbbell graphs and 10-20 % attackers are each one `--set` or one more axis of "
        "the study away, but were not run: the 2 shared cores allowed one setting at 3 seeds.",
        "",
        "The grid below this one (complete graph, every peer starting from the head fitted on the public "
        "split, FedRS) keeps nearly every defense at 0.886-0.889 under nearly every attack: there the "
        "heads have nothing left to learn, so attacks that scale with honest updates do nothing.",
        "",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "docs" / "byzantine_grid.md"))
    parser.add_argument("--sweep", default=str(ROOT / "runs" / "sweeps" / "byzantine_grid_hard"))
    args = parser.parse_args(argv)
    rows = run(Path(args.sweep), args.jobs)
    out = Path(args.out)
    old = out.read_text() if out.exists() else "# Byzantine robustness grid\n"
    section = f"{BEGIN}\n{document(rows, 'python benchmarks/byzantine_grid_hard.py')}{END}\n"
    if BEGIN in old and END in old:
        text = old[:old.index(BEGIN)] + section + old[old.index(END) + len(END) + 1:]
    else:  # first time: after the title line
        title, _, rest = old.partition("\n")
        text = f"{title}\n\n{section}\n{rest.lstrip()}"
    out.write_text(text)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
