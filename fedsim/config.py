"""Scenario schema, YAML loading, validation and ``--set`` overrides.

``load(path, overrides)`` returns a validated, frozen :class:`Scenario`. Every user
error raises :class:`ScenarioError` whose message names the file, the key path and
what is allowed; the command line prints it as one ``error:`` line (exit 2).
"""
from __future__ import annotations

import copy
import difflib
import inspect
import math
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ScenarioError(Exception):
    """A user error in a scenario: one line, shown as ``error: <message>``."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NamedArgs(_Strict):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class DefenseSpec(NamedArgs):
    name: str = "mean"


class AttackSpec(NamedArgs):
    name: str = "gaussian"


class InversionSpec(NamedArgs):
    name: str = "gifd"


class PrivacyDefenseSpec(NamedArgs):
    name: str = "none"


class Partition(_Strict):
    kind: str = "dirichlet"
    alpha: float = Field(0.5, gt=0)
    classes_per_peer: int = Field(4, ge=1)
    min_samples: int = Field(10, ge=1)


class Data(_Strict):
    dataset: str = "digits"
    root: Optional[str] = None
    test_fraction: float = Field(0.2, gt=0, lt=1)
    public_fraction: float = Field(0.2, ge=0, lt=1)
    test_per_class: int = Field(10, ge=0)
    partition: Partition = Field(default_factory=Partition)
    args: dict[str, Any] = Field(default_factory=dict)


class Pretrain(_Strict):
    epochs: int = Field(10, ge=0)
    lr: float = Field(0.001, gt=0)
    batch_size: int = Field(64, ge=1)
    classes: Optional[list[int]] = None


class Model(_Strict):
    backbone: str = "cnn"
    backbone_args: dict[str, Any] = Field(default_factory=dict)
    head: str = "linear"
    head_init: Literal["random", "public"] = "random"
    pretrain: Pretrain = Field(default_factory=Pretrain)


class Training(_Strict):
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.05, gt=0)
    local_steps: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    missing_class_scale: float = Field(1.0, ge=0, le=1)


class Topology(_Strict):
    kind: str = "random_regular"
    n_peers: int = Field(20, ge=2)
    args: dict[str, Any] = Field(default_factory=dict)
    resample_every: int = Field(0, ge=0)


class Adversary(_Strict):
    fraction: Optional[float] = Field(None, ge=0, le=1)
    count: Optional[int] = Field(None, ge=0)
    ids: Optional[list[int]] = None
    placement: Literal["random", "degree", "betweenness"] = "random"
    omniscient: bool = False
    knows_topology: bool = False
    adaptive: bool = False
    attack: AttackSpec = Field(default_factory=AttackSpec)

    @model_validator(mode="after")
    def _one_size(self):
        given = [k for k in ("fraction", "count", "ids") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of fraction, count, ids (got {', '.join(given)})")
        return self


class Privacy(_Strict):
    curious: Union[int, list[int]] = 1
    rounds: list[int] = Field(default_factory=lambda: [1])
    victims: int = Field(4, ge=1)
    adaptive: bool = False
    attack: InversionSpec = Field(default_factory=InversionSpec)
    defense: PrivacyDefenseSpec = Field(default_factory=PrivacyDefenseSpec)


class Backend(_Strict):
    name: Literal["local", "ray"] = "local"
    address: Optional[str] = None
    peers_per_actor: int = Field(16, ge=1)
    num_cpus: Optional[int] = Field(None, ge=1)


class Output(_Strict):
    dir: Optional[str] = None
    checkpoint_every: int = Field(10, ge=0)
    plots: bool = True


class Scenario(_Strict):
    name: str = "scenario"
    seed: int = Field(0, ge=0)
    rounds: int = Field(30, ge=1)
    eval_every: int = Field(1, ge=1)
    eval_samples: Optional[int] = Field(None, ge=1)
    data: Data = Field(default_factory=Data)
    model: Model = Field(default_factory=Model)
    training: Training = Field(default_factory=Training)
    topology: Topology = Field(default_factory=Topology)
    defense: DefenseSpec = Field(default_factory=DefenseSpec)
    adversary: Optional[Adversary] = None
    privacy: Optional[Privacy] = None
    backend: Backend = Field(default_factory=Backend)
    output: Output = Field(default_factory=Output)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not value or any(ch in value for ch in "/\\\0"):
            raise ValueError("must be a non-empty name without slashes")
        return value

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------------------
# loading and overrides


def _key_path(loc) -> str:
    return ".".join(str(part) for part in loc)


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = tuple(first.get("loc", ()))
    path = _key_path(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        parent = _model_at(Scenario, loc[:-1])
        allowed = sorted(parent.model_fields) if parent is not None else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=2)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        msg = f"unknown key{hint}; allowed: {', '.join(allowed)}"
    else:
        msg = first["msg"]
        if first["type"].startswith("literal"):
            msg = msg.replace("Input should be", "must be")
        given = first.get("input")
        if not isinstance(given, (dict, list)) and first["type"] != "missing":
            msg += f" (got {given!r})"
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {path}: {msg}{tail}"


def _model_at(model, loc):
    for part in loc:
        field = model.model_fields.get(str(part)) if hasattr(model, "model_fields") else None
        if field is None:
            return None
        ann = field.annotation
        inner = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif inner:
            model = inner[0]
        else:
            return None
    return model


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` -> (["a", "b"], YAML-typed value)."""
    if "=" not in text:
        raise ScenarioError(f"--set {text}: expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ScenarioError(f"--set {text}: bad key path {key!r}")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ScenarioError(f"--set {text}: value is not valid YAML ({exc.problem})") from None
    return key.split("."), value


def apply_overrides(raw: dict, overrides) -> dict:
    data = copy.deepcopy(raw)
    for text in overrides or ():
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise ScenarioError(f"--set {text}: {part} is not a mapping")
            node = node[part]
        node[path[-1]] = value
    return data


def read_yaml(path) -> dict:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read scenario ({exc.__class__.__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ScenarioError(f"{path}:{where} invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario must be a YAML mapping, not {type(data).__name__}")
    return data


def from_dict(data: dict, source: str = "<scenario>", overrides=None) -> Scenario:
    data = apply_overrides(data, overrides)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(_format_validation_error(err, source)) from None
    check_semantics(scenario, source)
    return scenario


def load(path, overrides=None) -> Scenario:
    """Read, override, validate: the frozen :class:`Scenario` of a YAML file."""
    return from_dict(read_yaml(path), str(path), overrides)


# ---------------------------------------------------------------------------
# semantic checks (names, arguments, combinations)


def _check_name(source, key, kind, name):
    from fedsim.registry import UnknownNameError, lookup
    try:
        return lookup(kind, name)
    except UnknownNameError as exc:
        raise ScenarioError(f"{source}: {key}: {exc}") from None


def _check_args(source, key, factory, args: dict, name: str):
    """Instantiate ``factory(**args)`` so that bad arguments fail now, not mid-run."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [p for p, v in params.items() if v.kind is not inspect.Parameter.VAR_KEYWORD and p != "self"]
    for arg in args:
        if not takes_kwargs and arg not in allowed:
            close = difflib.get_close_matches(arg, allowed, n=2)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ScenarioError(f"{source}: {key}.{arg}: unknown argument of {name}{hint}; "
                                f"allowed: {', '.join(allowed) or 'none'}")
    try:
        return factory(**args)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{source}: {key}: {exc}") from None


def adversary_count(scenario: Scenario) -> int:
    adv = scenario.adversary
    n = scenario.topology.n_peers
    if adv is None:
        return 0
    if adv.ids is not None:
        return len(set(adv.ids))
    if adv.count is not None:
        return adv.count
    if adv.fraction is not None:
        return int(math.floor(adv.fraction * n + 0.5))
    return 0


def check_semantics(s: Scenario, source: str) -> None:
    n = s.topology.n_peers
    _check_name(source, "data.dataset", "datasets", s.data.dataset)
    _check_name(source, "data.partition.kind", "partitions", s.data.partition.kind)
    _check_name(source, "model.backbone", "backbones", s.model.backbone)
    _check_name(source, "model.head", "heads", s.model.head)
    if s.model.pretrain.classes is not None and not s.model.pretrain.classes:
        raise ScenarioError(f"{source}: model.pretrain.classes: must be null or a non-empty list")
    builder = _check_name(source, "topology.kind", "topologies", s.topology.kind)
    from fedsim.topology import TopologyError
    try:
        builder(n, seed=s.seed, **s.topology.args)
    except TypeError as exc:
        raise ScenarioError(f"{source}: topology.args: {exc}") from None
    except (TopologyError, ValueError) as exc:
        raise ScenarioError(f"{source}: topology: {exc}") from None
    defense = _check_name(source, "defense.name", "defenses", s.defense.name)
    _check_args(source, "defense.args", defense, s.defense.args, s.defense.name)
    n_byz = adversary_count(s)
    if s.adversary is not None:
        adv = s.adversary
        if adv.ids is not None:
            bad = [i for i in adv.ids if not 0 <= i < n]
            if bad:
                raise ScenarioError(f"{source}: adversary.ids: peer ids must be in 0..{n - 1} (got {bad[0]})")
        if n_byz >= n:
            raise ScenarioError(f"{source}: adversary: {n_byz} Byzantine peers leave no honest peer "
                                f"among topology.n_peers={n}; use fewer than {n}")
        attack = _check_name(source, "adversary.attack.name", "attacks", adv.attack.name)
        _check_args(source, "adversary.attack.args", attack, adv.attack.args, adv.attack.name)
    if s.privacy is not None:
        p = s.privacy
        n_curious = len(set(p.curious)) if isinstance(p.curious, list) else p.curious
        if isinstance(p.curious, list) and any(not 0 <= i < n for i in p.curious):
            raise ScenarioError(f"{source}: privacy.curious: peer ids must be in 0..{n - 1}")
        if n_curious < 1 or n_curious + n_byz >= n:
            raise ScenarioError(f"{source}: privacy.curious: {n_curious} curious + {n_byz} Byzantine peers "
                                f"must leave at least one victim among {n} peers (and at least 1 curious)")
        bad_rounds = [r for r in p.rounds if not 1 <= r <= s.rounds]
        if not p.rounds or bad_rounds:
            raise ScenarioError(f"{source}: privacy.rounds: rounds must lie in 1..{s.rounds}"
                                + (f" (got {bad_rounds[0]})" if bad_rounds else " (got none)"))
        inv = _check_name(source, "privacy.attack.name", "inversions", p.attack.name)
        _check_args(source, "privacy.attack.args", inv, p.attack.args, p.attack.name)
        pdef = _check_name(source, "privacy.defense.name", "privacy_defenses", p.defense.name)
        _check_args(source, "privacy.defense.args", pdef, p.defense.args, p.defense.name)
    if s.backend.name == "local" and s.backend.address is not None:
        raise ScenarioError(f"{source}: backend.address: only used with backend.name: ray")
    if s.eval_samples is not None and s.eval_samples < 1:
        raise ScenarioError(f"{source}: eval_samples: must be >= 1")
