"""Resume that survives damage, and refuses scenario changes the checkpoint depends on.

The reference for every resumed run is the same scenario run without interruption: the
engine's draws are keyed by (seed, peer, round, purpose), so a run resumed from any
checkpoint must end with exactly the same final row (wall_time_s aside).
"""
import json
import shutil

import pytest
import torch
import yaml

from fedsim.cli import main
from fedsim.runner import run
from tests.conftest import tiny_scenario

ROUNDS = 4


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _without_time(row):
    return {k: v for k, v in row.items() if k != "wall_time_s"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 4-round run checkpointed every round (so rounds 3 and 4 are kept)."""
    out = tmp_path_factory.mktemp("resume") / "base"
    run(tiny_scenario(**{"rounds": ROUNDS, "output.checkpoint_every": 1}), out=out, progress=False)
    return out


@pytest.fixture
def copy(finished, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(finished, target)
    return target


def _resume(run_dir, capsys, *extra):
    code = main(["run", "--resume", str(run_dir), "--no-progress", *extra])
    return code, capsys.readouterr()


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_checkpoints_kept_are_the_last_two(finished):
    names = sorted(p.name for p in (finished / "checkpoints").glob("round_*.pt"))
    assert names == ["round_00003.pt", "round_00004.pt"]
    assert (finished / "checkpoints" / "latest").read_text().strip() == "round_00004.pt"


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path):
    path.write_bytes(bytes(range(256)) * 8)


def _empty(path):
    path.write_bytes(b"")


def _wrong_object(path):
    torch.save({"round": "four", "weights": torch.zeros(3)}, path)


def _a_directory(path):
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("damage", [_truncate, _garbage, _empty, _wrong_object, _a_directory])
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(finished, copy, capsys, damage):
    damage(copy / "checkpoints" / "round_00004.pt")
    # A kill in the middle of writing the last metrics row.
    metrics = copy / "metrics.jsonl"
    metrics.write_text(metrics.read_text()[:-25])
    code, out = _resume(copy, capsys)
    assert code == 0, out.err
    warning = (copy / "run.log").read_text().splitlines()
    assert any("warning:" in w and "round_00004.pt" in w and "resuming from round_00003.pt" in w for w in warning)
    assert "Traceback" not in out.err
    rows, reference = _rows(copy), _rows(finished)
    assert [r["round"] for r in rows] == list(range(1, ROUNDS + 1))  # the cut line was repaired and redone
    assert [_without_time(r) for r in rows] == [_without_time(r) for r in reference]


def test_every_checkpoint_damaged_is_one_error_naming_the_file(copy, capsys):
    for path in (copy / "checkpoints").glob("round_*.pt"):
        _truncate(path)
    before = (copy / "metrics.jsonl").read_bytes()
    code, out = _resume(copy, capsys)
    assert code == 2
    line = _one_error(out.err)
    assert "round_00004.pt" in line and "cannot resume" in line
    assert (copy / "metrics.jsonl").read_bytes() == before  # nothing written is lost


@pytest.mark.parametrize("marker", [b"../../outside.pt\n", b"/etc/passwd\n", b"\x00\xff\xfe binary", b"",
                                    b"round_00004.pt/../../x.pt", b"round_4.pt"])
def test_latest_marker_may_only_name_a_checkpoint_in_checkpoints(copy, capsys, marker):
    (copy / "checkpoints" / "latest").write_bytes(marker)
    code, out = _resume(copy, capsys)
    assert code == 2
    assert "latest" in _one_error(out.err)


def test_latest_marker_that_is_a_directory(copy, capsys):
    marker = copy / "checkpoints" / "latest"
    marker.unlink()
    marker.mkdir()
    code, out = _resume(copy, capsys)
    assert code == 2
    assert "latest" in _one_error(out.err)


def test_extending_rounds_matches_an_unbroken_longer_run(finished, copy, capsys, tmp_path):
    code, out = _resume(copy, capsys, "--set", "rounds=6", "--set", "eval_every=1",
                        "--set", "output.plots=false")
    assert code == 0, out.err
    _, unbroken = run(tiny_scenario(**{"rounds": 6, "output.checkpoint_every": 1}), out=tmp_path / "six",
                      progress=False)
    assert _without_time(_rows(copy)[-1]) == _without_time(_rows(unbroken)[-1])
    assert yaml.safe_load((copy / "config.yaml").read_text())["rounds"] == 6


@pytest.mark.parametrize("override,key", [
    ("training.lr=0.2", "training.lr"),
    ("seed=1", "seed"),
    ("topology.args={degree: 2}", "topology.args.degree"),
    ("defense.name=median", "defense.name"),
    ("data.partition.alpha=0.3", "data.partition.alpha"),
    ("model.head=l2svm", "model.head"),
])
def test_resume_refuses_changes_the_checkpoint_depends_on(copy, capsys, override, key):
    before = {p.name: p.read_bytes() for p in copy.rglob("*") if p.is_file() and p.name != "run.log"}
    code, out = _resume(copy, capsys, "--set", override)
    assert code == 2
    line = _one_error(out.err)
    assert "cannot resume" in line and key in line
    after = {p.name: p.read_bytes() for p in copy.rglob("*") if p.is_file() and p.name != "run.log"}
    assert after == before


def test_resume_refuses_an_edited_config_listing_every_changed_key(copy, capsys):
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["topology"]["n_peers"] = 10
    config["training"]["local_steps"] = 3
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    code, out = _resume(copy, capsys)
    assert code == 2
    line = _one_error(out.err)
    assert "topology.n_peers" in line and "training.local_steps" in line


def test_resume_refuses_fewer_rounds_than_the_checkpoint_reached(copy, capsys):
    code, out = _resume(copy, capsys, "--set", "rounds=2")
    assert code == 2
    assert "rounds" in _one_error(out.err)


@pytest.mark.parametrize("content", [b"rounds: [unclosed", b"\x89PNG\r\n\x1a\n\x00\x00binary", b"- a list\n"])
def test_resume_with_a_broken_config_is_one_error(copy, capsys, content):
    (copy / "config.yaml").write_bytes(content)
    code, out = _resume(copy, capsys)
    assert code == 2
    assert "config.yaml" in _one_error(out.err)


def test_resume_with_a_config_that_is_a_directory(copy, capsys):
    (copy / "config.yaml").unlink()
    (copy / "config.yaml").mkdir()
    code, out = _resume(copy, capsys)
    assert code == 2
    assert "config.yaml" in _one_error(out.err)
