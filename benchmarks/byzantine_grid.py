"""The Byzantine robustness grid: final honest accuracy of every (defense, attack) pair.

    python benchmarks/byzantine_grid.py [--rounds 30] [--defenses mean,krum] [--attacks none,alie]
                                        [--scenario scenarios/byzantine_grid.yaml]
                                        [--out docs/byzantine_grid_table.md]

Every pair runs in this process with ``fedsim.run(scenario, overrides=...)`` into a
temporary directory, evaluating only the last round. The scenario fixes the data,
model, topology and adversary fraction; this script only sets ``defense.name``,
``defense.args``, ``adversary.attack`` (each attack with its default arguments) and,
for the attack ``none``, ``adversary.fraction=0``. Prints a Markdown table of the
final ``accuracy_mean`` over honest peers (defenses as rows, attacks as columns) and,
with ``--out``, writes it to FILE together with the command that regenerates it.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
import tempfile
import time
from pathlib import Path

import fedsim

SCENARIO = "scenarios/byzantine_grid.yaml"

# Arguments each defense gets in the grid (the caption of the table repeats them).
# The grid has 20 peers on a complete graph, so every peer merges n = 20 candidates
# (its own head and 19 received), 5 of the 19 from Byzantine peers.
DEFENSE_ARGS: dict[str, dict] = {
    "bristle": {},                      # paper defaults: alpha 0.4, beta 10, theta 10
    "mean": {},
    "median": {},
    "trimmed_mean": {"f": 5},
    "krum": {"f": 5},
    # Bulyan needs n >= 4f + 3: with n = 20 candidates the largest such f is 4, one
    # fewer than the 5 Byzantine neighbours.
    "bulyan": {"f": 4},
    # Adaptive radius clipping the f farthest neighbours: f = 5 Byzantine neighbours
    # (the default f = 1 of the authors' code clips one and passes the other four).
    "clipped_gossip": {"f": 5},
    "mozi": {},                         # rho 0.5, alpha 0.5
    "balance": {"total_rounds": None},  # filled with --rounds
}

ATTACKS = ("none", "gaussian", "sign_flip", "label_flip", "alie", "ipm", "fang_krum", "min_max",
           "bristle_evasion")


def yaml_flow(args: dict) -> str:
    """``{f: 5, total_rounds: 30}``: a dict as a one-line YAML mapping for ``--set``."""
    return "{" + ", ".join(f"{k}: {'null' if v is None else v}" for k, v in args.items()) + "}"


def defense_args(defense: str, rounds: int) -> dict:
    args = dict(DEFENSE_ARGS.get(defense, {}))
    if defense == "balance":
        args["total_rounds"] = rounds
    return args


def overrides_for(defense: str, attack: str, rounds: int) -> list[str]:
    """The ``--set`` overrides of one grid cell."""
    out = [f"rounds={rounds}", f"eval_every={rounds}", "output.plots=false",
           "output.checkpoint_every=0", f"defense.name={defense}",
           f"defense.args={yaml_flow(defense_args(defense, rounds))}"]
    if attack == "none":
        out.append("adversary.fraction=0")
    else:
        out += [f"adversary.attack.name={attack}", "adversary.attack.args={}"]
    return out


def run_cell(scenario: str, defense: str, attack: str, rounds: int) -> float:
    """Final ``accuracy_mean`` of one (defense, attack) run."""
    with tempfile.TemporaryDirectory() as tmp:
        summary, _ = fedsim.run(scenario, overrides=overrides_for(defense, attack, rounds),
                                out=str(Path(tmp) / "run"), progress=False)
    return float(summary["final"]["accuracy_mean"])


def markdown_table(defenses: list[str], attacks: list[str], accuracy: dict) -> str:
    header = "| defense | " + " | ".join(attacks) + " |"
    rule = "|---|" + "|".join("---:" for _ in attacks) + "|"
    rows = [f"| {d} | " + " | ".join(f"{accuracy[d, a]:.3f}" for a in attacks) + " |"
            for d in defenses]
    return "\n".join([header, rule] + rows)


def caption(defenses: list[str], rounds: int) -> str:
    parts = [f"{d} ({yaml_flow(defense_args(d, rounds))[1:-1] or 'defaults'})" for d in defenses]
    return ("Final accuracy_mean (honest peers, global test set) after "
            f"{rounds} rounds. Defense arguments: " + "; ".join(parts) + ". "
            "Attacks use their default arguments; `none` sets adversary.fraction=0.")


def quiet_progress_log() -> None:
    """Keep fedsim's per-run log lines off stderr (warnings still show): fedsim adds its
    own stderr handler only when the ``fedsim`` logger has none."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    logging.getLogger("fedsim").addHandler(handler)


def parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", default=SCENARIO)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--defenses", type=parse_list, default=list(DEFENSE_ARGS))
    p.add_argument("--attacks", type=parse_list, default=list(ATTACKS))
    p.add_argument("--out", default=None, help="also write the table (Markdown) to this file")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    quiet_progress_log()

    accuracy, started = {}, time.perf_counter()
    for defense in args.defenses:
        for attack in args.attacks:
            cell_start = time.perf_counter()
            accuracy[defense, attack] = run_cell(args.scenario, defense, attack, args.rounds)
            print(f"{defense:>15} x {attack:<16} accuracy_mean {accuracy[defense, attack]:.4f}  "
                  f"({time.perf_counter() - cell_start:.1f} s)", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started

    command = "python benchmarks/byzantine_grid.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    table = markdown_table(args.defenses, args.attacks, accuracy)
    text = (f"{table}\n\n{caption(args.defenses, args.rounds)}\n\n"
            f"Scenario `{args.scenario}`; regenerate with `{command.strip()}` "
            f"({len(accuracy)} runs, {elapsed:.0f} s).\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
