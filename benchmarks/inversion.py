"""Gradient-inversion benchmark: how much of a victim's private training images four
inversion attacks rebuild from one head update, without and with sender-side privacy
defenses, and the accuracy each defense costs. Writes docs/inversion.md.

Every number is the mean over the victims of a run (``summary.json``'s ``privacy``
section): 20 peers on a random 4-regular graph, Dirichlet(0.5) labels, cnn backbone,
softmax head, SGD lr 0.05; 6 curious peers attack up to 4 honest neighbours each in
round 1 (at least 16 victims per cell; the script raises the curious count if a graph
gives fewer). Cells: PSNR (dB) / SSIM / label accuracy / label-multiset accuracy,
images paired with the true ones by the Hungarian method.

    python benchmarks/inversion.py            # the seed-0 tables of the four original attacks (~30 min on 2 cores)
    python benchmarks/inversion.py --quick    # a tiny smoke test (digits, few iterations)
    python benchmarks/inversion.py --section feature-space --settings 1x1     # 3 seeds, both datasets
    python benchmarks/inversion.py --section feature-space --datasets digits --settings 4x1 32x10 \
        --attacks retrieval decoder feature_matching
    python benchmarks/inversion.py --section feature-space --datasets digits --settings 1x1 \
        --attacks decoder feature_matching gifd --topk                      # the top-k-aware attacker
    python benchmarks/inversion.py --section privacy-utility                 # accuracy vs epsilon vs PSNR

Each command rewrites only its own marked section of docs/inversion.md.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))                      # this checkout's fedsim, attacks, defenses
sys.path.insert(1, str(Path(__file__).resolve().parent))
import fedsim  # noqa: E402
from _common import table  # noqa: E402

DATASETS = ("fashion_mnist", "digits")
ATTACKS = ("dlg", "inverting_gradients", "gan_latent", "gifd")
GRID = ((1, 1), (4, 1), (1, 5), (4, 5))             # (batch size, local steps)
DEFENSE_SETTING = (4, 1)                            # (batch size, local steps) of the defense table
DEFENSES = (                                        # sender-side privacy defenses and their args
    ("dp_gaussian", {"clip": 1.0, "noise_multiplier": 0.03}),
    ("dp_gaussian", {"clip": 1.0, "noise_multiplier": 0.1}),
    ("topk", {"fraction": 0.02}),
    ("quantize", {"bits": 2}),
)
# One restart per attack (the attacks' defaults are 2, DLG's 1) to fit the time budget;
# every other argument is the attack's default. The same args in every table.
ATTACK_ARGS = {"dlg": {"restarts": 1}, "inverting_gradients": {"restarts": 1},
               "gan_latent": {"restarts": 1}, "gifd": {"restarts": 1}}
QUICK_ATTACK_ARGS = {"dlg": {"iterations": 5}, "inverting_gradients": {"iterations": 10, "restarts": 1},
                     "gan_latent": {"iterations": 10, "restarts": 1},
                     "gifd": {"latent_iterations": 10, "stage_iterations": 5, "restarts": 1}}
MIN_VICTIMS = 16
ACCURACY_ROUNDS = 30
LATER_ROUND = 5


def base_scenario(dataset: str, batch: int, steps: int, curious: int) -> dict:
    return {
        "name": f"inversion-{dataset}", "seed": 0, "rounds": 1,
        "data": {"dataset": dataset, "test_per_class": 5, "partition": {"kind": "dirichlet", "alpha": 0.5}},
        "model": {"backbone": "cnn", "head": "linear"},
        "training": {"optimizer": "sgd", "lr": 0.05, "local_steps": steps, "batch_size": batch},
        "topology": {"kind": "random_regular", "n_peers": 20, "args": {"degree": 4}},
        "defense": {"name": "mean"},
        "privacy": {"curious": curious, "rounds": [1], "victims": 4, "adaptive": False,
                    "attack": {"name": "dlg", "args": {}}, "defense": {"name": "none", "args": {}}},
        "output": {"plots": False, "checkpoint_every": 0},
    }


class Bench:
    def __init__(self, quick: bool):
        self.quick = quick
        self.attack_args = QUICK_ATTACK_ARGS if quick else ATTACK_ARGS
        self.min_victims = 4 if quick else MIN_VICTIMS
        self.curious = 6
        self.log: list[str] = []

    def run(self, dataset: str, batch: int, steps: int, attack: str, defense: tuple = ("none", {}),
            adaptive: bool = False, rounds: int = 1, attack_round: int = 1) -> dict:
        """One run; returns its summary. Raises the curious count until the run has
        ``min_victims`` victims (the next cells start from the raised count)."""
        while True:
            s = base_scenario(dataset, batch, steps, self.curious)
            s["rounds"] = rounds
            p = s["privacy"]
            p["rounds"] = [attack_round]
            p["attack"] = {"name": attack, "args": copy.deepcopy(self.attack_args[attack])}
            p["defense"] = {"name": defense[0], "args": dict(defense[1])}
            p["adaptive"] = adaptive
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as out:
                summary, _ = fedsim.run(s, out=str(Path(out) / "run"), progress=False)
            seconds = time.perf_counter() - t0
            n = summary["privacy"]["n_victims"]
            if n >= self.min_victims:
                break
            if self.curious >= 19:
                raise RuntimeError(f"{dataset}: only {n} victims with {self.curious} curious peers")
            self.curious += 1
            print(f"  only {n} victims: raising privacy.curious to {self.curious}", flush=True)
        pv = summary["privacy"]
        line = (f"{dataset:13s} b{batch} s{steps} {attack:19s} {defense_label(defense):45s} adaptive={adaptive!s:5s} "
                f"rounds={rounds:2d} r{attack_round}: n={n:2d} PSNR {pv['psnr_mean']:5.2f} "
                f"SSIM {pv['ssim_mean']:.3f} labels {pv['label_accuracy']:.3f} / {multiset_labels(summary):.3f} "
                f"acc {summary['final']['accuracy_mean']:.4f}  ({seconds:.0f} s)")
        print(line, flush=True)
        self.log.append(line)
        return summary


def reference_scores(dataset: str, trials: int = 64) -> str:
    """What an attacker gets with no update at all, to read the tables against: batches of 4
    random generator samples Hungarian-paired to 4 random private training images, and the
    mean public image scored against each private image (PSNR dB / SSIM, mean over
    ``4 * trials`` images)."""
    import torch
    from fedsim import config
    from fedsim.api import ArtifactCache
    from fedsim.models.features import cache_dir
    from fedsim.registry import create
    from fedsim.world import build_world
    from fedsim.privacy_metrics import match_images, psnr, ssim
    from fedsim.topology import Schedule

    s = config.from_dict(base_scenario(dataset, 4, 1, 6), "<benchmark>", None)
    world = build_world(s, Schedule(s.topology.kind, s.topology.n_peers, s.seed, s.topology.args),
                        keep_images=True)
    cache = ArtifactCache(cache_dir(), {"features": world.info["feature_key"], "shape": list(world.image_shape)})
    generator = create("inversions", "gifd").prepare(world.public_images, cache, world.seed)
    g = torch.Generator().manual_seed(1)
    as_nchw = lambda x: x.reshape(x.shape[0], 1, *x.shape[-2:]).float()  # noqa: E731
    mean_image = world.public_images.float().mean(dim=0, keepdim=True)
    sample_psnr, sample_ssim, mean_psnr, mean_ssim = [], [], [], []
    for _ in range(trials):
        true = world.train_images[torch.randint(0, world.train_images.shape[0], (4,), generator=g)].float()
        with torch.no_grad():
            fake = generator(torch.randn(4, generator.latent_dim, generator=g))
        r, t = (torch.as_tensor(i) for i in match_images(fake, true))
        sample_psnr += psnr(as_nchw(fake[r]), as_nchw(true[t]), data_range=1.0).tolist()
        sample_ssim += ssim(as_nchw(fake[r]), as_nchw(true[t])).tolist()
        mean = mean_image.expand_as(true)
        mean_psnr += psnr(as_nchw(mean), as_nchw(true), data_range=1.0).tolist()
        mean_ssim += ssim(as_nchw(mean), as_nchw(true)).tolist()
    avg = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return (f"random generator samples (Hungarian-paired, batches of 4): {avg(sample_psnr):.2f} dB / "
            f"{avg(sample_ssim):.3f}; the mean public image: {avg(mean_psnr):.2f} dB / {avg(mean_ssim):.3f}")


def start_head_errors(summary: dict) -> str:
    """Median (and max) over victims of ``||estimate - true start|| / ||true update||``. The
    median, not the mean: a victim whose batch is already fitted sends a near-zero update
    (softmax saturation), which makes its ratio huge."""
    errors = [v["start_head_error"] for v in summary["privacy"]["per_victim"]]
    return f"{statistics.median(errors):.2f} ({max(errors):.2f})"


def multiset_labels(summary: dict) -> float:
    """Mean over victims of the order-free label accuracy (what label inference recovered,
    whatever the image pairing)."""
    victims = summary["privacy"]["per_victim"]
    return sum(v["label_multiset_accuracy"] for v in victims) / len(victims)


def cell(summary: dict) -> str:
    p = summary["privacy"]
    return (f"{p['psnr_mean']:.2f} / {p['ssim_mean']:.3f} / {p['label_accuracy']:.2f} / "
            f"{multiset_labels(summary):.2f}")


def defense_label(defense: tuple) -> str:
    name, args = defense
    return name + (" (" + ", ".join(f"{k} {v}" for k, v in args.items()) + ")" if args else "")


# The feature-space section: every attack at its defaults (gifd with the tables' one
# restart, the "today's gifd" the issue compares with), distinct victims, 3 seeds.
STRONG_ATTACKS = (("retrieval", {}), ("decoder", {}), ("feature_matching", {}), ("idlg", {}),
                  ("gifd", {"restarts": 1}))
STRONG_SETTINGS = ((1, 1),)
SEEDS = (0, 1, 2)
KEPT_ONLY_ATTACKS = ("retrieval", "decoder", "feature_matching")   # those with the top-k-aware form
STRONG_MARKERS = "<!-- feature-space section {settings}: begin -->", "<!-- feature-space section {settings}: end -->"


def distinct_victims(summary: dict) -> list[dict]:
    """The per-victim scores with each (victim, round) once: several curious peers may
    attack the same neighbour, whose images would otherwise count several times."""
    seen, kept = set(), []
    for v in summary["privacy"]["per_victim"]:
        if (v["victim"], v["round"]) not in seen:
            seen.add((v["victim"], v["round"]))
            kept.append(v)
    return kept


def seed_stats(values: list[float], digits: int = 2) -> str:
    """``mean ± std [95 % CI]`` over seeds (sample std, Student t)."""
    from scipy.stats import t as student_t
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return f"{mean:.{digits}f}"
    std = statistics.stdev(values)
    half = student_t.ppf(0.975, n - 1) * std / n ** 0.5
    return f"{mean:.{digits}f} ± {std:.{digits}f} [{mean - half:.{digits}f}, {mean + half:.{digits}f}]"


def strong_section(datasets, settings, seeds, attacks, quick: bool, defense: tuple = ("none", {})) -> str:
    """Run every (dataset, setting, seed, attack); the Markdown section with PSNR and SSIM
    over the distinct victims (mean over victims per seed, then over seeds) and the paired
    per-seed difference of the best attack to gifd."""
    parts, log = [], []
    for dataset in datasets:
        for batch, steps in settings:
            per_attack = {}
            for name, args in attacks:
                label = name + (" (kept_only)" if args.get("kept_only") else "")
                per_seed = []
                for seed in seeds:
                    s = base_scenario(dataset, batch, steps, 6)
                    s["seed"] = seed
                    s["privacy"]["attack"] = {"name": name, "args": dict(args)}
                    s["privacy"]["distinct_victims"] = True
                    s["privacy"]["defense"] = {"name": defense[0], "args": dict(defense[1])}
                    s["privacy"]["adaptive"] = defense[0] != "none"
                    t0 = time.perf_counter()
                    with tempfile.TemporaryDirectory() as out:
                        summary, _ = fedsim.run(s, out=str(Path(out) / "run"), progress=False)
                    victims = distinct_victims(summary)
                    scores = {k: statistics.fmean(v[k] for v in victims)
                              for k in ("psnr_mean", "ssim_mean", "label_multiset_accuracy")}
                    per_seed.append({**scores, "n": len(victims)})
                    line = (f"{dataset} b{batch} s{steps} seed {seed} {label:29s} {len(victims)} victims: "
                            f"PSNR {scores['psnr_mean']:.2f} SSIM {scores['ssim_mean']:.3f} "
                            f"({time.perf_counter() - t0:.0f} s)")
                    print(line, flush=True)
                    log.append(line)
                per_attack[label] = per_seed
            rows = [[name, seed_stats([r["psnr_mean"] for r in per_seed]),
                     seed_stats([r["ssim_mean"] for r in per_seed]),
                     f"{statistics.fmean(r['label_multiset_accuracy'] for r in per_seed):.2f}",
                     " / ".join(str(r["n"]) for r in per_seed)] for name, per_seed in per_attack.items()]
            text = (f"### {dataset}, batch {batch} x {steps} step\n\n"
                    + table(["attack", "PSNR dB", "SSIM", "label multiset", "victims per seed"], rows) + "\n")
            if "gifd" in per_attack and len(per_attack) > 1:
                best = max((n for n in per_attack if n != "gifd"),
                           key=lambda n: statistics.fmean(r["psnr_mean"] for r in per_attack[n]))
                gain = [b["psnr_mean"] - g["psnr_mean"] for b, g in zip(per_attack[best], per_attack["gifd"])]
                text += (f"\nBest ({best}) minus gifd, paired per seed (dB): {seed_stats(gain)}; "
                         f"per seed {', '.join(f'{x:+.2f}' for x in gain)}.\n")
            parts.append(text)
    setting_args = " ".join(f"{b}x{s}" for b, s in settings)
    dataset_args = "" if set(datasets) == set(DATASETS) else " --datasets " + " ".join(datasets)
    names_run = list(dict.fromkeys(n for n, _ in attacks))
    attack_args = "" if len(names_run) == len(STRONG_ATTACKS) else " --attacks " + " ".join(names_run)
    against = "" if defense[0] == "none" else f", against {defense_label(defense)} (adaptive attacker)"
    defense_arg = "" if defense[0] == "none" else " --topk"
    head = (f"## Feature-space attacks, batch x steps {setting_args}{against}, seeds {', '.join(map(str, seeds))}\n\n"
            "Regenerate this section (one torch thread):\n\n"
            f"    python benchmarks/inversion.py --section feature-space{dataset_args} --settings {setting_args}"
            f"{attack_args}{defense_arg}\n\n"
            "The settings of the tables below (20 peers, 6 curious peers, 4 victims each, round 1), "
            "with each victim counted once (several curious peers may attack the same neighbour): "
            "PSNR / SSIM are means over the distinct victims of a seed, then mean ± std over the "
            "seeds with the 95 % confidence interval of the mean (Student t). Attacks at their "
            "defaults; gifd with one restart, as in the tables below. *label multiset*: share of "
            "the true labels named (mean over seeds).\n")
    return head + "\n" + "\n".join(parts)


SEED0_MARKERS = "<!-- seed-0 tables: begin -->", "<!-- seed-0 tables: end -->"
UTILITY_STUDY = ROOT / "scenarios" / "studies" / "privacy_utility.yaml"
UTILITY_BEGIN, UTILITY_END = "<!-- privacy-utility section: begin -->", "<!-- privacy-utility section: end -->"


def utility_section(out_dir: Path) -> str:
    """Run the privacy-utility study (``fedsim sweep``, resumable) and tabulate, per cell,
    epsilon over the run, final accuracy and the attack's PSNR / SSIM over seeds."""
    import json
    import subprocess
    subprocess.run([sys.executable, "-m", "fedsim.cli", "sweep", str(UTILITY_STUDY), "--jobs", "1",
                    "--out", str(out_dir)], check=True, cwd=ROOT)
    sweep = json.loads((out_dir / "sweep.json").read_text())
    rows = []
    for cell in sweep["cells"]:
        summaries = [json.loads((out_dir / run / "summary.json").read_text()) for run in cell["runs"].values()]
        privacy = summaries[0]["privacy"]
        eps = privacy.get("epsilon")
        epsilon = "none (no DP)" if eps is None else ("inf" if eps["run"] is None else f"{eps['run']:.4g}")
        per_round = "" if eps is None or eps["per_round"] is None else f"{eps['per_round']:.4g}"
        victims = [distinct_victims(s) for s in summaries]
        rows.append([defense_label((privacy["defense"], {k: v for k, v in privacy["defense_params"].items()
                                                          if k in ("clip", "noise_multiplier")})),
                     per_round, epsilon,
                     seed_stats([s["final"]["accuracy_mean"] for s in summaries], digits=4),
                     seed_stats([statistics.fmean(v["psnr_mean"] for v in vs) for vs in victims]),
                     seed_stats([statistics.fmean(v["ssim_mean"] for v in vs) for vs in victims], digits=3)])
    return ("## Privacy-utility curve: dp_gaussian, accuracy vs epsilon vs PSNR\n\n"
            "Regenerate: `python benchmarks/inversion.py --section privacy-utility` (runs "
            "`scenarios/studies/privacy_utility.yaml`: the shipped privacy scenario, digits, batch 4 x 1 "
            f"step, {summaries[0]['rounds']} rounds, seeds {', '.join(map(str, sweep['seeds']))}; the `decoder` "
            "attack on the round-1 updates, adaptive, each victim once). epsilon at delta 1e-5 "
            "(README, \"Differential privacy of dp_gaussian\"); accuracy: final `accuracy_mean`; "
            "mean ± std [95 % CI] over seeds.\n\n"
            + table(["defense", "epsilon 1 round", "epsilon run", "accuracy", "PSNR dB", "SSIM"], rows) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke test: digits, one setting, few iterations")
    ap.add_argument("--section", choices=("all", "feature-space", "privacy-utility"), default="all",
                    help="feature-space / privacy-utility: only that 3-seed section of the document")
    ap.add_argument("--sweep-dir", default=str(ROOT / "runs" / "sweeps" / "privacy_utility"),
                    help="where the privacy-utility study's runs go (resumable)")
    ap.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS),
                    help="datasets of the feature-space section")
    ap.add_argument("--settings", nargs="+", default=[f"{b}x{s}" for b, s in STRONG_SETTINGS],
                    help="feature-space section: batch x local steps, e.g. 1x1 4x1 32x10")
    ap.add_argument("--attacks", nargs="+", default=[n for n, _ in STRONG_ATTACKS],
                    choices=[n for n, _ in STRONG_ATTACKS], help="feature-space section: the attacks")
    ap.add_argument("--topk", action="store_true",
                    help="feature-space section against top-k 2%% (adaptive): the attacks that replay "
                         "top-k and their top-k-aware forms (kept_only)")
    ap.add_argument("--out", default=None, help="Markdown file to write (default docs/inversion.md; "
                                                   "--quick writes none unless given)")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)  # the attacks' reductions: same numbers, far less time under load
    out = args.out or (None if args.quick else str(ROOT / "docs" / "inversion.md"))
    if args.section == "privacy-utility":
        section = utility_section(Path(args.sweep_dir))
        print(section)
        if out:
            from _common import write_section
            write_section(Path(out), UTILITY_BEGIN, UTILITY_END, section, after="# Gradient inversion benchmark")
        return
    if args.section == "feature-space":
        attacks = tuple((n, {**a, **({"iterations": 5} if args.quick and n == "idlg" else {})})
                        for n, a in STRONG_ATTACKS if n in args.attacks)
        defense = ("none", {})
        if args.topk:
            defense = ("topk", {"fraction": 0.02})
            attacks = tuple(x for n, a in attacks for x in (((n, a), (n, {**a, "kept_only": True}))
                                                            if n in KEPT_ONLY_ATTACKS else ((n, a),)))
        settings = tuple(tuple(int(x) for x in text.split("x")) for text in args.settings)
        section = strong_section(("digits",) if args.quick else tuple(args.datasets), settings,
                                 SEEDS[:2] if args.quick else SEEDS, attacks, args.quick, defense)
        print(section)
        if out:
            from _common import write_section
            begin, end = (m.format(settings=" ".join(args.settings) + (" topk" if args.topk else ""))
                          for m in STRONG_MARKERS)
            write_section(Path(out), begin, end, section, after="# Gradient inversion benchmark")
        return
    bench = Bench(args.quick)
    datasets = ("digits",) if args.quick else DATASETS
    grid = (DEFENSE_SETTING,) if args.quick else GRID
    accuracy_rounds = 2 if args.quick else ACCURACY_ROUNDS
    later_round = 2 if args.quick else LATER_ROUND
    t_start = time.perf_counter()
    sections = []
    for dataset in datasets:
        reference = reference_scores(dataset, trials=4 if args.quick else 64)
        print(f"{dataset}: no-update reference: {reference}", flush=True)
        # 1. No defense: every (batch, steps) x attack. The defense setting's DLG run goes on
        #    for the accuracy rounds: the no-defense accuracy (round 1 is the same either way).
        rows = []
        results = {}
        for batch, steps in grid:
            row = [str(batch), str(steps)]
            for attack in ATTACKS:
                rounds = accuracy_rounds if (attack == "dlg" and (batch, steps) == DEFENSE_SETTING) else 1
                results[(batch, steps, attack)] = summary = bench.run(dataset, batch, steps, attack, rounds=rounds)
                row.append(cell(summary))
            row.append(str(min(results[(batch, steps, a)]["privacy"]["n_victims"] for a in ATTACKS)))
            rows.append(row)
        no_defense = table(["batch", "steps", *ATTACKS, "victims"], rows)

        # 2. Privacy defenses at one setting, adaptive attacker; the DLG run gives the accuracy.
        batch, steps = DEFENSE_SETTING
        base_accuracy = results[(batch, steps, "dlg")]["final"]["accuracy_mean"]
        rows = [["none", *(cell(results[(batch, steps, a)]) for a in ATTACKS), f"{base_accuracy:.4f}", "0"]]
        for defense in DEFENSES:
            row = [defense_label(defense)]
            accuracy = None
            for attack in ATTACKS:
                rounds = accuracy_rounds if attack == "dlg" else 1
                summary = bench.run(dataset, batch, steps, attack, defense, adaptive=True, rounds=rounds)
                if attack == "dlg":
                    accuracy = summary["final"]["accuracy_mean"]
                row.append(cell(summary))
            rows.append(row + [f"{accuracy:.4f}", f"{accuracy - base_accuracy:+.4f}"])
        defended = table(["defense", *ATTACKS, f"accuracy r{accuracy_rounds}", "cost"], rows)

        # 3. A later round: the attacker estimates the victim's start head by its own.
        rows = []
        for attack in ATTACKS:
            summary = bench.run(dataset, batch, steps, attack, rounds=later_round, attack_round=later_round)
            rows.append([attack, cell(results[(batch, steps, attack)]), cell(summary), start_head_errors(summary)])
        later = table(["attack", "round 1", f"round {later_round}",
                       f"start-head error r{later_round}: median (max)"], rows)
        sections.append((dataset, reference, no_defense, defended, later))
        for text in (no_defense, defended, later):
            print("\n" + text + "\n", flush=True)
    minutes = (time.perf_counter() - t_start) / 60
    print(f"total {minutes:.1f} min")
    if out:
        from _common import write_section
        write_section(Path(out), *SEED0_MARKERS, render(sections, minutes, bench), after="# Gradient inversion benchmark")
        print(f"wrote {out}")


