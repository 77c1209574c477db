"""The one parameter vocabulary (fedsim.params): every registered plugin's declared
constraints refuse what they should with one message format, through
``registry.create`` and through ``fedsim validate`` alike, and accept their boundaries.

Invalid and valid values are generated from each declared constraint (after
scikit-learn's ``generate_invalid_param_val``); the hand-written messages below pin the
format itself.
"""
from __future__ import annotations

import math
import re

import pytest
import yaml

from fedsim import config, params, registry
from fedsim.cli import main
from fedsim.params import Interval, ListOf, Options, ParameterError

registry.load_plugins()

# Where each kind's arguments sit in a scenario, and a scenario that uses the plugin.
SCENARIO_KEY = {"defenses": "defense.args", "attacks": "adversary.attack.args",
                "inversions": "privacy.attack.args", "privacy_defenses": "privacy.defense.args",
                "topologies": "topology.args", "datasets": "data.args", "backbones": "model.backbone_args",
                "heads": "model.head_args"}
N_PEERS = 10  # complete graph: every peer has 9 neighbours
# What the engine passes besides the scenario's arguments (the gru reads sequences: 8 rows of 8).
SUPPLIED = {"topologies": (N_PEERS,), "backbones": ((1, 8, 8),), ("backbones", "gru"): ((8, 8),)}


def supplied(kind: str, name: str) -> tuple:
    return SUPPLIED.get((kind, name), SUPPLIED.get(kind, ()))
# Arguments that make another argument's boundary value usable (cross-argument checks).
COMPANIONS = {("datasets", "synthetic", "n_samples"): {"n_classes": 2}}


def scenario(kind: str, name: str, args: dict) -> dict:
    s = {"name": "params", "rounds": 2, "topology": {"kind": "complete", "n_peers": N_PEERS}}
    spec = {"name": name, "args": args}
    if kind == "topologies":
        s["topology"] = {"kind": name, "n_peers": N_PEERS, "args": args}
    elif kind == "datasets":
        s["data"] = {"dataset": name, "args": args}
    elif kind == "backbones":
        s["model"] = {"backbone": name, "backbone_args": args}
    elif kind == "heads":
        s["model"] = {"head": name, "head_args": args}
    elif kind == "defenses":
        s["defense"] = spec
    elif kind == "attacks":
        s["adversary"] = {"count": 2, "attack": spec}
    elif kind == "inversions":
        s["privacy"] = {"curious": 1, "attack": spec}
    else:
        s["privacy"] = {"curious": 1, "defense": spec}
    return s


def validate_cli(tmp_path, capsys, data: dict) -> tuple[int, list[str]]:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    code = main(["validate", str(path)])
    return code, capsys.readouterr().err.strip().splitlines()


def declared():
    return [(kind, name, arg) for kind in registry.DECLARED_KINDS for name in registry.names(kind)
            for arg in registry.lookup(kind, name).parameters]


def test_every_plugin_of_the_scenario_kinds_declares_its_parameters():
    for kind in registry.DECLARED_KINDS:
        assert registry.names(kind)
        for name in registry.names(kind):
            plugin = registry.lookup(kind, name)
            # The declaration names exactly the keyword arguments (register checks it too).
            params.check_declaration(plugin, registry.DECLARED_KINDS[kind])
            for arg, default in params.defaults(plugin).items():
                assert params._satisfies(plugin.parameters[arg], default), (kind, name, arg, default)
    # A dataset says how many classes it has without loading (for class-id arguments).
    from fedsim.data.datasets import class_count
    assert [class_count(name, {}) for name in ("digits", "fashion_mnist", "synthetic")] == [10, 10, 10]
    assert class_count("synthetic", {"n_classes": 3}) == 3


@pytest.mark.parametrize("kind,name,arg", declared())
def test_invalid_values_are_refused_with_one_message(kind, name, arg, tmp_path, capsys):
    """Every generated bad value: the same message from registry.create and from scenario
    validation (with the key path in front); the command line shows it for the first one
    as its one ``error:`` line, exit 2 (the rest go through config.from_dict, the same
    checks without the YAML file and argument parsing, to keep the test fast)."""
    constraints = registry.lookup(kind, name).parameters[arg]
    bad_values = params.invalid_values(constraints)
    # Whatever the generator says: a number argument refuses a bool, a string, nan and inf.
    if all(c is None or isinstance(c, Interval) for c in params._as_list(constraints)):
        for value in (True, "1", math.nan, math.inf, -math.inf):
            with pytest.raises(ParameterError):
                registry.create(kind, name, *supplied(kind, name), **{arg: value})
            assert any(type(v) is type(value) and repr(v) == repr(value) for v in bad_values), value
    for number, value in enumerate(bad_values):
        with pytest.raises(ParameterError) as info:
            registry.create(kind, name, *supplied(kind, name), **{arg: value})
        message = str(info.value)
        assert re.fullmatch(rf"{arg}: must be .+; got {re.escape(repr(value))}", message), message
        with pytest.raises(config.ScenarioError) as info:
            config.from_dict(scenario(kind, name, {arg: value}), "scenario.yaml")
        assert str(info.value) == f"scenario.yaml: {SCENARIO_KEY[kind]}.{message}"
        if number == 0:
            code, lines = validate_cli(tmp_path, capsys, scenario(kind, name, {arg: value}))
            assert code == 2 and lines == [f"error: {tmp_path / 'scenario.yaml'}: {SCENARIO_KEY[kind]}.{message}"]


