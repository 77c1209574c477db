"""Hostile inputs: every one ends in exactly one ``error:`` line on stderr, exit status 2,
no traceback, and leaves an earlier run directory exactly as it was.

The cases are tables (YAML text, ``--set`` syntax, types and numbers, paths, ``--out``,
``--resume``, ``fedsim plot``), run in-process through ``fedsim.cli.main``. Scenario cases
run as ``fedsim run FILE --out EARLIER`` where EARLIER holds a finished run, so the
"nothing written is lost" check covers them too. Permission cases are left out: the
tests may run as root, for whom permission bits do not apply.
"""
import json
import os
import shutil

import pytest
import torch
import yaml

from fedsim.cli import main
from fedsim.runner import run
from tests.conftest import tiny_scenario

BASE = tiny_scenario(**{"rounds": 2, "output.checkpoint_every": 1})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("hostile") / "earlier"
    run(BASE, out=out, progress=False)
    return out


@pytest.fixture
def earlier(finished, tmp_path):
    """A copy of a finished run directory, and a function that checks it is unchanged."""
    target = tmp_path / "earlier"
    shutil.copytree(finished, target)
    snapshot = _snapshot(target)

    def unchanged():
        now = _snapshot(target)
        old_log, new_log = snapshot.pop("run.log", b""), now.pop("run.log", b"")
        assert new_log.startswith(old_log)  # a failed attempt may only append to the log
        assert now == snapshot

    return target, unchanged


def _snapshot(directory):
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else "dir")
            for p in sorted(directory.rglob("*"))}


def _check(code, err):
    assert code == 2, err
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    return errors[0]


def _run_cli(capsys, argv):
    code = main(argv)
    return _check(code, capsys.readouterr().err)


def _base_text() -> str:
    return yaml.safe_dump(BASE, sort_keys=False)


# --------------------------------------------------------------------------- YAML text

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))

YAML_CASES = {
    "alias-bomb": BOMB,
    "recursive-list": "name: t\nx: &a [1, *a]\n",
    "recursive-map": "name: t\nx: &a {y: *a}\n",
    "deep-flow-list": "x: " + "[" * 500 + "]" * 500 + "\n",
    "deep-block-map": "".join("  " * i + f"k{i}:\n" for i in range(60)) + "  " * 60 + "v: 1\n",
    "undefined-alias": "name: *nowhere\n",
    "duplicate-anchor": "a: &x 1\nb: &x 2\nc: *x\n",
    "unclosed-flow": "name: [t\n",
    "unclosed-quote": 'name: "t\n',
    "tab-indent": "data:\n\tdataset: digits\n",
    "bad-indent": "data:\n  dataset: digits\n partition: 1\n",
    "two-documents": "name: a\n---\nname: b\n",
    "a-list": "- name: t\n",
    "a-scalar": "just words\n",
    "an-int": "42\n",
    "python-object": "!!python/object/apply:os.system ['true']\n",
    "python-name": "name: !!python/name:os.system\n",
    "python-module": "name: !!python/module:os\n",
    "unknown-tag": "name: !secret t\n",
    "unhashable-key": "? [a, b]\n: 1\n",
    "null-byte": "name: t\x00x\n",
    "control-char": "name: t\x07x\n",
    "unknown-top-key": "nmae: t\n",
    "unknown-nested-key": "data: {datset: digits}\n",
    "section-not-mapping": "data: digits\n",
    "section-a-list": "training: [1, 2]\n",
    "name-a-date": "name: 2001-12-14\n",
    "name-a-list": "name: [a, b]\n",
    "name-null": "name: null\n",
    "name-empty": "name: ''\n",
    "name-slash": "name: a/b\n",
    "name-dotdot-slash": "name: ../../etc\n",
    "name-newline": 'name: "a\\nb"\n',
    "name-300": f"name: {'n' * 300}\n",
    "seed-a-float": "seed: 0.5\n",
    "seed-a-string": "seed: zero\n",
    "rounds-a-map": "rounds: {a: 1}\n",
    "merge-key-bad": "data:\n  <<: 1\n",
}


@pytest.mark.parametrize("text", YAML_CASES.values(), ids=YAML_CASES.keys())
def test_hostile_yaml(tmp_path, capsys, earlier, text):
    target, unchanged = earlier
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    line = _run_cli(capsys, ["run", str(path), "--out", str(target), "--no-progress"])
    assert str(path) in line
    unchanged()


