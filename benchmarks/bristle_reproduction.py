"""The Bristle paper's four claims, measured: runs the studies and writes the document.

    python benchmarks/bristle_reproduction.py [--jobs 2] [--out docs/bristle_reproduction.md]
                                              [--sweeps runs/sweeps]

Runs every sweep of ``STUDIES`` (``scenarios/studies/bristle_*.yaml``, 3 seeds each)
with ``fedsim.study.run_sweep`` into ``--sweeps/<name>`` (a finished run is not run
again), then reads their ``results.csv`` and writes the Markdown document: the claims
side by side with our mean ± std over seeds (sample std, ddof 1), then every table
they come from. One torch thread per run process (several processes share the cores).
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: one thread per run process

import argparse
import csv
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDIES = ("bristle_paper", "bristle_ablation", "bristle_twenty", "bristle_disjoint", "bristle_settings",
           "bristle_half")
ROBUST = ("median", "krum", "bridge", "mozi")   # the paper's Byzantine-resilient baselines


def run_studies(sweeps_dir: Path, jobs: int) -> dict[str, list[dict]]:
    from fedsim import study
    results = {}
    for name in STUDIES:
        sweep = study.load(ROOT / "scenarios" / "studies" / f"{name}.yaml")
        out = study.run_sweep(sweep, out=sweeps_dir / name, jobs=jobs, progress=False)
        with open(out / "results.csv") as fh:
            results[name] = [{**row, "_sweep_dir": str(out)} for row in csv.DictReader(fh)]
    return results


# ------------------------------------------------------------------------ statistics

def number(value: str):
    return None if value in ("", "None", "null") else float(value)


def cells(rows: list[dict], keys: tuple) -> dict:
    """``{(value of each key): [rows of its seeds]}``, in first-seen order."""
    out: dict = {}
    for row in rows:
        out.setdefault(tuple(row[k] for k in keys), []).append(row)
    return out


def mean_std(values: list) -> tuple:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(values: list, scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± std`` of ``values`` times ``scale``; ``n/r`` counts runs that never reached."""
    reached = [v for v in values if v is not None]
    if not reached:
        return "never"
    m, s = mean_std(reached)
    text = f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"
    missed = len(values) - len(reached)
    return text + (f" ({missed}/{len(values)} never)" if missed else "")


def metric(rows: list[dict], name: str) -> list:
    return [number(r[name]) for r in rows]


def short(label: str) -> str:
    """A cell label without JSON noise: ``{"attack":{"name":"x"},"count":3}`` -> ``x``."""
    import json
    try:
        value = json.loads(label)
    except ValueError:
        return label
    if not isinstance(value, dict):
        return label
    if value.get("count") == 0 or value.get("fraction") == 0:
        return "none"
    if "attack" in value:
        attack = value["attack"]
        args = ", ".join(f"{k}={v}" for k, v in (attack.get("args") or {}).items())
        return f"{attack['name']}({args})" if args else attack["name"]
    return label


def grid(rows: list[dict], row_key: str, col_key: str, name: str, scale=100.0, digits=1) -> tuple[str, dict]:
    """A Markdown table of ``name`` (mean ± std over seeds), rows x columns."""
    table = cells(rows, (row_key, col_key))
    row_labels = list(dict.fromkeys(r[row_key] for r in rows))
    col_labels = list(dict.fromkeys(r[col_key] for r in rows))
    lines = ["| " + row_key + " | " + " | ".join(short(c) for c in col_labels) + " |",
             "|---" * (len(col_labels) + 1) + "|"]
    for r in row_labels:
        lines.append(f"| {r} | " + " | ".join(fmt(metric(table.get((r, c), []), name), scale, digits)
                                            for c in col_labels) + " |")
    return "\n".join(lines), table


def mean_of(table: dict, key: tuple, name: str):
    return mean_std(metric(table.get(key, []), name))[0]


# -------------------------------------------------------------------------- document

