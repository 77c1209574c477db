"""Reproductions in kind of two decentralized Byzantine-robustness tables, and issue 16's
per-peer-f acceptance study; writes docs/reproductions.md.

    python benchmarks/reproductions.py [--jobs 2] [--studies ios,dumbbell,per_peer_f]
                                       [--out docs/reproductions.md]

Each study is a sweep file in scenarios/studies/ run with ``fedsim sweep`` into
runs/sweeps/<name> (a second call skips the finished runs); the script then reads every
sweep's results.csv (mean and sample std over the seeds) and, for BALANCE, measures in
this process the share of honest neighbours accepted at the paper's gamma 0.3 and at
fedsim's default. The document's prose states what the numbers show; every number in it
comes from these runs.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import fedsim

ROOT = Path(__file__).resolve().parents[1]
STUDIES = {
    "ios": "scenarios/studies/ios_label_separated.yaml",
    "dumbbell": "scenarios/studies/clippedgossip_dumbbell.yaml",
    "dumbbell_900": "scenarios/studies/clippedgossip_dumbbell_900.yaml",
    "per_peer_f": "scenarios/studies/per_peer_f_study.yaml",
    "ios_consensus": "scenarios/studies/ios_label_separated_consensus.yaml",
}

# The papers' figures (accuracy in %).
IOS_PAPER = {  # draw_table/table/dec_SR_mnist_ER_n=12_b=2_p=0.7_seed=300_LabelSeperation.tex
    "mean": {"none": 91.70, "gaussian": 13.63, "sign_flip": 20.89},
    "krum": {"none": 19.71, "gaussian": 19.76, "sign_flip": 19.16},
    "bridge": {"none": 91.61, "gaussian": 90.40, "sign_flip": 70.97},
    "ios": {"none": 91.70, "gaussian": 91.60, "sign_flip": 91.61},
}
IOS_NAMES = {"mean": "WeiMean (mean, MH weights)", "krum": "Krum (f: auto)",
             "bridge": "TriMean (bridge, b: auto)", "ios": "IOS (f: auto, MH weights)"}
DUMBBELL_PAPER = {"mean": 93.6, "clipped_gossip": 93.8, "geometric_median": 88.6, "trimmed_mean": 86.9,
                  "mozi": 86.2}
DUMBBELL_NAMES = {"mean": "Gossip (mean, MH weights)", "clipped_gossip": "SCClip (tau 1, MH weights)",
                  "geometric_median": "GM", "trimmed_mean": "TM (f 1)", "mozi": "Mozi (rho 1, alpha 0.5)"}


def run_sweep(name: str, jobs: int) -> list[dict]:
    """Run (or finish) one sweep; its results.csv rows."""
    out = ROOT / "runs" / "sweeps" / Path(STUDIES[name]).stem
    subprocess.run([sys.executable, "-c", "import sys; from fedsim.cli import main; sys.exit(main())",
                    "sweep", STUDIES[name], "--jobs", str(jobs),
                    "--out", str(out), "--no-progress"], cwd=ROOT, check=True)
    with open(out / "results.csv") as handle:
        return list(csv.DictReader(handle))


def cell_stats(rows: list[dict], **match) -> tuple[float, float, int]:
    """Mean and sample std (over seeds) of final_accuracy_mean, in %, of the rows whose
    columns equal ``match`` (values compared as JSON text)."""
    values = [100 * float(r["final_accuracy_mean"]) for r in rows
              if all(_same(r[k], v) for k, v in match.items())]
    if not values:
        raise KeyError(f"no run matches {match}")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), std, len(values)


def _same(cell: str, value) -> bool:
    try:
        return json.loads(cell) == value
    except (json.JSONDecodeError, TypeError):
        return cell == str(value)


def fmt(stats) -> str:
    mean, std, n = stats
    return f"{mean:.1f} ± {std:.1f}"


def attack_of(row: dict) -> str:
    """``none``, the attack's name, or ``sign_flip_neighbourhood`` for the IOS code's form."""
    attack = row["adversary.attack"].split("(")[0]          # results.csv writes name(args)
    if json.loads(row["adversary.ids"]) == []:
        return "none"
    return attack + "_neighbourhood" if "receiver_neighbourhood" in row["adversary.attack"] else attack


def balance_acceptance(gamma: float, rounds: int = 30, n_peers: int = 20) -> dict:
    """Share of received heads BALANCE accepts on per_peer_f.yaml without attack (every
    sender honest), counted inside ``balance_accepted`` during one run in this process:
    over the run, in round 1 and in the last round (one call per peer and round)."""
    from defenses.aggregation import balance
    calls: list = []
    original = balance.balance_accepted

    def counting(own, received, threshold):
        accepted = original(own, received, threshold)
        calls.append((int(accepted.sum()), int(accepted.numel())))
        return accepted

    balance.balance_accepted = counting
    try:
        with tempfile.TemporaryDirectory() as tmp:
            summary, _ = fedsim.run(str(ROOT / "scenarios/studies/per_peer_f.yaml"), overrides=[
                "adversary.fraction=0", "defense.name=balance",
                f"defense.args={{gamma: {gamma}, total_rounds: {rounds}}}", f"rounds={rounds}",
                f"eval_every={rounds}"], out=str(Path(tmp) / "run"), progress=False)
    finally:
        balance.balance_accepted = original

    def share(chunk):
        return sum(a for a, _ in chunk) / max(1, sum(t for _, t in chunk))
    return {"gamma": gamma, "accuracy": 100 * float(summary["final"]["accuracy_mean"]),
            "share": share(calls), "first": share(calls[:n_peers]), "last": share(calls[-n_peers:])}


def ios_section(rows: list[dict]) -> str:
    lines = ["| defense | no attack (paper / ours) | Gaussian (paper / ours) | sign flip, own head "
             "(paper / ours) | sign flip, IOS code's form (paper / ours) |",
             "|---|---:|---:|---:|---:|"]
    for name, label in IOS_NAMES.items():
        cells = []
        for attack in ("none", "gaussian", "sign_flip", "sign_flip_neighbourhood"):
            ours = [r for r in rows if r["defense.name"] == name and attack_of(r) == attack]
            stats = cell_stats(ours)
            cells.append(f"{IOS_PAPER[name][attack.split('_neighbourhood')[0]]:.1f} / {fmt(stats)}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


IOS_CONSENSUS_CELLS = [  # (label, defense, attack as attack_of names it)
    ("WeiMean (mean, MH weights), no attack", "mean", "none"),
    ("WeiMean (mean, MH weights), sign flip, IOS code's form", "mean", "sign_flip_neighbourhood"),
    ("IOS (f: auto, MH weights), sign flip, own head", "ios", "sign_flip"),
    ("IOS (f: auto, MH weights), sign flip, IOS code's form", "ios", "sign_flip_neighbourhood"),
]


def consensus_cell(rows: list[dict], name: str, attack: str) -> list[dict]:
    return [r for r in rows if r["defense.name"] == name and attack_of(r) == attack]


def ios_consensus_section(rows: list[dict]) -> str:
    lines = ["| rule, attack | final accuracy (%) | consensus distance |", "|---|---:|---:|"]
    for label, name, attack in IOS_CONSENSUS_CELLS:
        cell = consensus_cell(rows, name, attack)
        distance = statistics.mean(float(r["final_consensus_distance"]) for r in cell)
        lines.append(f"| {label} | {fmt(cell_stats(cell))} | {distance:.3f} |")
    return "\n".join(lines)


def dumbbell_section(rows: list[dict], long_rows: list[dict] = None) -> str:
    """The paper's dumbbell table next to ours after 100 rounds and, with ``long_rows``
    (the 900-round study), after 900 rounds, then the 900-round curves."""
    head = "| defense | paper (MNIST) | ours (Fashion-MNIST), 100 rounds |"
    lines = [head + (" ours, 900 rounds |" if long_rows else ""), "|---|---:|---:|" + ("---:|" if long_rows else "")]
    for name, label in DUMBBELL_NAMES.items():
        line = f"| {label} | {DUMBBELL_PAPER[name]:.1f} | {fmt(cell_stats(rows, **{'defense.name': name}))} |"
        lines.append(line + (f" {fmt(cell_stats(long_rows, **{'defense.name': name}))} |" if long_rows else ""))
    if long_rows:
        curves = dumbbell_curves(long_rows)
        rounds = sorted(next(iter(curves.values())))
        lines += ["", "The 900-round runs, honest accuracy (%, mean over 3 seeds) at each evaluated round:", "",
                  "| defense | " + " | ".join(str(r) for r in rounds) + " |", "|---" * (len(rounds) + 1) + "|"]
        lines += [f"| {DUMBBELL_NAMES[name]} | " + " | ".join(f"{curves[name][r]:.1f}" for r in rounds) + " |"
                  for name in DUMBBELL_NAMES]
    return "\n".join(lines)


def dumbbell_curves(rows: list[dict]) -> dict:
    """``{defense: {round: mean accuracy % over seeds}}`` from each run's metrics.jsonl."""
    out = ROOT / "runs" / "sweeps" / Path(STUDIES["dumbbell_900"]).stem
    per: dict = {}
    for row in rows:
        for line in (out / row["run_dir"] / "metrics.jsonl").read_text().splitlines():
            metrics = json.loads(line)
            if metrics.get("accuracy_mean") is not None:
                per.setdefault(row["defense.name"], {}).setdefault(metrics["round"], []).append(
                    100 * metrics["accuracy_mean"])
    return {name: {r: statistics.mean(v) for r, v in by_round.items()} for name, by_round in per.items()}