@pytest.mark.parametrize("content,why", [
    (b"\xff\xfe\x00n\x00a\x00m\x00e", "UTF-8"),
    (bytes(range(256)), "UTF-8"),
    (b"name: t\n#" + b"x" * (2 << 20), "larger than"),
])
def test_hostile_scenario_bytes(tmp_path, capsys, earlier, content, why):
    target, unchanged = earlier
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    line = _run_cli(capsys, ["run", str(path), "--out", str(target)])
    assert str(path) in line and why in line
    unchanged()


# --------------------------------------------------------------------------- --set syntax

SET_SYNTAX = {
    "no-equals": "rounds",
    "empty-key": "=3",
    "leading-dot": ".rounds=3",
    "trailing-dot": "rounds.=3",
    "double-dot": "data..dataset=digits",
    "through-a-scalar": "data.dataset.name=x",
    "through-an-int": "rounds.x=1",
    "through-an-int-arg": "topology.args.degree.x=1",
    "unclosed-flow": "training.lr=[0.1",
    "unclosed-map": "topology.args={degree: 3",
    "undefined-alias": "name=*nowhere",
    "recursive-alias": "topology.args=&a {x: *a}",
    "alias-bomb": "name=" + BOMB.replace("\n", "\n"),
    "python-tag": "name=!!python/object/apply:os.system ['true']",
    "replace-section-by-int": "data=3",
    "replace-section-by-list": "training=[1, 2]",
    "unknown-top": "rondus=3",
    "unknown-nested": "training.lrr=0.1",
    "deep-value": "topology.args=" + "[" * 100 + "]" * 100,
}


@pytest.mark.parametrize("override", SET_SYNTAX.values(), ids=SET_SYNTAX.keys())
def test_hostile_set_syntax(tmp_path, capsys, earlier, override):
    target, unchanged = earlier
    path = tmp_path / "ok.yaml"
    path.write_text(_base_text())
    _run_cli(capsys, ["run", str(path), "--out", str(target), "--set", override])
    unchanged()


# --------------------------------------------------------------------------- types and numbers