def render(sections, minutes: float, bench: Bench) -> str:
    """The Markdown document (tables plus the fixed text around them)."""
    b, s = DEFENSE_SETTING
    parts = [HEADER.format(minutes=minutes, curious=bench.curious, b=b, s=s, rounds=ACCURACY_ROUNDS,
                           later=LATER_ROUND,
                           args="; ".join(f"{a} `{ATTACK_ARGS[a]}`" for a in ATTACKS),
                           defenses="; ".join(defense_label(d) for d in DEFENSES))]
    for dataset, reference, no_defense, defended, later in sections:
        parts.append(f"## {dataset}\n\nReference without any update (PSNR / SSIM): {reference}.\n\n### No defense (PSNR dB / SSIM / paired label accuracy / label-multiset accuracy)\n\n{no_defense}\n\n"
                     f"### Privacy defenses, batch {b} x {s} step, adaptive attacker\n\n{defended}\n\n"
                     f"### Round 1 vs round {LATER_ROUND} (batch {b} x {s} step, no defense)\n\n{later}\n")
    parts.append(READING)
    return "\n".join(parts)


HEADER = """## The four original attacks, seed 0

Regenerate (about {minutes:.0f} minutes on 2 CPU cores shared with another job; the first run also
pre-trains the backbones and the attack generators, which are then cached):

    python benchmarks/inversion.py

Settings: 20 peers, random 4-regular graph, Dirichlet(0.5) partition, `cnn` backbone
(frozen, pre-trained on the public split), softmax (`linear`) head, SGD lr 0.05, plain
averaging. {curious} curious peers attack up to 4 honest neighbours each in round 1
(`privacy.rounds: [1]`): at least 16 victims per cell (the column *victims*). Each cell is the
mean over the victims of PSNR (dB) / SSIM / label accuracy / label-multiset accuracy. Every
rebuilt image is paired with a true one by the Hungarian method on pixel MSE; *label accuracy*
counts the pairs whose labels agree (so it also needs the images right), *label-multiset
accuracy* is the share of the true labels the attack named, in any order (label inference alone). Attack arguments (the same in every table):
{args}, every other argument at the attack's default (DLG 100 L-BFGS iterations;
Inverting Gradients 200 Adam steps, TV 1e-2; gan_latent 200 latent steps; GIFD 150 latent
steps then 50 steps per generator block, l1 radius 0.1 of the block input's norm).
The generator of gan_latent and GIFD is a small DCGAN trained once per dataset on the public
split (cached in `$FEDSIM_CACHE`). One restart per attack (the defaults are 2 for all but
DLG) was chosen to fit a 35-minute budget before timing; the run took {minutes:.1f} minutes,
so the defaults would fit too (roughly doubling the attack time).

Defense table: batch {b} x {s} local step, the adaptive attacker (`privacy.adaptive: true`),
defenses {defenses}. *accuracy r{rounds}*: final `accuracy_mean` of the same scenario run for
{rounds} rounds (every honest peer applies the defense to every update it sends); *cost*:
that minus the accuracy without a defense.
"""