PER_PEER_F_CELLS = [  # (label, defense, args, attacker fraction, Gaussian noise args)
    ("mean, no attack", "mean", {}, 0.0, {}),
    ("mean, Gaussian", "mean", {}, 0.25, {}),
    ("ios f: 1", "ios", {"f": 1}, 0.25, {}),
    ("ios f: auto", "ios", {"f": "auto"}, 0.25, {}),
    ("ios f: auto, noise std 100 (= averaging of the honest heads only)", "ios", {"f": "auto"}, 0.25,
     {"std": 100.0}),
    ("trimmed_mean f: 1", "trimmed_mean", {"f": 1}, 0.25, {}),
    ("trimmed_mean f: auto", "trimmed_mean", {"f": "auto"}, 0.25, {}),
    ("trimmed_mean f: auto, noise std 100 (every Byzantine value trimmed)", "trimmed_mean", {"f": "auto"}, 0.25,
     {"std": 100.0}),
    ("trimmed_mean f: auto, no attack (trims nothing)", "trimmed_mean", {"f": "auto"}, 0.0, {}),
    ("trimmed_mean f: 1, no attack", "trimmed_mean", {"f": 1}, 0.0, {}),
    ("bridge b: auto (IOS code's trimmed mean: own head kept)", "bridge", {"b": "auto"}, 0.25, {}),
    ("balance gamma 0.3 (paper)", "balance", {"gamma": 0.3, "total_rounds": 30}, 0.25, {}),
    ("balance gamma 2.0 (default)", "balance", {"total_rounds": 30}, 0.25, {}),
]


