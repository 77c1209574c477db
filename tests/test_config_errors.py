"""Malformed scenarios: each ends in one `error:` line naming the file and key path, exit 2."""
import subprocess
import sys

import pytest

from fedsim.cli import main

BASE = """
name: t
rounds: 10
data: {dataset: digits}
topology: {kind: random_regular, n_peers: 10, args: {degree: 4}}
"""

# (scenario text, --set overrides, substrings the error line must hold)
CASES = [
    ("roundz: 5\n", [], ["roundz", "did you mean rounds"]),
    ("", ["rounds=-1"], ["rounds", "greater than"]),
    ("", ["rounds=ten"], ["rounds", "integer"]),
    ("", ["data.dataset=mnistt"], ["data.dataset", "allowed:", "digits"]),
    ("", ["data.partition.kind=dirichlett"], ["data.partition.kind", "did you mean dirichlet"]),
    ("", ["data.partition.alpha=0"], ["data.partition.alpha"]),
    ("", ["topology.kind=ring2"], ["topology.kind", "ring"]),
    ("", ["topology.n_peers=9", "topology.args.degree=5"], ["topology", "even"]),
    ("", ["topology.args.degree=12"], ["topology", "degree"]),
    ("", ["topology.args.deg=3"], ["topology.args", "deg"]),
    ("", ["topology.n_peers=1"], ["topology.n_peers"]),
    ("adversary: {fraction: 1.5}\n", [], ["adversary.fraction"]),
    ("adversary: {count: 10}\n", [], ["adversary", "no honest peer"]),
    ("adversary: {count: 2, fraction: 0.1}\n", [], ["adversary", "only one of"]),
    ("adversary: {ids: [3, 42]}\n", [], ["adversary.ids", "0..9"]),
    ("adversary: {count: 2, attack: {name: gausian}}\n", [], ["adversary.attack.name", "did you mean gaussian"]),
    ("adversary: {count: 2, placement: central}\n", [], ["adversary.placement"]),
    ("adversary: {count: 2, attack: {name: gaussian, args: {sdt: 1}}}\n", [], ["adversary.attack.args.sdt", "std"]),
    ("", ["defense.name=meen"], ["defense.name", "did you mean mean"]),
    ("", ["defense.args.foo=1"], ["defense.args.foo", "unknown argument"]),
    ("", ["training.optimizer=rmsprop"], ["training.optimizer", "sgd", "adam"]),
    ("", ["training.lr=0"], ["training.lr"]),
    ("", ["data.test_fraction=1.5"], ["data.test_fraction"]),
    ("", ["model.head=svm"], ["model.head", "l2svm"]),
    ("", ["model.backbone=resnet"], ["model.backbone", "allowed:"]),
    ("", ["backend.name=spark"], ["backend.name"]),
    ("", ["eval_every=0"], ["eval_every"]),
    ("", ["output.checkpoint_every=-1"], ["output.checkpoint_every"]),
    ("privacy: {rounds: [100]}\n", [], ["privacy.rounds", "1..10"]),
    ("", ["topology.kind=edgelist", "topology.args={path: /nonexistent/edges.txt}"], ["topology", "edges.txt"]),
    ("", ["backend.address=auto"], ["backend.address", "ray"]),
    ("", ["rounds"], ["--set rounds", "KEY.PATH=VALUE"]),
    ("", ["data=3"], ["data", "dictionary"]),
]


@pytest.mark.parametrize("extra,overrides,needles", CASES, ids=[str(i) for i in range(len(CASES))])
def test_malformed_scenario(tmp_path, capsys, extra, overrides, needles):
    path = tmp_path / "bad.yaml"
    path.write_text(BASE + extra)
    argv = ["validate", str(path)] + [a for o in overrides for a in ("--set", o)]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    if not any(n.startswith("--set") for n in needles):
        assert str(path) in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_base_scenario_is_valid(tmp_path, capsys):
    path = tmp_path / "ok.yaml"
    path.write_text(BASE)
    assert main(["validate", str(path)]) == 0


@pytest.mark.parametrize("text,needle", [
    ("rounds: [1, 2\n", "invalid YAML"),
    ("- a\n- b\n", "must be a YAML mapping"),
])
def test_unreadable_yaml(tmp_path, capsys, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err


def test_missing_file_and_no_traceback_in_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fedsim.cli", "run", str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "no such file" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_list_kind(capsys):
    assert main(["list", "widgets"]) == 2
    assert "allowed:" in capsys.readouterr().err


def test_overrides_are_yaml_typed(tmp_path):
    from fedsim import config
    path = tmp_path / "ok.yaml"
    path.write_text(BASE)
    s = config.load(path, ["training.lr=0.5", "topology.args={degree: 2}", "model.pretrain.classes=[1, 2]"])
    assert s.training.lr == 0.5 and s.topology.args == {"degree": 2}
    assert s.model.pretrain.classes == [1, 2]


@pytest.mark.parametrize("overrides,needles", [
    (["data.dataset=synthetic", "data.args={n_samples: 500}", "model.backbone=cnn"], ["model:", "identity"]),
    (["data.dataset=synthetic", "data.args={n_samples: 500}", "model.backbone=identity",
      "data.partition.min_samples=100"], ["data.partition:", "min_samples"]),
    (["data.partition.kind=cyclic", "data.partition.classes_per_peer=11"], ["data.partition:"]),
])
def test_impossible_data_is_a_user_error_at_run_time(tmp_path, capsys, overrides, needles):
    path = tmp_path / "bad.yaml"
    path.write_text(BASE.replace("rounds: 10", "rounds: 1"))
    argv = ["run", str(path), "--out", str(tmp_path / "r")] + [a for o in overrides for a in ("--set", o)]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(path) in line
    for needle in needles:
        assert needle in line, (needle, line)
    # The world failed to build: nothing was written over (config.yaml comes after set-up).
    assert not (tmp_path / "r" / "config.yaml").exists()