def communication(n_classes: int = 10) -> dict:
    """Bytes of one message: the head only (what every fedsim peer sends) against the
    whole model (backbone and head), for the backbone of scenarios/bristle.yaml."""
    from fedsim import config as cfg
    from fedsim.models.backbones import build_backbone
    s = cfg.load(ROOT / "scenarios" / "bristle.yaml")
    backbone = build_backbone(s.model.backbone, (1, 8, 8), **dict(s.model.backbone_args))
    backbone_numel = sum(p.numel() for p in backbone.parameters())
    head_numel = n_classes * (backbone.feature_dim + 1)
    return {"head": 4 * head_numel, "model": 4 * (backbone_numel + head_numel),
            "backbone_params": backbone_numel, "feature_dim": backbone.feature_dim}


def document(results: dict[str, list[dict]], command: str) -> str:
    paper = results["bristle_paper"]
    acc_table, acc = grid(paper, "defense", "adversary", "final_accuracy_mean")
    r90_table, r90 = grid(paper, "defense", "adversary", "rounds_to_accuracy", scale=1, digits=0)
    no_attack = next(c for c in dict.fromkeys(r["adversary"] for r in paper) if short(c) == "none")
    attacks = [c for c in dict.fromkeys(r["adversary"] for r in paper) if c != no_attack]
    defenses = list(dict.fromkeys(r["defense"] for r in paper))
    baselines = [d for d in defenses if d != "bristle"]
    robust = [d for d in defenses if d.split("(")[0] in ROBUST]

    # Claim 1: Bristle's accuracy under every attack.
    under_attack = [metric(acc[("bristle", a)], "final_accuracy_mean") for a in attacks]
    all_attack_runs = [v for runs in under_attack for v in runs]
    # Claim 2: rounds to 90 % without attack, Bristle against the fastest baseline.
    bristle_r = mean_std(metric(r90[("bristle", no_attack)], "rounds_to_accuracy"))[0]
    reached = {d: mean_std(metric(r90[(d, no_attack)], "rounds_to_accuracy"))[0] for d in baselines}
    reached = {d: v for d, v in reached.items() if v is not None}
    fastest = min(reached, key=reached.get) if reached else None
    # Claim 3: Bristle over the best robust baseline, per attack, on the cyclic split.
    ratios = []
    for column in attacks:
        best = max(mean_of(acc, (d, column), "final_accuracy_mean") for d in robust)
        ratios.append(mean_of(acc, ("bristle", column), "final_accuracy_mean") / best)
    comm = communication()

    lines = [
        "# Bristle: the paper's claims, measured",
        "",
        "Verbraeken, de Vos, Pouwelse, \"Bristle: Decentralized Federated Learning in Byzantine, "
        "Non-i.i.d. Environments\" (arXiv:2110.11006, 2021), run as its authors' code runs it "
        "(jverbraeken/trustchain-superapp, `fedml/`; see the docstring of "
        "`defenses/aggregation/bristle.py` for each choice with file and line). Every number below is "
        "the mean ± sample standard deviation over 3 seeds and is regenerated by",
        "",
        f"    {command}",
        "",
        "which runs the sweeps `scenarios/studies/bristle_*.yaml` (base: `scenarios/bristle.yaml`) and "
        "writes this file. Accuracies are in percent: the final `accuracy_mean` of the honest peers "
        "(each peer's head on the global test set).",
        "",
        "## Setting",
        "",
        "- Data: scikit-learn's 8x8 digits (the MNIST-like dataset available here), 10 peers, each "
        "holding 4 consecutive classes (cyclic, the paper's non-i.i.d. split), 10 local test samples "
        "per class held (kappa). A public 20 % of the training images pre-trains the CNN backbone, "
        "which is then frozen; peers never see those images.",
        "- Head: random at the start (the same for every peer), trained with Adam 1e-3 and L2 5e-3 "
        "on batches of 5, 10 steps per round (the reference takes 1 step per iteration; our 64 "
        "features are smaller than its DL4J conv features, so one Adam step of 1e-3 moves the logits "
        "less), complete graph, 60 rounds.",
        "- Bristle: phi = overlap of class sets, weights centred after each integration, local "
        "training that moves every row while the sent head keeps the rows of classes the peer lacks "
        "(`training.missing_class_rows: keep`), the prioritizer's thirds with alpha 0.4, beta 10.",
        "- Attacks (3 of 10 peers, 30 %): label flip all (c -> c - 1), label flip 2 (the two lowest "
        "held classes swap), the reference's noise (uniform, negative on half of the classes: "
        "`split_noise`), Fang's attacks on Krum and trimmed mean. Baselines: average, median, Krum "
        "with (own + pick) / 2 (f = 3), BRIDGE (b = 3), Mozi.",
        "",
        "## The four claims",
        "",
        "| claim (paper) | paper | measured here | reproduces? |",
        "|---|---|---|---|",
    ]
    worst_attack = min(attacks, key=lambda a: mean_std(metric(acc[("bristle", a)], "final_accuracy_mean"))[0])
    worst = mean_std(metric(acc[("bristle", worst_attack)], "final_accuracy_mean"))[0]
    lines.append(
        f"| converges to a consistent 95 % accuracy in Byzantine environments | 95 % | "
        f"{fmt(all_attack_runs)} over all 5 attacks x 3 seeds; worst attack {short(worst_attack)} "
        f"{fmt(metric(acc[('bristle', worst_attack)], 'final_accuracy_mean'))}; no attack "
        f"{fmt(metric(acc[('bristle', no_attack)], 'final_accuracy_mean'))} | "
        f"{'yes' if worst >= 0.95 else 'no: see below'} |")
    if bristle_r is not None and fastest is not None:
        saving = 1 - bristle_r / reached[fastest]
        lines.append(
            f"| 83 % fewer iterations to 90 % accuracy without attack | -83 % | Bristle "
            f"{fmt(metric(r90[('bristle', no_attack)], 'rounds_to_accuracy'), 1, 0)} rounds, fastest baseline "
            f"({fastest}) {fmt(metric(r90[(fastest, no_attack)], 'rounds_to_accuracy'), 1, 0)}: "
            f"{-saving * 100:+.0f} % | {'yes' if saving >= 0.83 else 'no: see below'} |")
    else:
        lines.append(
            f"| 83 % fewer iterations to 90 % accuracy without attack | -83 % | Bristle "
            f"{fmt(metric(r90[('bristle', no_attack)], 'rounds_to_accuracy'), 1, 0)}, baselines: "
            + ", ".join(f"{d} {fmt(metric(r90[(d, no_attack)], 'rounds_to_accuracy'), 1, 0)}" for d in baselines)
            + " | no: see below |")
    best_ratio = max(ratios)
    lines.append(
        f"| 2.3x the accuracy of the most Byzantine-resilient baselines on non-i.i.d. classes | 2.3x | "
        f"Bristle / best of {', '.join(robust)}: {min(ratios):.2f}x to {best_ratio:.2f}x "
        f"over the {len(ratios)} attacks (table below) | "
        f"{'yes' if best_ratio >= 2.3 else 'no: see below'} |")
    lines.append(
        f"| 90 % less communication | -90 % | a message is the head only: {comm['head']:,} bytes "
        f"against {comm['model']:,} for the whole model ({comm['backbone_params']:,} backbone "
        f"parameters): {-(1 - comm['head'] / comm['model']) * 100:.0f} % | "
        f"{'yes' if comm['head'] / comm['model'] <= 0.1 else 'no: see below'} |")
    best_table, _ = grid(paper, "defense", "adversary", "best_accuracy_mean")
    lines += ["", "## Accuracy (%) by defense and attack (10 peers, 3 attackers)", "", acc_table, "",
              "Best accuracy over the evaluated rounds (a final value below it means the defense "
              "lost accuracy it had reached):", "", best_table, "",
              "## Rounds to 90 % accuracy (first evaluated round, every 5 rounds)", "", r90_table, "",
              "Without attack, rounds to lower targets (from each run's `metrics.jsonl`):", "",
              "| defense | " + " | ".join(f"rounds to {t:.0%}" for t in LOWER_TARGETS) + " |",
              "|---" * (len(LOWER_TARGETS) + 1) + "|"]
    for d in defenses:
        runs = acc[(d, no_attack)]
        lines.append(f"| {d} | " + " | ".join(fmt([rounds_to(r, t) for r in runs], 1, 0)
                                             for t in LOWER_TARGETS) + " |")
    lines += ["", "## Bristle against each baseline", "",
              "Bristle's final accuracy divided by each baseline's (means over seeds), per attack:", "",
              "| baseline | " + " | ".join(short(a) for a in attacks) + " |", "|---" * (len(attacks) + 1) + "|"]
    for d in baselines:
        lines.append(f"| {d} | " + " | ".join(
            f"{mean_of(acc, ('bristle', a), 'final_accuracy_mean') / mean_of(acc, (d, a), 'final_accuracy_mean'):.2f}x"
            for a in attacks) + " |")
    lines += ["", "## The issue's acceptance checks", ""]
    bristle_none = mean_of(acc, ("bristle", no_attack), "final_accuracy_mean")
    mean_none = mean_of(acc, ("mean", no_attack), "final_accuracy_mean")
    lines.append(f"- No attack: Bristle {bristle_none * 100:.1f} against averaging {mean_none * 100:.1f} "
                 f"({(bristle_none - mean_none) * 100:+.1f} points; required: at least -3): "
                 f"{'met' if bristle_none >= mean_none - 0.03 else 'not met'}.")
    for a in attacks:
        gap = mean_of(acc, ("bristle", a), "final_accuracy_mean") - mean_of(acc, ("mean", a), "final_accuracy_mean")
        lines.append(f"- {short(a)} (3 of 10 peers): Bristle {gap * 100:+.1f} points over averaging "
                     f"(required: at least +20): {'met' if gap >= 0.20 else 'not met'}.")
    lines += ["", "## Why the claims that do not reproduce do not", ""]
    best_none = {d: mean_of(acc, (d, no_attack), "best_accuracy_mean") for d in defenses}
    top = max(best_none, key=best_none.get)
    retained = statistics.fmean(mean_of(acc, ("bristle", a), "final_accuracy_mean") for a in attacks) / bristle_none
    lines.append(f"- 95 % under attack: no defense gets near 95 % even without attack here: the best "
                 f"accuracy any rule reaches without attack, at any evaluated round, is "
                 f"{best_none[top] * 100:.1f} % ({top}); Bristle's is {best_none['bristle'] * 100:.1f} %. "
                 f"A frozen CNN pre-trained on {public_samples(paper)} public 8x8 digits is a weaker feature extractor than the "
                 "paper's (pre-trained on EMNIST letters, 28x28). What does carry over is the robustness: "
                 f"under the 5 attacks Bristle keeps on average {retained * 100:.0f} % of its own no-attack "
                 "accuracy.")
    speed = {d: mean_std([rounds_to(r, LOWER_TARGETS[0]) for r in acc[(d, no_attack)]])[0] for d in defenses}
    lines.append(f"- 83 % fewer iterations to 90 %: 90 % is at the edge of this backbone (rounds table: "
                 f"{sum(v is not None for v in metric(r90[('mean', no_attack)], 'rounds_to_accuracy'))} of 3 "
                 f"averaging runs and no other run pass it). To {LOWER_TARGETS[0]:.0%}: "
                 + ", ".join(f"{d} {'never' if v is None else f'{v:.0f} rounds'}" for d, v in speed.items())
                 + ". Bristle gets there about as fast as averaging, and the robust baselines later or never "
                 "on this cyclic split.")
    over_median = sum(mean_of(acc, ("bristle", a), "final_accuracy_mean")
                      >= 2.3 * mean_of(acc, ("median", a), "final_accuracy_mean") for a in attacks)
    strongest = max(robust, key=lambda d: mean_of(acc, (d, no_attack), "final_accuracy_mean"))
    lines.append(f"- 2.3x over the most robust baselines: against median Bristle is at least 2.3x in "
                 f"{over_median} of {len(attacks)} attack columns (table above), but {strongest}, a trimmed "
                 f"mean, keeps {mean_of(acc, (strongest, no_attack), 'final_accuracy_mean') * 100:.1f} % without "
                 "attack on this split and loses less under attack, so the ratio to the best robust baseline "
                 "stays below 2.3x.")
    lines.append("- 90 % less communication comes from transfer learning (only the output layer travels), which "
                 "every rule here shares; the prioritizer does not send less, it integrates fewer of the "
                 "received heads (beta = 10, so not at all with 9 neighbours).")
    failing = [a for a in attacks if mean_of(acc, ("bristle", a), "final_accuracy_mean")
               - mean_of(acc, ("mean", a), "final_accuracy_mean") < 0.20]
    ceiling = max(best_none.values())
    for a in failing:
        per_seed = lambda d: ", ".join(f"{float(r['final_accuracy_mean']) * 100:.1f}"
                                       for r in sorted(acc[(d, a)], key=lambda r: int(r["seed"])))
        needed = mean_of(acc, ("mean", a), "final_accuracy_mean") + 0.20
        lines.append(f"- {short(a)} misses the +20 points: per seed (0, 1, 2) Bristle {per_seed('bristle')}, "
                     f"averaging {per_seed('mean')}. The attack costs averaging "
                     f"{(mean_none - mean_of(acc, ('mean', a), 'final_accuracy_mean')) * 100:.1f} points and "
                     f"Bristle {(bristle_none - mean_of(acc, ('bristle', a), 'final_accuracy_mean')) * 100:.1f}: "
                     f"a 20-point lead needs Bristle at {needed * 100:.1f} %"
                     + (f", above the best accuracy any rule reaches here even without attack ({ceiling * 100:.1f} %), "
                        "so no defense could meet it in this setting" if needed > ceiling else
                        f", above Bristle's own accuracy without attack ({bristle_none * 100:.1f} %)"
                        if needed > bristle_none else "")
                     + (". Where Bristle loses it, see the per-class recall below (\"Where label flip 2 costs "
                        "Bristle\")." if "swap" in a else "."))
    return "\n".join(lines)