def per_peer_f_stats(rows: list[dict]) -> dict:
    """``{label: (mean, std, n)}`` of every cell of PER_PEER_F_CELLS."""
    return {label: cell_stats(rows, **{"defense.name": name, "defense.args": args,
                                       "adversary.fraction": fraction, "adversary.attack.args": noise})
            for label, name, args, fraction, noise in PER_PEER_F_CELLS}


def per_peer_f_section(rows: list[dict], acceptance: list[dict]) -> str:
    stats = per_peer_f_stats(rows)
    lines = ["| rule (Gaussian attack, std 1, unless stated) | final accuracy (%) |", "|---|---:|"]
    lines += [f"| {label} | {fmt(value)} |" for label, value in stats.items()]
    lines += ["", "| BALANCE gamma (no attack, seed 0) | honest neighbours accepted | round 1 | round 30 "
              "| accuracy (%) |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {a['gamma']} | {100 * a['share']:.0f} % | {100 * a['first']:.0f} % | {100 * a['last']:.0f} % "
              f"| {a['accuracy']:.1f} |" for a in acceptance]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--studies", default=",".join(STUDIES))
    parser.add_argument("--out", default="docs/reproductions.md")
    args = parser.parse_args(argv)
    logging.getLogger("fedsim").addHandler(logging.NullHandler())
    chosen = [s.strip() for s in args.studies.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STUDIES]
    if unknown:
        parser.error(f"unknown studies {unknown}; choose from {', '.join(STUDIES)}")
    results = {name: run_sweep(name, args.jobs) for name in chosen}
    sections = {}
    if "ios" in results:
        sections["ios"] = ios_section(results["ios"])
    if "dumbbell" in results:
        sections["dumbbell"] = dumbbell_section(results["dumbbell"], results.get("dumbbell_900"))
    if "ios_consensus" in results:
        sections["ios_consensus"] = ios_consensus_section(results["ios_consensus"])
    if "per_peer_f" in results:
        results["balance_acceptance"] = [balance_acceptance(0.3), balance_acceptance(2.0)]
        sections["per_peer_f"] = per_peer_f_section(results["per_peer_f"], results["balance_acceptance"])
    text = render(sections, results)
    print(text)
    Path(ROOT / args.out).write_text(text)


