"""Helpers shared by the benchmark scripts: run one scenario in a fresh process and
report its loop time per round and the process's peak resident memory."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import fedsim
scenario = json.loads(sys.argv[1])
summary, run_dir = fedsim.run(scenario, progress=False)
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"loop_time_s": summary["loop_time_s"], "rounds": summary["rounds"],
                  "accuracy": summary["final"]["accuracy_mean"], "peak_mib": peak_kib / 1024,
                  # the last metrics row's clock stops before that row's evaluation
                  "rounds_time_s": summary["final"]["wall_time_s"],
                  "setup_s": summary["wall_time_s"] - summary["loop_time_s"]}))
"""


def run_child(scenario: dict, timeout: float = 3600) -> dict:
    """Run ``scenario`` in a new Python process; returns its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        scenario = dict(scenario)
        scenario.setdefault("output", {})
        scenario["output"] = {**scenario["output"], "dir": str(Path(tmp) / "run"), "plots": False,
                              "checkpoint_every": 0}
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(scenario)], capture_output=True,
                              text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in row] for row in [headers] + rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    fmt = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(cells[0]), sep] + [fmt(r) for r in cells[1:]])


def write_section(path: Path, begin: str, end: str, section: str, after: str = None) -> None:
    """Replace the text between the markers ``begin`` and ``end`` of the document at
    ``path`` with ``section`` (markers kept); the first time, insert the marked section
    after the line that starts with ``after`` (or after the title line). The rest of the
    file is kept."""
    path = Path(path)
    old = path.read_text()
    block = f"{begin}\n{section.rstrip()}\n{end}"
    if begin in old and end in old:
        text = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        start = old.find(after) if after else -1
        line_end = old.find("\n", max(start, 0))
        cut = len(old) if line_end < 0 else line_end + 1
        text = f"{old[:cut]}\n{block}\n{old[cut:]}"
    path.write_text(text)