LOWER_TARGETS = (0.8, 0.85)


def public_samples(rows: list[dict]) -> int:
    """How many public images pre-trained the backbone (from a run's summary.json)."""
    import json
    row = rows[0]
    summary = json.loads((Path(row["_sweep_dir"]) / row["run_dir"] / "summary.json").read_text())
    return summary["pretrain"]["n_samples"]


def rounds_to(row: dict, target: float):
    """First evaluated round of ``row``'s run whose accuracy_mean reaches ``target``."""
    import json
    sweep_dir = Path(row["_sweep_dir"])
    for line in (sweep_dir / row["run_dir"] / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["accuracy_mean"] >= target:
            return float(record["round"])
    return None


def extra_sections(results: dict[str, list[dict]]) -> list[str]:
    """The tables of the ablation, the 20-peer and the disjoint-backbone studies."""
    lines = []
    ablation = results["bristle_ablation"]
    labels = {"{}": "defaults", '{"phi":"claimed"}': "phi: claimed", '{"phi":3}': "phi: 3",
              '{"center":false}': "center: false"}
    for row in ablation:
        args = row["defense.args"]
        row["variant"] = (labels.get(args, args) if row["training.missing_class_rows"] == "keep"
                          else "missing_class_rows: train")
    table, _ = grid(ablation, "variant", "adversary.count", "final_accuracy_mean")
    r90, _ = grid(ablation, "variant", "adversary.count", "rounds_to_accuracy", scale=1, digits=0)
    lines += ["## What each reading of Bristle costs", "",
              "Bristle's defaults against one change each (`scenarios/studies/bristle_ablation.yaml`); "
              "columns: number of attackers (label flip all). `phi: claimed` is this project's earlier "
              "reading (phi = the number of classes the sender says it holds); `phi: 3` is what the "
              "reference's experiments ran (SimulatedRunner.kt); `missing_class_rows: train` sends the "
              "trained rows of missing classes.", "", "Accuracy (%):", "", table, "",
              "Rounds to 90 %:", "", r90, ""]
    for name, title in (("bristle_twenty", "20 peers, 10 of them attackers (label flip all; columns: attackers)"),
                        ("bristle_disjoint", "Backbone pre-trained on digits 0-4 only (label flip all; "
                                             "columns: attackers)")):
        table, _ = grid(results[name], "defense", "adversary.count", "final_accuracy_mean")
        r90, _ = grid(results[name], "defense", "adversary.count", "rounds_to_accuracy", scale=1, digits=0)
        lines += [f"## {title}", "", f"`scenarios/studies/{name}.yaml`. Accuracy (%):", "", table, "",
                  "Rounds to 90 %:", "", r90, ""]
    half, _ = grid(results["bristle_half"], "defense", "adversary", "final_accuracy_mean")
    lines += ["## 10 peers, 5 of them attackers", "",
              "`scenarios/studies/bristle_half.yaml`: the paper's 10/5 setting, each of its attacks run by 5 "
              "of the 10 peers (Krum and BRIDGE tolerate fewer Byzantine neighbours). Accuracy (%):", "",
              half, ""]
    return lines + settings_section(results["bristle_settings"]) + swap_recall_section(results["bristle_paper"])


def class_recall(run_dir: Path) -> tuple[list, list, list, float]:
    """Per-class recall on the global test set of the final heads of a run's honest peers,
    averaged over them, ``[C]``; the Byzantine peers; the classes they swap under label
    flip 2 (the two lowest each holds); the run's final accuracy. Sweeps keep no heads,
    so the run's scenario is run again in a temporary directory with
    ``output.save_heads`` set to every honest peer (the same numbers: runs are
    deterministic, and the accuracy returned is the re-run's for the caller to check)."""
    import tempfile

    import fedsim
    from fedsim import config
    from fedsim.models.heads import head_logits
    from fedsim.results import RunDir
    from fedsim.topology import Schedule
    from fedsim.world import build_world
    scenario = RunDir(run_dir).read_config()
    with tempfile.TemporaryDirectory() as tmp:
        n_honest = scenario["topology"]["n_peers"] - scenario["adversary"]["count"]
        scenario["output"] = {**scenario.get("output", {}), "dir": str(Path(tmp) / "run"), "plots": False,
                              "save_heads": n_honest}
        summary, out = fedsim.run(scenario, progress=False)
        saved = RunDir(out).read_heads()[-1]
    s = config.from_dict(scenario)
    world = build_world(s, Schedule(s.topology.kind, s.topology.n_peers, s.seed, s.topology.args))
    predictions = head_logits(saved["heads"], world.test_features).argmax(dim=-1)   # [honest, m]
    recall = [float((predictions[:, world.test_labels == c] == c).double().mean())
              for c in range(world.n_classes)]
    swapped = sorted({int(c) for b in world.byzantine_ids for c in sorted(world.peers.classes[b].tolist())[:2]})
    return recall, sorted(world.byzantine_ids), swapped, summary["final"]["accuracy_mean"]


def swap_recall_section(paper: list[dict]) -> list[str]:
    """Where label flip 2 costs Bristle: per-class recall of its honest peers against
    averaging's, per seed (the runs of ``bristle_paper``)."""
    attack = next(r["adversary"] for r in paper if short(r["adversary"]).startswith("label_flip(swap"))
    lines = ["## Where label flip 2 costs Bristle", "",
             "Recall (%) of each class on the global test set, averaged over the honest peers' final heads "
             "(each run repeated with its heads saved), under label flip 2 with 3 attackers; `*` marks a "
             "class that some attacker swaps (the two lowest it holds). On the cyclic split a class is held by "
             "4 peers; where attackers are half or more of a swapped class's holders, Bristle's honest "
             "peers lose that class (recall near 0) in runs where averaging keeps it. Bristle scores a "
             "sender on a familiar class against the receiver's own head, so once the own head is bad "
             "on the class, bad senders are not punished; receivers that lack the class take it as a "
             "foreign class, weighted by how well the sender does on the classes they share, which "
             "the swap leaves intact. Averaging instead mixes every holder's row.", "",
             "| seed | attackers | defense | " + " | ".join(str(c) for c in range(10)) + " | accuracy |",
             "|---" * 14 + "|"]
    for row in sorted((r for r in paper if r["adversary"] == attack and r["defense"] in ("bristle", "mean")),
                      key=lambda r: (int(r["seed"]), r["defense"] != "bristle")):
        recall, byzantine, swapped, accuracy = class_recall(Path(row["_sweep_dir"]) / row["run_dir"])
        if abs(accuracy - float(row["final_accuracy_mean"])) > 1e-9:
            raise RuntimeError(f"re-run of {row['run_dir']} gave {accuracy}, the sweep {row['final_accuracy_mean']}")
        cells_ = [f"{100 * x:.0f}{'*' if c in swapped else ''}" for c, x in enumerate(recall)]
        lines.append(f"| {row['seed']} | {' '.join(map(str, byzantine))} | {row['defense']} | "
                     + " | ".join(cells_) + f" | {100 * float(row['final_accuracy_mean']):.1f} |")
    return lines + [""]


def settings_section(rows: list[dict]) -> list[str]:
    """One table per setting of ``bristle_settings`` (classes per peer, batch size), with
    Bristle's lead over averaging under each attack."""
    import json
    lines = ["## Other class counts and batch 32", "",
             "`scenarios/studies/bristle_settings.yaml`: the table above for Bristle, averaging and BRIDGE "
             "(b = 3) with cyclic 2 and 6 classes per peer (batch 5) and with 4 classes at batch 32, "
             "3 of 10 peers attacking. Final accuracy (%), mean ± std over 3 seeds; the last row is "
             "Bristle minus averaging (points, means).", ""]
    settings = list(dict.fromkeys((r["data.partition"], r["training.batch_size"]) for r in rows))
    for partition, batch in settings:
        part = [r for r in rows if (r["data.partition"], r["training.batch_size"]) == (partition, batch)]
        classes = json.loads(partition)["classes_per_peer"]
        table, cellmap = grid(part, "defense", "adversary", "final_accuracy_mean")
        attacks = list(dict.fromkeys(r["adversary"] for r in part))
        lead = [mean_of(cellmap, ("bristle", a), "final_accuracy_mean") - mean_of(cellmap, ("mean", a),
                                                                                "final_accuracy_mean")
                for a in attacks]
        lines += [f"### {classes} classes per peer, batch {batch}", "", table,
                  "| **Bristle - mean (points)** | " + " | ".join(f"**{100 * x:+.1f}**" for x in lead) + " |", ""]
        met = [short(a) for a, x in zip(attacks[1:], lead[1:]) if x >= 0.20]
        lines += [f"Without attack Bristle is {100 * lead[0]:+.1f} points from averaging (required: at least -3: "
                  f"{'met' if lead[0] >= -0.03 else 'not met'}); it leads by 20+ points under "
                  f"{len(met)} of {len(attacks) - 1} attacks" + (f" ({', '.join(met)})." if met else "."), ""]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bristle_reproduction.md"))
    parser.add_argument("--sweeps", default=str(ROOT / "runs" / "sweeps"))
    args = parser.parse_args(argv)
    results = run_studies(Path(args.sweeps), args.jobs)
    text = document(results, "python benchmarks/bristle_reproduction.py") + "\n" + "\n".join(extra_sections(results))
    Path(args.out).write_text(text.rstrip() + "\n")
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