HEADER = """# Reproductions

Two published tables of decentralized Byzantine-robust learning, reproduced in kind on
what this machine has (Fashion-MNIST; MNIST is not installed), and the per-peer-f study
of issue 16. Regenerate everything with

```
python benchmarks/reproductions.py --jobs 2
```

which runs the sweeps `scenarios/studies/ios_label_separated.yaml`,
`scenarios/studies/ios_label_separated_consensus.yaml`,
`scenarios/studies/clippedgossip_dumbbell.yaml`, `scenarios/studies/clippedgossip_dumbbell_900.yaml`
and `scenarios/studies/per_peer_f_study.yaml` with `fedsim sweep` into `runs/sweeps/<name>` (finished runs are skipped on a second call)
and rewrites this file from their `results.csv`. Figures are final `accuracy_mean` (mean
over honest peers of each peer's head on the global test set), in %, mean ± sample std
over the seeds (3 seeds unless stated). About 75 CPU minutes in all, 45 of them the
900-round dumbbell (one to two hours on the shared 2-core machine)."""

IOS_INTRO = """## IOS: the label-separated table

Wu, Chen, Ling (2023), "Byzantine-resilient decentralized stochastic optimization with
robust aggregation rules", IEEE TSP; the authors' table
`draw_table/table/dec_SR_mnist_ER_n=12_b=2_p=0.7_seed=300_LabelSeperation.tex` in
Zhaoxian-Wu/IOS.

| | paper (authors' code) | here |
|---|---|---|
| data, model | MNIST, softmax regression | Fashion-MNIST, softmax regression (identity backbone, linear head on raw pixels) |
| graph | Erdős–Rényi n = 12, p = 0.7, one graph (seed 300), b = 2 placed at random | Erdős–Rényi n = 12, p = 0.7, a graph per seed (0, 1, 2), Byzantine peers 10 and 11 |
| data split | label separation: each honest agent one class | cyclic, one class per peer: peers 0..9 hold classes 0..9 (10 and 11 hold 0 and 1) |
| training | DSGD: one stochastic step, then aggregation, many iterations | one SGD step (batch 32, lr 0.5), then aggregation, 60 rounds |
| weighted mean, IOS | Metropolis-Hastings weights `1 / max(deg_i + 1, deg_j + 1)` | `weights: metropolis_hastings` (same formula) |
| Byzantine count | each node's true count (`graph.byzantine_sizes[node]`) | `f: auto` / `b: auto` |
| TriMean | trims the neighbours, keeps the own model (`D_trimmed_mean`) | `bridge` (the same screening) |
| Gaussian | mean of the receiver's honest neighbours + N(0, 30²) | mean of the honest heads the attackers observe + N(0, 30²) (`gaussian`, `center: honest_mean`, `std: 30`) |
| sign flipping | −(mean of the receiver and its honest neighbours) (`D_sign_flipping`) | two columns: −(the attacker's own trained head) (`sign_flip`, `level: model`, ClippedGossip's form), and the IOS code's form (`sign_flip`, `source: receiver_neighbourhood`, by an omniscient attacker that knows the graph) |"""