@pytest.mark.parametrize("kind,name,arg", declared())
def test_valid_boundary_values_are_accepted(kind, name, arg, tmp_path, capsys):
    constraints = registry.lookup(kind, name).parameters[arg]
    for value in params.valid_values(constraints):
        if (kind, name, arg) == ("topologies", "edgelist", "path") and value is not None:
            value = str(tmp_path / "edges.txt")   # a string naming a real edge list
            (tmp_path / "edges.txt").write_text("0 1\n")
        args = {**COMPANIONS.get((kind, name, arg), {}), arg: value}
        if kind == "datasets":   # building would load the data: only the check here
            registry.validate_args(kind, name, args)
        else:
            registry.create(kind, name, *supplied(kind, name), **args)
        config.from_dict(scenario(kind, name, args), "scenario.yaml")


@pytest.mark.parametrize("kind,name,args,message", [
    ("defenses", "bristle", {"beta": 10.0}, "beta: must be an int >= 1; got 10.0"),
    ("defenses", "bristle", {"alpha": math.nan}, "alpha: must be a number in [0, 1]; got nan"),
    ("defenses", "bristle", {"test_size": True}, "test_size: must be null or an int >= 1; got True"),
    ("attacks", "sign_flip", {"scale": True}, "scale: must be a finite number > 0; got True"),
    ("attacks", "gaussian", {"std": math.inf}, "std: must be a finite number >= 0; got inf"),
    ("attacks", "gaussian", {"center": "mean"}, "center: must be one of 'zero', 'honest_mean'; got 'mean'"),
    ("privacy_defenses", "quantize", {"bits": 1}, "bits: must be an int in 2..16; got 1"),
    ("privacy_defenses", "topk", {"fraction": 0.0}, "fraction: must be null or a number in (0, 1]; got 0.0"),
    ("inversions", "gifd", {"radii": [-1.0]},
     "radii: must be null or a list of items that are each a finite number >= 0; got [-1.0]"),
    ("defenses", "geometric_median", {"max_iter": 2.0}, "max_iter: must be an int >= 0; got 2.0"),
    ("defenses", "geometric_median", {"max_itr": 2},
     "max_itr: unknown argument of geometric_median (did you mean max_iter?); allowed: nu, max_iter, tol"),
    ("defenses", "trimmed_mean", {"f": 1, "beta": 0.1},
     "beta: must be null when f is given (give a count f or a fraction beta, not both); got 0.1"),
    ("privacy_defenses", "topk", {"fraction": 0.5, "k": 3},
     "k: must be null when fraction is given (give fraction or k, not both); got 3"),
])
def test_the_message_format(kind, name, args, message):
    with pytest.raises(ParameterError) as info:
        registry.create(kind, name, **args)
    assert str(info.value) == message


@pytest.mark.parametrize("kind,name,args,key,message", [
    # complete graph on 10 peers: 9 neighbours each
    ("defenses", "krum", {"f": 10 ** 12}, "defense.args.f",
     "must be at most 9, the most neighbours a peer has in this topology; got 1000000000000"),
    ("defenses", "bulyan", {"f": 10}, "defense.args.f",
     "must be at most 9, the most neighbours a peer has in this topology; got 10"),
    ("defenses", "multi_krum", {"m": 11}, "defense.args.m",
     "must be at most 10, the most candidates a peer has (its own head and 9 neighbours); got 11"),
    ("attacks", "gaussian", {"std": math.nan}, "adversary.attack.args.std", "must be a finite number >= 0; got nan"),
    ("attacks", "alie", {"z": -math.inf}, "adversary.attack.args.z", "must be null or a finite number; got -inf"),
    ("attacks", "mimic", {"peer": 10}, "adversary.attack.args.peer",
     "must be a peer id below 10, the number of peers; got 10"),
    # digits: 10 classes
    ("attacks", "backdoor", {"target": 10}, "adversary.attack.args.target",
     "must be a class id below 10, the dataset's number of classes; got 10"),
    ("attacks", "label_flip", {"mapping": {"1": 10}}, "adversary.attack.args.mapping",
     "must map class ids below 10, the dataset's number of classes; got {'1': 10}"),
])
def test_arguments_relative_to_the_run_are_refused_at_validation(kind, name, args, key, message, tmp_path, capsys):
    code, lines = validate_cli(tmp_path, capsys, scenario(kind, name, args))
    assert code == 2
    assert lines == [f"error: {tmp_path / 'scenario.yaml'}: {key}: {message}"]