READING = """
## Reading

The numbers above are for seed 0; the text below was written from them.

**What leaks without a defense.** Only the generative attacks rebuild recognisable images.
On digits GIFD reaches 16.3 dB / SSIM 0.84 for a single sample (batch 1, 1 step) and
14.4 dB / 0.72 at batch 4, far above the no-update reference (random generator samples
9.9 dB / 0.39). On fashion_mnist the best cell (GIFD, batch 1: 11.2 dB / 0.27) is hardly
above the mean public image in PSNR (11.0 dB) and twice the SSIM of random samples: the
attack recovers the class and the coarse shape, not the picture. DLG and Inverting Gradients
search pixels directly through the frozen CNN and stay at 5.5-9.5 dB, below the mean image:
a head-only update reveals the backbone features of the batch (64 numbers per sample; for one
sample they are even recovered exactly by `attacks/inversion/analytic.py`), many images share
those features, and without an image prior the pixel search lands on one that is not the
victim's. Labels: with one local step the iDLG/LLG counting used by inverting_gradients,
gan_latent and gifd recovers the label multiset completely at batch 1 and 4; DLG's jointly
optimised soft labels do not (fashion_mnist batch 1: 0 of 16, although its features reach a
cosine of about 0.94 with the true ones, DLG's known label failure that iDLG fixed). The
*paired* label accuracy is lower than the multiset one whenever the images are poor, because
the pairing is by pixels. Five local steps hurt every attack (GIFD: -3.5 to -6 dB on digits,
-0.9 to -1.6 dB on fashion_mnist): five batches are summed into one update, the replay is an
unrolled five-step optimisation, and which sample was in which step is lost; the label
counting recovers only 0.48-0.66 of the labels, since it measures each class's impact at the
start head while the head moves during the steps.

**GIFD vs latent-only search (gan_latent).** The GIFD paper (Fang et al. 2023) reports GIFD
above latent-space search (GIAS's first stage, GGL). Our numbers agree on digits with one
local step (+1.5 dB / +0.04 SSIM at batch 1, +1.0 dB / +0.02 at batch 4) but hardly or not
elsewhere: +0.2 dB on fashion_mnist with one step, and -0.05 to -0.26 dB with five steps on
both datasets (and a tie in round 5). Why: (1) our prior is a 3-block DCGAN trained for 1,500
steps on the public split (on fashion_mnist its random samples score only 9.3 dB / 0.13),
where the paper uses StyleGAN2 / BigGAN with many intermediate layers that stay on a good image
manifold; GIFD here has only two intermediate stages, the last feeding one transposed
convolution and a sigmoid. (2) The l1 radii (0.1 of each sample's block-input l1 norm, our
scale-free default; the paper's radii are absolute and tuned per layer) bound how far the
stages can leave the generator's range. (3) Above all, a head-only update with a frozen
backbone constrains only the backbone features of the batch: once the latent search matches
them, the intermediate stages lower the matching loss further by changing what the features
do not see, and "best stage by matching loss" then picks an image that fits the update
better without being closer to the victim's; with 5 steps (up to 20 images summed into one
update) that is the common case. (4) One restart and short schedules (CPU budget).

**Defenses (batch 4 x 1 step, adaptive attacker).** Every defense at these strengths removes
label inference (multiset 0.22-0.31 on fashion_mnist, 0.25-0.50 on digits, against 1.00) and
brings the generative attacks down to the no-update reference (fashion_mnist 9.0-9.5 dB /
0.11-0.14 against random samples 9.3 / 0.13; digits 9.5-10.3 dB / 0.36-0.40 against
9.9 / 0.39): what is left is what the generator draws for a wrongly inferred class. The
accuracy they cost after 30 rounds: top-k 2% and 2-bit quantisation nothing on fashion_mnist
and 0.7-2.8 points on digits; DP with noise multiplier 0.03 1.5-1.9 points; noise multiplier
0.1 4.2 points on fashion_mnist and 16.2 on digits (digits' updates are smaller, norm about
0.3 against the clip 1.0, so the same noise is relatively 3-4x larger). The adaptive attacker
replays the defense's expectation over the sender's secret draws
(`PrivacyDefense.replay`): the clipping for dp_gaussian (which only DLG's L2
objective notices; the other attacks match by cosine, which is scale-free), the identity for
the unbiased quantiser, top-k itself for top-k. DLG's labels get better under DP on
fashion_mnist (multiset 0.39 to 0.70-0.75): clipping to norm 1 rescales the observed and the
dummy update alike, which seems to help its L-BFGS; its images get worse. Caveats: one round-1
update per victim; top-k and quantisation come with no guarantee (the top-k-aware attacker,
which matches only the entries that were sent, is in its own section above); the epsilon of
the DP rows is in the privacy-utility section above (noise multipliers 0.03 and 0.1 give no
meaningful guarantee).

**Round 1 vs a later round.** In round 1 the attacker knows the victim's start head exactly
(every peer starts from the common initial head). From round 2 on it cannot, and fedsim
gives it its best estimate, the curious peer's *own* head at the start of the round
(`fedsim/privacy.py`); the summary reports the estimate's error relative to the victim's true
update. In round 5 that error is a median 0.55 (fashion_mnist) / 0.50 (digits) of the update,
so the "update" the attacker inverts, H1 minus its estimate, mixes the victim's gradient with
the neighbourhood's disagreement. The attacks lose 0.8-1.5 dB on fashion_mnist and 1.0-2.6 dB
on digits, label inference falls from 1.00 to 0.56 / 0.88, and GIFD's edge over gan_latent
disappears. (One fashion_mnist victim sent an update of norm 0.003 in round 5, a batch its
head already fitted: its ratio is 197, hence the median.) Only DLG does not lose on digits
(6.6 to 7.5 dB), from a low round-1 level.
"""


if __name__ == "__main__":
    main()