DUMBBELL_INTRO = """## ClippedGossip: the dumbbell

He, Karimireddy, Jaggi (2022), "Byzantine-robust decentralized learning via
ClippedGossip"; the authors' `run.sh` (`dumbbell`: `-n 20 -f 0 --graph dumbbell10,0,0
--attack NA --lr 0.01 --epochs 30 --batch-size 32 --max-batch-size-per-epoch 30
--momentum 0.9`, aggregators `tm1 scp1 gossip_avg rfa8 mozi1,0.5`) in
epfml/byzantine-robust-decentralized-optimizer. No attacker: the experiment measures what
a robust rule costs when two groups of honest peers hold different classes.

| | paper (authors' code) | here |
|---|---|---|
| data, model | MNIST, a CNN trained end to end | Fashion-MNIST, softmax regression on raw pixels (identity backbone; a pre-trained CNN backbone would need a pre-training per seed) |
| graph | two cliques of 10 joined by the edge (0, 19) | `dumbbell`, n = 20 (same graph) |
| data split | clique 1 classes 0–4, clique 2 classes 5–9 (`DumbbellSampler`, noniid 1) | `label_groups`, 5 classes per block (same split) |
| training | 900 SGD steps (momentum 0.9, lr 0.01), gossip after each | 100 rounds of one SGD step (lr 0.5, no momentum), then aggregation |
| rules | gossip (Metropolis weights), SCClip τ = 1, RFA 8 iterations, TM b = 1, Mozi ρ = 1, α = 0.5 | `mean` and `clipped_gossip` (τ = 1) with `weights: metropolis_hastings`, `geometric_median`, `trimmed_mean` f = 1, `mozi` ρ = 1, α = 0.5 |"""

PER_PEER_F_INTRO = """## Per-peer f (issue 16)

`scenarios/studies/per_peer_f.yaml`: Fashion-MNIST on the CNN backbone pre-trained on the
public split, random initial head, 20 peers on a random 6-regular graph, 2-class shards,
5 Byzantine peers (25 %) sending Gaussian noise (std 1), 30 rounds of 10 SGD steps,
seeds 0, 1, 2 (the CNN backbone is pre-trained per seed). `f: 1` is one global bound for every
peer; `f: auto` is each peer's true number of Byzantine neighbours this round (an oracle
upper bound, as the IOS and ClippedGossip experiments give every node)."""


def ios_reading(rows: list[dict]) -> str:
    def ours(name, attack):
        return cell_stats([r for r in rows if r["defense.name"] == name and attack_of(r) == attack])[0]

    def best_peer(name, attack):
        return 100 * max(float(r["final_accuracy_max"]) for r in rows
                         if r["defense.name"] == name and attack_of(r) == attack)
    seeds = sorted({r["seed"] for r in rows})
    ios_none, ios_gauss, ios_flip, ios_code_flip = (ours("ios", a) for a in
                                                     ("none", "gaussian", "sign_flip", "sign_flip_neighbourhood"))
    return f"""Seeds: {", ".join(seeds)} (± 0.0 where one seed ran).

What reproduces: the weighted mean collapses under Gaussian noise ({ours("mean", "gaussian"):.1f} %;
paper 13.6) and under sign flipping ({ours("mean", "sign_flip"):.1f} %; paper 20.9). Krum stays at
one or two classes' worth with and without attack ({ours("krum", "none"):.1f} / {ours("krum", "gaussian"):.1f} /
{ours("krum", "sign_flip"):.1f} %; paper 19.7 / 19.8 / 19.2): under Gaussian noise the best honest
peer reaches {best_peer("krum", "gaussian"):.1f} % (one class is 10 % of the test set), i.e. every peer
keeps one peer's one-class head. Under Gaussian noise IOS (each peer's true Byzantine
count, Metropolis-Hastings weights) ends {ios_none - ios_gauss:.1f} points below its no-attack
accuracy ({ios_gauss:.1f} against {ios_none:.1f} %; paper 91.6 against 91.7), the best of the four rules.

What does not reproduce in this 60-round table: IOS under sign flipping ({ios_flip:.1f} % with the
attacker's own head flipped, {ios_code_flip:.1f} % with the IOS code's form; paper 91.6, its headline
figure) and the trimmed mean (BRIDGE form) under attack ({ours("bridge", "gaussian"):.1f} % under
Gaussian noise, {ours("bridge", "sign_flip"):.1f} / {ours("bridge", "sign_flip_neighbourhood"):.1f} % under the two sign flips;
paper 90.4 and 71.0). The next section shows that the sign-flip gap comes from the
training regime, not from the attack's form.

Differences, and what is and is not established:

- *Absolute level* (every row): our no-attack weighted mean reaches {ours("mean", "none"):.1f} %
  against the paper's 91.7 %. The settings differ by design in the dataset (a linear model
  on raw Fashion-MNIST pixels is weaker than on MNIST) and in the budget (60 rounds of one
  step here; the authors run DSGD to convergence). Rows share the budget, so compare
  within a column.
- *The form of the sign flip is not the cause.* The IOS code's `D_sign_flipping` sends
  −(mean of the receiver and its honest neighbours); ClippedGossip's negates the
  attacker's own model. With the IOS code's form IOS ends at {ios_code_flip:.1f} %, against
  {ios_flip:.1f} % with the own-head form: the authors' attack does not close the gap here.
- *Gaussian centre*: the authors centre the noise on each receiver's honest neighbours,
  ours on the honest heads the attackers observe; with std 30 against heads of norm about
  1 the noise dominates either way (not measured separately).
- The authors' graph is one Erdős–Rényi draw (seed 300) with Byzantine nodes placed at
  random; ours draws a graph per seed and fixes the Byzantine peers to 10 and 11 (the
  peers whose classes duplicate those of peers 0 and 1), so no honest class is lost."""