@pytest.mark.parametrize("n_peers,args,message", [
    (10, {"degree": 10}, "topology.args.degree: must be at most 9 for 10 peers; got 10"),
    (9, {"degree": 3}, "topology.args.degree: must be even for an odd number of peers (9): "
                       "degree * n_peers must be even; got 3"),
])
def test_topology_arguments_relative_to_n_peers(n_peers, args, message, tmp_path, capsys):
    data = {"topology": {"kind": "random_regular", "n_peers": n_peers, "args": args}}
    code, lines = validate_cli(tmp_path, capsys, data)
    assert code == 2 and lines == [f"error: {tmp_path / 'scenario.yaml'}: {message}"]


def test_neighbour_bound_follows_the_graph_and_its_resampling(tmp_path, capsys):
    ring = {"name": "ring", "topology": {"kind": "ring", "n_peers": N_PEERS},
            "defense": {"name": "trimmed_mean", "args": {"f": 3}}}
    code, lines = validate_cli(tmp_path, capsys, ring)
    assert code == 2 and lines[0].endswith(
        "defense.args.f: must be at most 2, the most neighbours a peer has in this topology; got 3")
    # The rule's documented fallback (f lowered so one value stays) takes f = 2 on a ring.
    ring["defense"]["args"]["f"] = 2
    assert validate_cli(tmp_path, capsys, ring) == (0, [])
    # A resampled graph may differ from round to round: only n_peers - 1 bounds f.
    ring["topology"]["resample_every"] = 1
    ring["defense"]["args"]["f"] = N_PEERS - 1
    assert validate_cli(tmp_path, capsys, ring) == (0, [])


def test_constraint_descriptions_and_generated_values():
    assert str(Interval(int, 0, None)) == "an int >= 0"
    assert str(Interval(int, 0, 5, closed="left")) == "an int in 0..4"
    assert str(Interval(float, 0, 1, closed="right")) == "a number in (0, 1]"
    assert str(Interval(float, 0.5, None, closed="neither")) == "a finite number > 0.5"
    assert str(Interval(float)) == "a finite number"
    assert params.describe([None, Options("a", "b")]) == "null or one of 'a', 'b'"
    # bool is not an int, 1.0 is not an int, nan/inf are not numbers
    checks = Interval(int, 0, None)
    assert [checks.is_satisfied_by(v) for v in (0, 3, True, 1.0, -1)] == [True, True, False, False, False]
    real = Interval(float, 0, 1, closed="right")
    assert [real.is_satisfied_by(v) for v in (1, 0.5, 0.0, math.nan, math.inf, False)] == \
        [True, True, False, False, False, False]
    # generated values: the open end itself and one step beyond the closed end are invalid
    assert 0 in params.invalid_values(real) and 2 in params.invalid_values(real)
    assert params.valid_values(Interval(int, 2, 16)) == [2, 16]
    assert params.valid_values(real)[:2] == [math.nextafter(0.0, 1.0), 1]
    assert ListOf(Interval(float, 0, None)).is_satisfied_by((0.0, 2))


def test_list_verbose_prints_parameters_defaults_constraints_paper_and_module(capsys):
    assert main(["list", "-v", "privacy_defenses"]) == 0
    out = capsys.readouterr().out
    block = next(b for b in out.split("\n\n") if b.startswith("quantize "))
    lines = block.splitlines()
    assert lines[0] == "quantize  (defenses.privacy.transforms)"
    assert "QSGD" in lines[1] or "quantization" in lines[1]
    assert lines[2] == "  bits = 8  (an int in 2..16)"
    assert "none  (defenses.privacy.transforms)\n" in out and "  no arguments" in out
    assert main(["list", "-v", "defenses"]) == 0
    out = capsys.readouterr().out
    assert set(b.split()[0] for b in out.strip().split("\n\n")) == set(registry.names("defenses"))
    assert "  tol = 1e-06  (a finite number >= 0)" in out


def test_a_run_fact_problem_names_the_fact_not_an_argument():
    def needs_even_peers(args, facts):
        return [("n_peers", f"must be even; got {facts.n_peers}")] if facts.n_peers % 2 else []

    @params.declare({"k": Interval(int, 0, None)}, needs_even_peers)
    def builder(n_peers, seed=0, k=1):
        return k

    params.validate(builder, {"k": 2}, name="toy", prefix="topology.args", facts=params.RunFacts(n_peers=4))
    with pytest.raises(ParameterError) as info:
        params.validate(builder, {"k": 2}, name="toy", prefix="topology.args", facts=params.RunFacts(n_peers=5))
    assert str(info.value) == "topology.args: n_peers must be even; got 5"
    with pytest.raises(ParameterError) as info:
        params.validate(builder, {}, name="toy", facts=params.RunFacts(n_peers=5))
    assert str(info.value) == "n_peers must be even; got 5"