NUMBERS = {
    "seed-negative": ["seed=-1"],
    "seed-text": ["seed=abc"],
    "seed-null": ["seed=null"],
    "seed-huge": ["seed=1e300"],
    "seed-beyond-64-bits": [f"seed={2 ** 64}"],
    "rounds-zero": ["rounds=0"],
    "rounds-inf": ["rounds=.inf"],
    "rounds-nan": ["rounds=.nan"],
    "rounds-bool": ["rounds=[true]"],
    "eval-every-zero": ["eval_every=0"],
    "eval-samples-zero": ["eval_samples=0"],
    "lr-zero": ["training.lr=0"],
    "lr-negative": ["training.lr=-0.1"],
    "lr-nan": ["training.lr=.nan"],
    "lr-inf": ["training.lr=.inf"],
    "lr-text": ["training.lr=fast"],
    "local-steps-zero": ["training.local_steps=0"],
    "local-steps-billion": ["training.local_steps=1000000000"],
    "local-steps-float": ["training.local_steps=2.5"],
    "batch-size-zero": ["training.batch_size=0"],
    "batch-size-billion": ["training.batch_size=1000000000"],
    "optimizer-unknown": ["training.optimizer=rmsprop"],
    "weight-decay-negative": ["training.weight_decay=-1"],
    "missing-class-scale-2": ["training.missing_class_scale=2"],
    "n-peers-one": ["topology.n_peers=1"],
    "n-peers-billion": ["topology.n_peers=1000000000"],
    "n-peers-text": ["topology.n_peers=many"],
    "topology-unknown": ["topology.kind=torus"],
    "degree-too-big": ["topology.args={degree: 100}"],
    "degree-negative": ["topology.args={degree: -1}"],
    "degree-odd-product": ["topology.n_peers=9"],
    "topology-unknown-arg": ["topology.args={deg: 3}"],
    "erdos-p-2": ["topology.kind=erdos_renyi", "topology.args={p: 2}"],
    "resample-negative": ["topology.resample_every=-1"],
    "dataset-unknown": ["data.dataset=imagenet"],
    "test-fraction-zero": ["data.test_fraction=0"],
    "test-fraction-one": ["data.test_fraction=1"],
    "public-fraction-one": ["data.public_fraction=1"],
    "test-per-class-negative": ["data.test_per_class=-1"],
    "partition-unknown": ["data.partition.kind=random"],
    "alpha-zero": ["data.partition.alpha=0"],
    "alpha-nan": ["data.partition.alpha=.nan"],
    "classes-per-peer-zero": ["data.partition.classes_per_peer=0"],
    "synthetic-1e12": ["data.dataset=synthetic", "data.args={n_samples: 1e12}", "model.backbone=mlp"],
    "backbone-unknown": ["model.backbone=resnet"],
    "head-unknown": ["model.head=svm"],
    "head-init-unknown": ["model.head_init=zeros"],
    "pretrain-epochs-negative": ["model.pretrain.epochs=-1"],
    "pretrain-classes-empty": ["model.pretrain.classes=[]"],
    "defense-unknown": ["defense.name=average"],
    "defense-unknown-arg": ["defense.args={nope: 1}"],
    "krum-f-huge": ["defense.name=krum", f"defense.args={{f: {10 ** 12}}}"],
    "adversary-fraction-2": ["adversary={fraction: 2}"],
    "adversary-count-all": ["adversary={count: 8}"],
    "adversary-id-outside": ["adversary={ids: [100]}"],
    "adversary-two-sizes": ["adversary={count: 1, fraction: 0.1}"],
    "adversary-placement": ["adversary={count: 1, placement: central}"],
    "attack-unknown": ["adversary={count: 1, attack: {name: nope}}"],
    "gaussian-std-nan": ["adversary={count: 1, attack: {name: gaussian, args: {std: .nan}}}"],
    "privacy-curious-all": ["privacy={curious: 8}"],
    "privacy-round-zero": ["privacy={rounds: [0]}"],
    "privacy-rounds-empty": ["privacy={rounds: []}"],
    "privacy-victims-zero": ["privacy={victims: 0}"],
    "backend-unknown": ["backend.name=spark"],
    "address-on-local": ["backend.address=auto"],
    "peers-per-actor-zero": ["backend.peers_per_actor=0"],
    "checkpoint-every-negative": ["output.checkpoint_every=-1"],
    "plots-maybe": ["output.plots=maybe"],
}


@pytest.mark.parametrize("overrides", NUMBERS.values(), ids=NUMBERS.keys())
def test_hostile_values(tmp_path, capsys, earlier, overrides):
    target, unchanged = earlier
    path = tmp_path / "ok.yaml"
    path.write_text(_base_text())
    argv = ["run", str(path), "--out", str(target)]
    for override in overrides:
        argv += ["--set", override]
    line = _run_cli(capsys, argv)
    assert str(path) in line
    unchanged()


# --------------------------------------------------------------------------- paths

def _scenario_path(tmp_path, kind):
    if kind == "missing":
        return tmp_path / "nope.yaml"
    if kind == "directory":
        (tmp_path / "dir.yaml").mkdir()
        return tmp_path / "dir.yaml"
    if kind == "dev-zero":
        return "/dev/zero"
    if kind == "dev-null":
        return "/dev/null"
    if kind == "fifo":
        os.mkfifo(tmp_path / "fifo.yaml")
        return tmp_path / "fifo.yaml"
    if kind == "under-a-file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file" / "s.yaml"
    if kind == "symlink-loop":
        os.symlink(tmp_path / "loop2", tmp_path / "loop1")
        os.symlink(tmp_path / "loop1", tmp_path / "loop2")
        return tmp_path / "loop1"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "directory", "dev-zero", "dev-null", "fifo", "under-a-file",
                                  "symlink-loop"])
@pytest.mark.parametrize("command", ["run", "validate"])
def test_hostile_scenario_paths(tmp_path, capsys, earlier, kind, command):
    target, unchanged = earlier
    path = _scenario_path(tmp_path, kind)
    argv = [command, str(path)] + (["--out", str(target)] if command == "run" else [])
    line = _run_cli(capsys, argv)
    assert str(path) in line
    unchanged()