IOS_CONSENSUS_INTRO = """### The same table in a consensus regime

`scenarios/studies/ios_label_separated_consensus.yaml`: the label-separated setting above
with a constant learning rate of 0.05 for 300 rounds instead of 0.5 for 60. The
authors' DSGD (`main DSGD.py`, `softmaxRegression.py`: lr 0.9 / sqrt(k), weight decay
0.01, 100 x 500 iterations) shrinks its steps until the honest models agree; a step of
0.5 on one class's batch every round keeps pulling each head towards its own class.
One seed (0): a 300-round run took 5-10 minutes on the shared machine. The consensus
distance is the mean distance of the honest heads from their average at the end."""


def ios_consensus_reading(rows: list[dict], table_rows) -> str:
    values = {label: cell_stats(consensus_cell(rows, name, attack))[0]
              for label, name, attack in IOS_CONSENSUS_CELLS}
    clean, mean_flip, ios_own, ios_code = values.values()
    distance = {label: statistics.mean(float(r["final_consensus_distance"])
                                       for r in consensus_cell(rows, name, attack))
                for label, name, attack in IOS_CONSENSUS_CELLS}
    short_run = ""
    if table_rows:
        clean_short = [r for r in table_rows if r["defense.name"] == "mean" and attack_of(r) == "none"]
        short_distance = statistics.mean(float(r["final_consensus_distance"]) for r in clean_short)
        short_run = (f" (the 60-round table's averaging without attack ends at a consensus distance of "
                     f"{short_distance:.3f}, against {distance[IOS_CONSENSUS_CELLS[0][0]]:.3f} here)")
    return f"""Once the honest heads agree{short_run}, IOS holds under
both sign flips: {ios_own:.1f} % with the own-head form and {ios_code:.1f} % with the IOS code's form,
{clean - min(ios_own, ios_code):.1f} points or less below averaging without attack ({clean:.1f} %), while averaging
under the IOS code's flip falls to {mean_flip:.1f} %. This is the paper's finding (IOS 91.6 under
sign flipping against 91.7 without attack). A flipped model is about twice the
consensus model's norm away from honest heads that agree, so the scissor (farthest from
the weighted mean) removes it; in the 60-round table the honest heads stay far apart
and the scissor does not single the flipped head out. The 60-round table's
sign-flip gap is therefore a consequence of its short, large-step budget, not of the
rule or the attack's form. Established on one seed."""


