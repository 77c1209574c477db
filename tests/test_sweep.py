"""Studies: fedsim sweep (cells, seeds, parallel workers, resume after a kill, Ray), its
tables against statistics worked out by hand, its figures; peers.csv, TensorBoard events,
fedsim init and fedsim compare."""
import csv
import json
import math
import os
import signal
import statistics
import struct
import subprocess
import sys
import time

import networkx as nx
import pytest
import yaml

import fedsim
from fedsim.cli import main
from tests.conftest import ROOT, tiny_scenario

QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
# The quickstart, shortened: 3 rounds, 1 pre-training epoch (3 seeds pre-train 3 backbones).
SHORT = ["--set", "rounds=3", "--set", "model.pretrain.epochs=1", "--set", "output.plots=false"]
TIMING = {"wall_time_s", "loop_time_s"}


def write_sweep(tmp_path, body: dict, name="sweep.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def table_entries(markdown: str, section: str) -> dict:
    """{(row label, column header): entry text} of the table under ``## ...section...``."""
    lines = markdown.split(f"(`{section}`)", 1)[1].strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    out = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        out.update({(cells[0], header[j]): cells[j] for j in range(1, len(cells))})
    return out


@pytest.fixture(scope="module")
def quickstart_sweep(tmp_path_factory):
    """A 2 x 2 x 3-seed sweep of the quickstart, run once with two worker processes."""
    tmp = tmp_path_factory.mktemp("sweep")
    path = write_sweep(tmp, {"name": "qs", "base": str(QUICKSTART),
                             "axes": {"defense.name": ["mean", "median"], "adversary.fraction": [0.1, 0.25]},
                             "seeds": 3})
    out = tmp / "out"
    assert main(["sweep", str(path), *SHORT, "--jobs", "2", "--out", str(out), "--no-progress"]) == 0
    return path, out


@pytest.mark.slow
def test_quickstart_sweep_writes_runs_tables_and_figures(quickstart_sweep):
    _, out = quickstart_sweep
    runs = sorted(p for p in (out / "runs").iterdir() if p.is_dir())
    assert len(runs) == 12 and all((r / "summary.json").exists() and (r / "peers.csv").exists() for r in runs)
    # the features were computed once per seed before the workers started: every run loaded them
    assert all("features from cache" in (r / "run.log").read_text() for r in runs)
    results = read_csv(out / "results.csv")
    assert len(results) == 12
    assert {(r["defense.name"], r["adversary.fraction"], r["seed"]) for r in results} == \
        {(d, f, s) for d in ("mean", "median") for f in ("0.1", "0.25") for s in ("0", "1", "2")}
    for row in results:  # each row is its run's summary
        summary = json.loads((out / row["run_dir"] / "summary.json").read_text())
        assert float(row["final_accuracy_mean"]) == summary["final"]["accuracy_mean"]
        assert int(row["bytes_sent"]) == summary["bytes_sent"] and int(row["seed"]) == summary["seed"]
        assert summary["n_byzantine"] == round(float(row["adversary.fraction"]) * 20)
    markdown = (out / "table.md").read_text()
    entries = table_entries(markdown, "final_accuracy_mean")
    t_975_df2 = 4.302652729911275  # Student t quantile, 0.975, 2 degrees of freedom (printed tables: 4.303)
    for defense in ("mean", "median"):
        for fraction in ("0.1", "0.25"):
            values = [float(r["final_accuracy_mean"]) for r in results
                      if r["defense.name"] == defense and r["adversary.fraction"] == fraction]
            mean, std = statistics.mean(values), statistics.stdev(values)  # stdev: n-1 in the denominator
            half = t_975_df2 * std / math.sqrt(3)
            text = entries[defense, f"adversary.fraction={fraction}"].replace("*", "")
            assert text.startswith(f"{mean:.4f} ± {std:.4f} [{mean - half:.4f}, {mean + half:.4f}]"), text
    # the better defense of each column is bold: worked out from the CSV
    for fraction in ("0.1", "0.25"):
        by_defense = {d: statistics.mean(float(r["final_accuracy_mean"]) for r in results
                                         if r["defense.name"] == d and r["adversary.fraction"] == fraction)
                      for d in ("mean", "median")}
        best = max(by_defense, key=by_defense.get)
        assert entries[best, f"adversary.fraction={fraction}"].startswith("**")
        assert not entries[min(by_defense, key=by_defense.get), f"adversary.fraction={fraction}"].startswith("**")
    table = read_csv(out / "table.csv")
    assert len(table) == 4 and all(int(r["seeds"]) == 3 for r in table)
    for name in ("heatmap", "curves", "accuracy_vs_fraction"):
        for suffix in (".png", ".pdf"):
            assert (out / "figures" / f"{name}{suffix}").stat().st_size > 1000


@pytest.mark.slow
def test_plot_redraws_a_sweep_directory_in_another_layout(quickstart_sweep, capsys):
    _, out = quickstart_sweep
    (out / "figures" / "heatmap.png").unlink()
    assert main(["plot", str(out), "--rows", "adversary.fraction", "--cols", "defense.name"]) == 0
    assert (out / "figures" / "heatmap.png").exists()
    entries = table_entries((out / "table.md").read_text(), "final_accuracy_mean")
    assert ("0.25", "defense.name=median") in entries
    assert main(["plot", str(out)]) == 0  # back to the sweep file's layout
    assert ("median", "adversary.fraction=0.25") in table_entries((out / "table.md").read_text(),
                                                                  "final_accuracy_mean")


@pytest.mark.slow
def test_second_sweep_into_the_same_directory_runs_nothing(quickstart_sweep):
    path, out = quickstart_sweep
    before = {p.name: (p / "summary.json").stat().st_mtime_ns for p in (out / "runs").iterdir()}
    result = subprocess.run([sys.executable, "-m", "fedsim.cli", "sweep", str(path), *SHORT, "--out", str(out),
                             "--no-progress"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "all 12 runs already finished" in result.stderr
    assert before == {p.name: (p / "summary.json").stat().st_mtime_ns for p in (out / "runs").iterdir()}


def test_dry_run_lists_cells_zip_groups_and_seeds(tmp_path, capsys):
    path = write_sweep(tmp_path, {"base": str(QUICKSTART), "axes": {"adversary.fraction": [0.1, 0.2, 0.3]},
                                  "zip": {"defense.name": ["trimmed_mean", "krum"],
                                          "defense.args": [{"f": 1}, {"f": 2}]},
                                  "seeds": [4, 7]})
    assert main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 * 2 + 1
    assert lines[0] == 'cell 0: adversary.fraction=0.1, defense.name=trimmed_mean, defense.args={"f":1}'
    assert lines[-1].startswith("6 cells x 2 seeds (4, 7) = 12 runs")
    assert not (tmp_path / "o").exists()


BAD = [
    ({"axes": {"defense.nmae": ["mean"]}}, ["axes.defense.nmae", "unknown scenario key", "defense.name"]),
    ({"axes": {"defense.name": []}}, ["axes.defense.name", "non-empty list"]),
    ({"axes": {"defense.name": "mean"}}, ["axes.defense.name", "non-empty list"]),
    ({"axes": {"topology.args": [{"degree": 3}, {"degree": 25}]}},
     ["cell 1", "topology.args={\"degree\":25}", "topology"]),
    ({"axes": {"defense.name": ["mean", "medain"]}}, ["cell 1 [defense.name=medain]", "defense.name", "unknown"]),
    ({"axes": {"training.lr": [0.1, -1]}}, ["cell 1", "training.lr"]),
    ({"seeds": "three"}, ["seeds", "list of ints"]),
    ({"seeds": [0, 1.5]}, ["seeds", "list of ints"]),
    ({"seeds": 0}, ["seeds", ">= 1"]),
    ({"seeds": True}, ["seeds"]),
    ({"axes": {"defense.name": ["mean"]}, "rows": "adversary.fraction"}, ["rows", "not a swept key"]),
    ({"axes": {"defense.name": ["mean"]}, "cols": "seed"}, ["cols", "not a swept key"]),
    ({"axes": {"seed": [1, 2]}}, ["axes.seed", "seeds"]),
    ({"zip": {"defense.name": ["mean", "krum"], "defense.args": [{}]}}, ["zip", "one length"]),
    ({"axes": {"defense.name": ["mean"]}, "zip": {"defense.name": ["krum"]}}, ["zip.defense.name", "already"]),
    ({"axis": {"defense.name": ["mean"]}}, ["axis", "unknown sweep key", "axes"]),
    ({"target_accuracy": 1.5}, ["target_accuracy"]),
    ({"axes": {"output.target_accuracy": [0.5, 0.8]}}, ["axes.output.target_accuracy", "target_accuracy:"]),
    ({"base": "missing.yaml"}, ["base", "missing.yaml"]),
]


@pytest.mark.parametrize("body,needles", BAD)
def test_bad_sweep_file_is_one_error_line(tmp_path, capsys, body, needles):
    path = write_sweep(tmp_path, {"base": str(QUICKSTART), **body})
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(path) in err[0], err
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    assert not (tmp_path / "o").exists()  # nothing ran


def test_layout_flags_must_name_swept_keys_of_two_factors(tmp_path, capsys):
    path = write_sweep(tmp_path, {"base": str(QUICKSTART),
                                  "zip": {"defense.name": ["mean", "krum"], "defense.args": [{}, {"f": 1}]}})
    assert main(["sweep", str(path), "--dry-run", "--rows", "training.lr"]) == 2
    assert "--rows: 'training.lr' is not a swept key" in capsys.readouterr().err
    assert main(["sweep", str(path), "--dry-run", "--rows", "defense.name", "--cols", "defense.args"]) == 2
    assert "vary together" in capsys.readouterr().err


def test_rounds_to_accuracy_uses_the_sweeps_target(tmp_path):
    path = write_sweep(tmp_path, {"base": tiny_scenario(**{"rounds": 4}), "axes": {"training.lr": [0.02, 0.1]},
                                  "target_accuracy": 0.3})
    assert main(["sweep", str(path), "--jobs", "1", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    results = read_csv(tmp_path / "o" / "results.csv")
    assert len(results) == 2
    for row in results:
        run = tmp_path / "o" / row["run_dir"]
        assert yaml.safe_load((run / "config.yaml").read_text())["output"]["target_accuracy"] == 0.3
        accuracy = [json.loads(l)["accuracy_mean"] for l in (run / "metrics.jsonl").read_text().splitlines()]
        reached = [k + 1 for k, a in enumerate(accuracy) if a >= 0.3]  # rounds 1..4, all evaluated
        assert row["rounds_to_accuracy"] == (str(reached[0]) if reached else "")
    assert "Rounds to accuracy >= 0.3" in (tmp_path / "o" / "table.md").read_text()


def _sweep_body(rounds):
    return {"name": "killed", "base": tiny_scenario(**{"rounds": rounds, "output.checkpoint_every": 2}),
            "axes": {"defense.name": ["mean", "median"]}, "seeds": 2}


@pytest.mark.slow
def test_killed_sweep_started_again_ends_like_an_unbroken_one(tmp_path):
    path = write_sweep(tmp_path, _sweep_body(rounds=24))
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "fedsim.cli", "sweep", str(path), "--jobs", "2", "--out", str(out),
               "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    interrupted = False
    try:
        deadline = time.time() + 240
        while time.time() < deadline and process.poll() is None:
            runs = [p for p in (out / "runs").glob("*")] if (out / "runs").exists() else []
            finished = [p for p in runs if (p / "summary.json").exists()]
            # mid-way: one run finished, another one part-way through its rounds
            partial = [p for p in runs if not (p / "summary.json").exists() and (p / "metrics.jsonl").exists()
                       and len((p / "metrics.jsonl").read_text().splitlines()) >= 3]
            if finished and partial:
                os.killpg(process.pid, signal.SIGKILL)  # the sweep and its workers, as a kill of the job
                interrupted = True
                break
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert interrupted, "the sweep finished before it could be killed mid-way"
    assert not (out / "results.csv").exists()
    assert main(["sweep", str(path), "--jobs", "2", "--out", str(out), "--no-progress"]) == 0
    assert main(["sweep", str(path), "--jobs", "2", "--out", str(tmp_path / "unbroken"), "--no-progress"]) == 0
    killed = read_csv(out / "results.csv")
    unbroken = read_csv(tmp_path / "unbroken" / "results.csv")
    assert len(killed) == 4
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in killed] == \
        [{k: v for k, v in r.items() if k not in TIMING} for r in unbroken]
    for row in killed:  # the resumed runs' per-peer tables too
        assert (out / row["run_dir"] / "peers.csv").read_text() == \
            (tmp_path / "unbroken" / row["run_dir"] / "peers.csv").read_text()


def test_peers_csv_matches_graph_and_metrics(tmp_path):
    sc = tiny_scenario(**{"rounds": 2, "adversary": {"count": 2, "attack": {"name": "gaussian"}}})
    summary, run_dir = fedsim.run(sc, out=tmp_path / "run", progress=False)
    rows = read_csv(run_dir / "peers.csv")
    byzantine = set(summary["byzantine_ids"])
    honest = sorted(set(range(8)) - byzantine)
    assert [(int(r["round"]), int(r["peer"])) for r in rows] == [(k, p) for k in (1, 2) for p in honest]
    graph = nx.random_regular_graph(3, 8, seed=0)  # the tiny scenario's graph, built here independently
    from fedsim.topology import build
    assert sorted(build("random_regular", 8, 0, {"degree": 3}).edges()) == sorted(graph.edges())
    for r in rows:
        p = int(r["peer"])
        hops = min(len(nx.shortest_path(graph, p, b)) - 1 for b in byzantine)
        assert int(r["hops_to_byzantine"]) == hops
        assert int(r["byzantine_neighbours"]) == len(byzantine & set(graph[p]))
        assert int(r["degree"]) == 3
    # betweenness of one peer from its definition: share of shortest paths between other pairs through it
    p = honest[0]
    through = 0.0
    others = [v for v in graph if v != p]
    for i, s in enumerate(others):
        for t in others[i + 1:]:
            paths = list(nx.all_shortest_paths(graph, s, t))
            through += sum(p in path for path in paths) / len(paths)
    pairs = (8 - 1) * (8 - 2) / 2
    assert float(next(r for r in rows if int(r["peer"]) == p)["betweenness"]) == pytest.approx(through / pairs)
    metrics = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in metrics:
        accs = [float(r["accuracy"]) for r in rows if int(r["round"]) == row["round"]]
        assert statistics.mean(accs) == pytest.approx(row["accuracy_mean"], abs=1e-12)


def test_resumed_run_rewrites_peers_csv_as_an_unbroken_run(tmp_path):
    sc = tiny_scenario(**{"rounds": 6, "output.checkpoint_every": 2})
    _, ref = fedsim.run(sc, out=tmp_path / "ref", progress=False)
    # an interrupted run: its directory after the round-4 checkpoint, plus a redone round-5 row
    _, cut = fedsim.run(dict(sc, rounds=4), out=tmp_path / "cut", progress=False)
    (cut / "config.yaml").write_text((cut / "config.yaml").read_text().replace("rounds: 4", "rounds: 6"))
    with open(cut / "peers.csv", "a") as fh:
        fh.write("5,0,0.5,1.0,3,0.1,0,,0 1\n")
    assert main(["run", "--resume", str(cut), "--no-progress"]) == 0
    assert (cut / "peers.csv").read_text() == (ref / "peers.csv").read_text()


def test_plot_of_a_damaged_peers_csv_is_a_user_error(tmp_path, capsys):
    _, run_dir = fedsim.run(tiny_scenario(**{"rounds": 1}), out=tmp_path / "r", progress=False)
    assert main(["plot", str(run_dir)]) == 0
    assert (run_dir / "plots" / "topology_accuracy.png").exists()
    (run_dir / "peers.csv").write_text("round,peer,accuracy\n1,x,0.5\n")
    assert main(["plot", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "peers.csv" in err[-1]


def _tfrecords(path):
    """The Event protos of a TensorBoard event file (TFRecord: length, crc, data, crc)."""
    from tensorboardX.proto.event_pb2 import Event
    data, at, events = path.read_bytes(), 0, []
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at:at + 8])
        event = Event()
        event.ParseFromString(data[at + 12:at + 12 + length])
        events.append(event)
        at += 12 + length + 4
    return events


def test_tensorboard_events_hold_the_metrics(tmp_path):
    pytest.importorskip("tensorboardX")
    _, run_dir = fedsim.run(tiny_scenario(**{"rounds": 3, "output.tensorboard": True}), out=tmp_path / "r",
                            progress=False)
    (event_file,) = (run_dir / "tensorboard").iterdir()
    scalars = {(v.tag, e.step): v.simple_value for e in _tfrecords(event_file) for v in e.summary.value
               if v.HasField("simple_value")}
    metrics = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in metrics:
        assert scalars["fedsim/accuracy_mean", row["round"]] == pytest.approx(row["accuracy_mean"], rel=1e-6)
        assert scalars["fedsim/bytes_sent", row["round"]] == pytest.approx(row["bytes_sent"], rel=1e-6)


def _schema_paths(model, prefix=""):
    from pydantic import BaseModel
    for key, field in model.model_fields.items():
        yield prefix + key
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                yield from _schema_paths(arg, f"{prefix}{key}.")


OPTIONAL_SECTIONS = ("adversary", "privacy", "network")  # absent by default


@pytest.mark.parametrize("full", [False, True])
def test_init_prints_every_key_with_its_default_and_a_comment(tmp_path, capsys, full):
    from fedsim.config import Scenario
    assert main(["init"] + (["--full"] if full else [])) == 0
    text = capsys.readouterr().out
    path = tmp_path / "init.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 0
    data = yaml.safe_load(text)
    for dotted in _schema_paths(Scenario):
        if not full and dotted.split(".")[0] in OPTIONAL_SECTIONS:
            assert f"# {dotted.split('.')[0]}: ..." in text  # optional sections: named, keys with --full
            continue
        node = data
        for part in dotted.split("."):
            assert part in node, dotted
            node = node[part]
    defaults = Scenario().to_dict()
    assert {k: v for k, v in data.items() if k not in OPTIONAL_SECTIONS} == \
        {k: v for k, v in defaults.items() if k not in OPTIONAL_SECTIONS}
    key_lines = [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    assert all("  # " in l and l.split("  # ", 1)[1].strip() for l in key_lines)


def test_compare_draws_runs_in_one_figure(tmp_path, capsys):
    a = tmp_path / "a"
    b = tmp_path / "b"
    fedsim.run(tiny_scenario(**{"rounds": 2}), out=a, progress=False)
    fedsim.run(tiny_scenario(**{"rounds": 2, "defense.name": "median"}), out=b, progress=False)
    assert main(["compare", str(a), str(b), "--labels", "mean", "median", "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp.png").stat().st_size > 1000 and (tmp_path / "cmp.pdf").exists()
    assert main(["compare", str(a), str(b), "--labels", "only-one"]) == 2
    assert "--labels" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "nothing")]) == 2


def test_describe_against_hand_numbers():
    from fedsim.tables import describe
    # [1, 2, 3, 4]: mean 2.5; sample variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3;
    # t(0.975, 3) = 3.182446 (t tables); half width 3.182446 * sqrt(5/3) / 2 = 3.182446 * 0.645497 = 2.054260
    got = describe([1.0, 2.0, 3.0, 4.0])
    assert got["mean"] == 2.5 and got["std"] == pytest.approx(math.sqrt(5 / 3))
    assert (got["ci95_low"], got["ci95_high"]) == pytest.approx((2.5 - 2.054260, 2.5 + 2.054260), abs=1e-6)
    single = describe([0.7])
    assert single["mean"] == 0.7 and single["std"] is None and single["ci95_low"] is None


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_sweep_on_a_two_node_ray_cluster_gives_the_local_table(tmp_path):
    ray = pytest.importorskip("ray")
    from tests.conftest import two_node_cluster
    path = write_sweep(tmp_path, {"name": "onray", "base": tiny_scenario(**{"rounds": 3}),
                                  "axes": {"defense.name": ["mean", "median"]}, "seeds": 2})
    workers = str(max(2, os.cpu_count() or 2))  # one torch thread per worker, as in a Ray task
    assert main(["sweep", str(path), "--jobs", workers, "--out", str(tmp_path / "local"), "--no-progress"]) == 0
    if ray.is_initialized():
        ray.shutdown()
    cluster = two_node_cluster()
    try:
        assert main(["sweep", str(path), "--ray", cluster.address, "--out", str(tmp_path / "ray"),
                     "--no-progress"]) == 0
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    local, remote = read_csv(tmp_path / "local" / "table.csv"), read_csv(tmp_path / "ray" / "table.csv")
    assert len(local) == 2 and local == remote
    assert (tmp_path / "ray" / "table.md").read_text() == (tmp_path / "local" / "table.md").read_text()