def _edge_list(tmp_path, kind):
    if kind == "missing":
        return tmp_path / "nope.txt"
    if kind == "directory":
        return tmp_path
    if kind == "dev-zero":
        return "/dev/zero"
    if kind == "under-a-file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file" / "edges.txt"
    path = tmp_path / "edges.txt"
    content = {"binary": bytes(range(256)), "one-id": b"0\n", "words": b"a b\n", "out-of-range": b"0 99\n",
               "self-loop": b"3 3\n", "negative": b"-1 2\n"}[kind]
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("kind", ["missing", "directory", "dev-zero", "under-a-file", "binary", "one-id", "words",
                                  "out-of-range", "self-loop", "negative"])
def test_hostile_edge_lists(tmp_path, capsys, earlier, kind):
    target, unchanged = earlier
    edges = _edge_list(tmp_path, kind)
    path = tmp_path / "ok.yaml"
    path.write_text(_base_text())
    line = _run_cli(capsys, ["run", str(path), "--out", str(target), "--set", "topology.kind=edgelist",
                             "--set", f"topology.args={{path: '{edges}'}}"])
    assert str(path) in line and str(edges) in line
    unchanged()


@pytest.mark.parametrize("kind", ["missing", "a-file", "under-a-file"])
def test_hostile_data_root(tmp_path, capsys, earlier, kind):
    target, unchanged = earlier
    (tmp_path / "file").write_text("x")
    root = {"missing": tmp_path / "nope", "a-file": tmp_path / "file", "under-a-file": tmp_path / "file" / "d"}[kind]
    path = tmp_path / "ok.yaml"
    path.write_text(_base_text())
    line = _run_cli(capsys, ["run", str(path), "--out", str(target), "--set", "data.dataset=fashion_mnist",
                             "--set", f"data.root={root}"])
    assert "data.root" in line and str(root) in line
    unchanged()


def _out_dir(tmp_path, kind):
    if kind == "a-file":
        (tmp_path / "file").write_text("keep me")
        return tmp_path / "file"
    if kind == "under-a-file":
        (tmp_path / "file").write_text("keep me")
        return tmp_path / "file" / "run"
    if kind == "in-proc":
        return "/proc/fedsim-hostile-test/run"
    if kind == "name-too-long":
        return tmp_path / ("x" * 300)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["a-file", "under-a-file", "in-proc", "name-too-long"])
@pytest.mark.parametrize("how", ["--out", "output.dir"])
def test_hostile_out(tmp_path, capsys, kind, how):
    out = _out_dir(tmp_path, kind)
    path = tmp_path / "ok.yaml"
    path.write_text(_base_text())
    extra = ["--out", str(out)] if how == "--out" else ["--set", f"output.dir={out}"]
    line = _run_cli(capsys, ["run", str(path), "--no-progress", *extra])
    assert str(out).split("/run")[0][:40] in line
    if kind in ("a-file", "under-a-file"):
        assert (tmp_path / "file").read_text() == "keep me"


# --------------------------------------------------------------------------- --resume

def _damage_resume(target, tmp_path, kind):
    ck = target / "checkpoints"
    if kind == "missing-dir":
        return tmp_path / "nope"
    if kind == "a-file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file"
    if kind == "no-config":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty"
    if kind == "config-invalid-yaml":
        (target / "config.yaml").write_text("rounds: [2\n")
    elif kind == "config-binary":
        (target / "config.yaml").write_bytes(bytes(range(256)))
    elif kind == "config-a-list":
        (target / "config.yaml").write_text("- 1\n")
    elif kind == "config-alias-bomb":
        (target / "config.yaml").write_text(BOMB)
    elif kind == "all-checkpoints-truncated":
        for p in ck.glob("round_*.pt"):
            p.write_bytes(p.read_bytes()[:100])
    elif kind == "all-checkpoints-empty":
        for p in ck.glob("round_*.pt"):
            p.write_bytes(b"")
    elif kind == "all-checkpoints-wrong-object":
        for p in ck.glob("round_*.pt"):
            torch.save([1, 2, 3], p)
    elif kind == "marker-binary":
        (ck / "latest").write_bytes(b"\xff\x00\xfe")
    elif kind == "marker-outside":
        (ck / "latest").write_text("../config.yaml\n")
    elif kind == "marker-a-directory":
        (ck / "latest").unlink()
        (ck / "latest").mkdir()
    elif kind == "edited-n-peers":
        config = yaml.safe_load((target / "config.yaml").read_text())
        config["topology"]["n_peers"] = 10
        (target / "config.yaml").write_text(yaml.safe_dump(config))
    else:
        raise AssertionError(kind)
    return target