def dumbbell_reading(rows: list[dict]) -> str:
    best = max(float(r["final_accuracy_max"]) for r in rows) if "final_accuracy_max" in rows[0] else None
    gossip = cell_stats(rows, **{"defense.name": "mean"})[0]
    others = {n: cell_stats(rows, **{"defense.name": n})[0] for n in DUMBBELL_PAPER}
    spread = max(others.values()) - min(others.values())
    best_text = f"; the best honest peer of any run reaches {100 * best:.1f} %" if best is not None else ""
    return f"""What does not reproduce: the level. Every rule ends near 40 % (gossip
{gossip:.1f} %{best_text}). Half of the test set is the other clique's five classes, so no
peer exceeds 50 % by more than a fraction of a point: after 100 gossip steps the
knowledge of the other clique's classes has not crossed the single bridge. The paper runs 900 gossip steps with momentum, and
its gossip row (93.6 %) shows the bridge was crossed. What the paper's table shows, that
the robust rules cost accuracy on this non-iid graph (GM, TM and Mozi 5-7 points below
gossip), needs the crossing to have happened: here the five rules lie within
{spread:.1f} points of each other, so this run cannot separate them. The 900-round runs
(the paper's number of gossip steps) follow."""


def dumbbell_900_reading(rows: list[dict], long_rows: list[dict]) -> str:
    """What the 900-round runs (the paper's number of gossip steps) change."""
    short = {n: cell_stats(rows, **{"defense.name": n})[0] for n in DUMBBELL_PAPER}
    long = {n: cell_stats(long_rows, **{"defense.name": n})[0] for n in DUMBBELL_PAPER}
    gossip = long["mean"]
    gaps = ", ".join(f"{DUMBBELL_NAMES[n].split(' (')[0]} {long[n] - gossip:+.1f} (paper "
                     f"{DUMBBELL_PAPER[n] - DUMBBELL_PAPER['mean']:+.1f})" for n in DUMBBELL_PAPER if n != "mean")
    spread = max(long.values()) - min(long.values())
    crossed = [DUMBBELL_NAMES[n].split(" (")[0] for n in DUMBBELL_PAPER if long[n] > 50.0]
    blocked = [DUMBBELL_NAMES[n].split(" (")[0] for n in DUMBBELL_PAPER if long[n] <= 50.0]
    return f"""**900 rounds** (`scenarios/studies/clippedgossip_dumbbell_900.yaml`, the paper's number of
gossip steps, still without momentum): gossip goes from {short['mean']:.1f} % at 100 rounds to
{gossip:.1f} % at 900; the five rules now span {spread:.1f} points. Each rule against gossip,
points (paper's gap in brackets): {gaps}. Above the 50 % that one clique's classes allow,
i.e. with knowledge of the other clique's classes carried over the bridge:
{", ".join(crossed) if crossed else "none"}; at or below it: {", ".join(blocked) if blocked else "none"}.
The paper's finding, that the robust rules cost accuracy on this non-iid graph because
they damp the one edge that carries the other clique's classes, reproduces in kind and
larger (our gaps are bigger; our level lower, as after 100 rounds). Where we differ is
SCClip, which the paper finds as good as gossip: with tau = 1 fixed and one plain SGD step
of lr 0.5 between gossip steps, our bridge messages lie farther than tau more often than
the paper's (lr 0.01 with momentum); that is the likely cause, not measured here."""


