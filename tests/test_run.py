"""Whole runs on the local backend: run directory, determinism, resume after a kill, cache."""
import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

import fedsim
from fedsim.cli import main
from tests.conftest import ROOT, tiny_scenario


def rows_of(run_dir):
    return [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_time(rows):
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]


def test_run_directory_contents(tmp_path):
    sc = tiny_scenario(**{"output.plots": True})
    summary, run_dir = fedsim.run(sc, out=tmp_path / "run", progress=False)
    assert run_dir == tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "plots/accuracy.png", "plots/topology.png",
                 "checkpoints/latest", "run.log"):
        assert (run_dir / name).exists(), name
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["training"]["optimizer"] == "sgd" and config["defense"] == {"name": "mean", "args": {}}
    rows = rows_of(run_dir)
    assert [r["round"] for r in rows] == [1, 2, 3, 4]
    keys = {"round", "accuracy_mean", "accuracy_min", "accuracy_max", "accuracy_std", "loss_mean",
            "consensus_distance", "bytes_sent", "messages_dropped", "messages_nonfinite", "wall_time_s"}
    assert keys <= set(rows[0])
    assert rows[0]["accuracy_min"] <= rows[0]["accuracy_mean"] <= rows[0]["accuracy_max"]
    # 8 peers of degree 3 send 24 heads a round; a head is 10 x (D+1) float32
    per_message = 10 * (summary["pretrain"].get("feature_dim", 64) + 1) * 4
    assert rows[1]["bytes_sent"] == 2 * 24 * per_message
    for key in ("name", "seed", "rounds", "n_peers", "n_byzantine", "defense", "attack", "final",
                "best_accuracy_mean", "wall_time_s", "bytes_sent", "backend"):
        assert key in summary
    assert summary["final"] == rows[-1]


def test_same_scenario_twice_gives_identical_metrics(tmp_path):
    sc = tiny_scenario(**{"adversary": {"count": 2, "attack": {"name": "gaussian"}}, "defense.name": "median"})
    _, a = fedsim.run(sc, out=tmp_path / "a", progress=False)
    _, b = fedsim.run(sc, out=tmp_path / "b", progress=False)
    assert without_time(rows_of(a)) == without_time(rows_of(b))
    # and the run really was learning: accuracy above chance (10 classes)
    assert rows_of(a)[-1]["accuracy_mean"] > 0.2  # learning: twice chance


def test_second_run_loads_features_from_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSIM_CACHE", str(tmp_path / "cache"))
    sc = tiny_scenario(**{"rounds": 1})
    first, _ = fedsim.run(sc, out=tmp_path / "a", progress=False)
    second, _ = fedsim.run(sc, out=tmp_path / "b", progress=False)
    assert first["features_from_cache"] is False and second["features_from_cache"] is True
    assert first["final"]["accuracy_mean"] == second["final"]["accuracy_mean"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_final_row(tmp_path):
    # enough rounds that the kill lands mid-way however fast a round has become
    sc = tiny_scenario(**{"rounds": 100, "output.checkpoint_every": 3})
    _, ref = fedsim.run(sc, out=tmp_path / "ref", progress=False)
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(sc))
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "fedsim.cli", "run", str(path), "--out", str(run_dir),
                             "--no-progress"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once a checkpoint exists and a later round was logged
        rows = (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").exists() else []
        if len(rows) >= 7:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(rows_of(run_dir)) < 100, "the run finished before it could be killed"
    assert main(["run", "--resume", str(run_dir), "--no-progress"]) == 0
    assert without_time(rows_of(run_dir)) == without_time(rows_of(ref))


def test_cli_run_prints_run_dir_last_and_plot_redraws(tmp_path, capsys):
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(tiny_scenario(**{"rounds": 2})))
    assert main(["run", str(path), "--out", str(tmp_path / "r"), "--no-progress",
                 "--set", "training.lr=0.1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(tmp_path / "r")
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["training"]["lr"] == 0.1
    (tmp_path / "r" / "plots" / "accuracy.png").unlink(missing_ok=True)
    assert main(["plot", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "plots" / "accuracy.png").stat().st_size > 1000


def test_list_names(capsys):
    assert main(["list", "defenses"]) == 0
    names = capsys.readouterr().out.split()
    assert "mean" in names and "median" in names


def test_disconnected_honest_subgraph_is_a_warning_in_log_and_summary(tmp_path):
    # ring of 8: Byzantine peers 0 and 4 cut the honest peers into {1, 2, 3} and {5, 6, 7}
    sc = tiny_scenario(**{"rounds": 1, "topology": {"kind": "ring", "n_peers": 8},
                          "adversary": {"ids": [0, 4], "attack": {"name": "sign_flip"}}})
    summary, run_dir = fedsim.run(sc, out=tmp_path / "r", progress=False)
    assert summary["byzantine_ids"] == [0, 4]
    assert any("disconnected (2 components)" in w for w in summary["warnings"])
    assert "disconnected" in (run_dir / "run.log").read_text()


def test_backdoor_reports_attack_success_rate(tmp_path):
    sc = tiny_scenario(**{"rounds": 2, "adversary": {"count": 2, "attack": {"name": "backdoor",
                                                                              "args": {"target": 0}}}})
    summary, run_dir = fedsim.run(sc, out=tmp_path / "r", progress=False)
    rows = rows_of(run_dir)
    assert all(0.0 <= r["attack_success_rate"] <= 1.0 for r in rows)
    assert summary["attack"] == "backdoor" and summary["n_byzantine"] == 2