RESUME_KINDS = ["missing-dir", "a-file", "no-config", "config-invalid-yaml", "config-binary", "config-a-list",
                "config-alias-bomb", "all-checkpoints-truncated", "all-checkpoints-empty",
                "all-checkpoints-wrong-object", "marker-binary", "marker-outside", "marker-a-directory",
                "edited-n-peers"]


@pytest.mark.parametrize("kind", RESUME_KINDS)
def test_hostile_resume(tmp_path, capsys, earlier, kind):
    target, _ = earlier
    resume = _damage_resume(target, tmp_path, kind)
    before = _snapshot(target)
    _run_cli(capsys, ["run", "--resume", str(resume), "--no-progress"])
    after = _snapshot(target)
    after.pop("run.log", None), before.pop("run.log", None)
    assert after == before


@pytest.mark.parametrize("override", ["seed=3", "training.batch_size=8", "data.test_per_class=2",
                                      "model.backbone=mlp", "privacy={curious: 1}", "rounds=1", "rounds=x"])
def test_hostile_resume_overrides(capsys, earlier, override):
    target, unchanged = earlier
    _run_cli(capsys, ["run", "--resume", str(target), "--no-progress", "--set", override])
    unchanged()


def test_resume_and_file_together(tmp_path, capsys, earlier):
    target, unchanged = earlier
    _run_cli(capsys, ["run", str(tmp_path / "x.yaml"), "--resume", str(target)])
    unchanged()


# --------------------------------------------------------------------------- fedsim plot

def _damage_plot(target, tmp_path, kind):
    if kind == "missing":
        return tmp_path / "nope"
    if kind == "a-file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file"
    if kind == "row-without-accuracy":
        (target / "metrics.jsonl").write_text(json.dumps({"round": 1}) + "\n")
    elif kind == "summary-garbage":
        (target / "summary.json").write_bytes(b"{not json")
    elif kind == "summary-a-list":
        (target / "summary.json").write_text("[1, 2]")
    elif kind == "summary-bad-ids":
        summary = json.loads((target / "summary.json").read_text())
        summary["byzantine_ids"] = ["x", 10 ** 9]
        (target / "summary.json").write_text(json.dumps(summary))
    elif kind == "config-invalid":
        (target / "config.yaml").write_text("topology: {n_peers: [\n")
    elif kind == "config-impossible":
        config = yaml.safe_load((target / "config.yaml").read_text())
        config["topology"]["n_peers"] = 10 ** 9
        (target / "config.yaml").write_text(yaml.safe_dump(config))
    elif kind == "privacy-garbage":
        (target / "privacy.pt").write_bytes(b"PK\x03\x04garbage")
    elif kind == "privacy-wrong-object":
        torch.save({"not": "a list"}, target / "privacy.pt")
    elif kind == "privacy-bad-pairs":
        torch.save([{"true": torch.zeros(2, 1, 8, 8), "rebuilt": torch.zeros(2, 1, 8, 8), "pairs": [[-5, 0]],
                     "victim": 1, "round": 1}], target / "privacy.pt")
    elif kind == "plots-a-file":
        shutil.rmtree(target / "plots", ignore_errors=True)
        (target / "plots").write_text("x")
    else:
        raise AssertionError(kind)
    return target


PLOT_KINDS = ["missing", "a-file", "row-without-accuracy", "summary-garbage", "summary-a-list", "summary-bad-ids",
              "config-invalid", "config-impossible", "privacy-garbage", "privacy-wrong-object", "privacy-bad-pairs",
              "plots-a-file"]


@pytest.mark.parametrize("kind", PLOT_KINDS)
def test_hostile_plot(tmp_path, capsys, earlier, kind):
    target, _ = earlier
    directory = _damage_plot(target, tmp_path, kind)
    before = _snapshot(target)
    _run_cli(capsys, ["plot", str(directory)])
    assert _snapshot(target) == before


def test_the_suite_has_at_least_100_cases():
    count = (len(YAML_CASES) + 3 + len(SET_SYNTAX) + len(NUMBERS) + 7 * 2 + 10 + 3 + 4 * 2 + len(RESUME_KINDS) + 7
             + 1 + len(PLOT_KINDS))
    assert count >= 100, count