def per_peer_f_reading(rows: list[dict], acceptance: list[dict]) -> str:
    stats = per_peer_f_stats(rows)
    labels = [c[0] for c in PER_PEER_F_CELLS]
    (clean, _, ios_1, ios_auto, oracle, _, tm_auto, tm_clipped, tm_clean, tm_1_clean, bridge,
     _, _) = (stats[label][0] for label in labels)

    def per_seed(label):
        name, args, fraction, noise = next(c[1:] for c in PER_PEER_F_CELLS if c[0] == label)
        return {r["seed"]: 100 * float(r["final_accuracy_mean"]) for r in rows
                if _same(r["defense.name"], name) and _same(r["defense.args"], args)
                and _same(r["adversary.fraction"], fraction) and _same(r["adversary.attack.args"], noise)}
    clean_seeds, ios_seeds = per_seed("mean, no attack"), per_seed("ios f: auto")
    gap_values = [clean_seeds[s] - ios_seeds[s] for s in sorted(clean_seeds)]
    gaps = ", ".join(f"{g:.1f}" for g in gap_values)
    gap_std = statistics.stdev(gap_values) if len(gap_values) > 1 else 0.0
    identical = per_seed("ios f: auto") == per_seed(labels[4])
    tm_is_mean = per_seed(labels[8]) == clean_seeds
    paper_gamma, default_gamma = acceptance
    return f"""Issue 16 asks that, with `f: auto`, IOS and the trimmed mean end within 3 points of
plain averaging without attack.

- *Without attack `f: auto` is 0 at every peer* and the trimmed mean is the mean: both
  end at {tm_clean:.1f} % against {clean:.1f} %{', identical run for run' if tm_is_mean else ''} (no Byzantine
  neighbour, nothing trimmed; `tests/test_byzantine_fidelity.py` checks the rule). The gap
  is under attack only.
- *IOS* with `f: auto` ends {clean - ios_auto:.1f} ± {gap_std:.1f} points below clean averaging (per
  seed: {gaps}); with the global `f: 1` it lets a peer's second and third Byzantine
  neighbour through ({ios_1:.1f} %). Under noise of std 100, which IOS cannot fail to scissor,
  it ends {'at exactly the same accuracy, run for run' if identical else f'at {oracle:.1f} %'}: IOS removes every Byzantine
  head, and its result is the averaging of the honest heads alone. What is left of the
  gap is the 5 Byzantine peers' shards and links, which no rule can recover: on this
  reference IOS loses {clean - oracle:.1f} points to nothing but the attackers' absence, and 0 to
  its own choices. Against averaging without attack the 3-point target is
  {'met' if clean - ios_auto <= 3 else 'missed'} on the mean over seeds ({clean - ios_auto:.1f}); against the
  averaging of the honest heads (the attainable reference) IOS is at 0.0.
- *The trimmed mean* with `f: auto` ends {clean - tm_auto:.1f} points below clean averaging and
  {oracle - tm_auto:.1f} below the honest-only averaging. Its bound is right (it trims exactly each
  peer's Byzantine count); the cost is the rule's on non-iid data. Trimming one value per
  side without any attacker already costs {clean - tm_1_clean:.1f} points ({tm_1_clean:.1f} %), and when every
  Byzantine value is an extreme and is trimmed (noise std 100) the rule still ends at
  {tm_clipped:.1f} %: per coordinate it also drops the honest extremes, and on 2-class shards
  the extremes of a class's row come from the one or two neighbours that hold the
  class (IOS drops whole heads, here only the Byzantine ones). The IOS authors'
  decentralized trimmed mean (ByrdLab `D_trimmed_mean`: trim the neighbours, always keep
  the own head; fedsim's `bridge`) does worse, {bridge:.1f} % (by its rule a peer with 3
  Byzantine neighbours of 6 trims every neighbour and keeps its own head alone). The
  3-point target is not met by the trimmed mean, and neither form of it in the papers'
  codes meets it here.
- BALANCE at the paper's gamma 0.3 accepts {100 * paper_gamma["share"]:.0f} % of honest heads over
  the run without attack, so under attack its row is local training; at the default
  2.0 it accepts {100 * default_gamma["share"]:.0f} % ({100 * default_gamma["first"]:.0f} % in round 1,
  {100 * default_gamma["last"]:.0f} % in round 30)."""


def render(sections: dict, results: dict) -> str:
    parts = [HEADER]
    if "ios" in sections:
        parts += [IOS_INTRO, sections["ios"], ios_reading(results["ios"])]
    if "ios_consensus" in sections:
        parts += [IOS_CONSENSUS_INTRO, sections["ios_consensus"],
                  ios_consensus_reading(results["ios_consensus"], results.get("ios"))]
    if "dumbbell" in sections:
        parts += [DUMBBELL_INTRO, sections["dumbbell"], dumbbell_reading(results["dumbbell"])]
        if "dumbbell_900" in results:
            parts.append(dumbbell_900_reading(results["dumbbell"], results["dumbbell_900"]))
    if "per_peer_f" in sections:
        parts += [PER_PEER_F_INTRO, sections["per_peer_f"],
                  per_peer_f_reading(results["per_peer_f"], results["balance_acceptance"])]
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    main()
