"""Scenario schema, YAML loading, validation and ``--set`` overrides.

``load(path, overrides)`` returns a validated, frozen :class:`Scenario`. Every user
error raises :class:`ScenarioError` whose message names the file, the key path and
what is allowed; the command line prints it as one ``error:`` line (exit 2).
"""
from __future__ import annotations

import copy
import difflib
import math
import os
import re
import stat
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fedsim.params import ParameterError, RunFacts


class ScenarioError(Exception):
    """A user error in a scenario: one line, shown as ``error: <message>``."""


class UnreadableFile(ValueError):
    """A file named by the user that cannot be read as text: one line naming it and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NamedArgs(_Strict):
    name: str = Field(description="registered name (fedsim list ...)")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the named implementation")


class DefenseSpec(NamedArgs):
    name: str = Field("mean", description="aggregation rule (fedsim list defenses)")


class AttackSpec(NamedArgs):
    name: str = Field("gaussian", description="Byzantine attack (fedsim list attacks)")


class InversionSpec(NamedArgs):
    name: str = Field("gifd", description="gradient inversion attack (fedsim list inversions)")


class PrivacyDefenseSpec(NamedArgs):
    name: str = Field("none", description="sender-side privacy transform (fedsim list privacy_defenses)")


class Partition(_Strict):
    kind: str = Field("dirichlet", description="how training data is split among peers (fedsim list partitions)")
    alpha: float = Field(0.5, gt=0, description="dirichlet concentration: smaller is more non-i.i.d.")
    classes_per_peer: int = Field(4, ge=1, description="shards, cyclic: classes each peer holds; drift: per phase")
    min_samples: int = Field(10, ge=1, description="dirichlet: redraw until every peer has at least this many samples")
    phases: int = Field(2, ge=1, description="drift: class sets each peer goes through, in turn (cycling)")
    drift_every: int = Field(10, ge=1, description="drift: rounds each class set lasts")
    stagger: int = Field(1, ge=0, description="drift: class offset between consecutive peers (0: every peer "
                         "holds the same classes in a phase)")


class Data(_Strict):
    dataset: str = Field("digits", description="dataset name (fedsim list datasets)")
    root: Optional[str] = Field(None, description="dataset directory; null = default search path")
    test_fraction: float = Field(0.2, gt=0, lt=1,
                                 description="global test share, for datasets without an official test split")
    public_fraction: float = Field(0.2, ge=0, lt=1,
                                   description="training share reserved to pre-train the backbone (never given to peers)")
    test_per_class: int = Field(10, ge=0, description="kappa: per-peer local test samples of each held class")
    partition: Partition = Field(default_factory=Partition,
                                 description="split of the private training data among peers")
    args: dict[str, Any] = Field(default_factory=dict, description="extra keyword arguments of the dataset loader")


class Pretrain(_Strict):
    epochs: int = Field(10, ge=0, description="pre-training epochs on the public split (0: none)")
    lr: float = Field(0.001, gt=0, description="pre-training learning rate (Adam)")
    batch_size: int = Field(64, ge=1, description="pre-training batch size")
    classes: Optional[list[int]] = Field(None, description="pre-train only on these classes; null = all")


class Model(_Strict):
    backbone: str = Field("cnn", description="frozen feature extractor (fedsim list backbones)")
    backbone_args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the backbone")
    head: str = Field("linear",
                      description="trained output layer and its loss: linear (softmax) | l2svm (fedsim list heads)")
    head_args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the head (l2svm: C)")
    head_init: Literal["random", "public"] = Field("random",
                                                   description="common initial head: random, or fitted on the public split")
    pretrain: Pretrain = Field(default_factory=Pretrain, description="backbone pre-training on the public split")


class Training(_Strict):
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="local optimizer of the head")
    lr: float = Field(0.05, gt=0, description="local learning rate")
    local_steps: int = Field(10, ge=1, description="local steps per round")
    batch_size: int = Field(32, ge=1, description="local batch size")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay of local training")
    missing_class_scale: float = Field(1.0, ge=0, le=1,
                                       description="logit scale of classes a peer lacks (FedRS; 1 = plain softmax, 0 = restricted)")
    # Bristle's reference (Node.kt updateCW): "keep" sends the rows of classes a peer lacks as
    # they were before local training; the peer's own head keeps every trained row.
    missing_class_rows: Literal["train", "keep"] = Field("train",
                                                         description="rows of lacking classes sent as trained (train) or as before training (keep)")
    z_loss: float = Field(0.0, ge=0, description="weight of the z-loss z_loss * (log Z)^2 added to the head's loss "
                          "(Wortsman et al. 2023; 0 = off, the paper uses 1e-4)")
    migu_quantile: float = Field(0.0, ge=0, lt=1, description="MIGU (Du et al. 2024): each local step updates only "
                                 "the head rows whose L1-normalised output magnitude on the batch is at least "
                                 "this quantile of the peer's rows (0 = off)")
    kernel: Literal["exact", "fast"] = Field("exact", description="local training's step: exact (the numbers of "
                                             "earlier releases, bit for bit) or fast (class-major logits and a fused "
                                             "SGD step, about 0.65 of the training time; the same numbers to "
                                             "float32 rounding)")


class Topology(_Strict):
    kind: str = Field("random_regular", description="graph builder (fedsim list topologies)")
    n_peers: int = Field(20, ge=2, description="number of peers")
    args: dict[str, Any] = Field(default_factory=dict,
                                 description="keyword arguments of the graph builder (degree, p, k, ...)")
    resample_every: int = Field(0, ge=0, description="0: static graph; k: a new graph of the same kind every k rounds")


class Adversary(_Strict):
    fraction: Optional[float] = Field(None, ge=0, le=1,
                                      description="share of peers that are Byzantine (give one of fraction, count, ids)")
    count: Optional[int] = Field(None, ge=0, description="number of Byzantine peers")
    ids: Optional[list[int]] = Field(None, description="the Byzantine peers' ids")
    placement: Literal["random", "degree", "betweenness"] = Field("random",
                                                                  description="how Byzantine peers are chosen: random | degree | betweenness (highest first)")
    omniscient: bool = Field(False, description="the attack sees every honest update of the round")
    knows_topology: bool = Field(False, description="the attack sees the graph")
    adaptive: bool = Field(False, description="the attack knows the defense in use")
    fast: bool = Field(False, description="async gossip: Byzantine peers send as often as their links allow "
                       "(every max(network.tick, bytes / bandwidth) s) instead of once per local training")
    attack: AttackSpec = Field(default_factory=AttackSpec, description="what Byzantine peers send")

    @model_validator(mode="after")
    def _one_size(self):
        given = [k for k in ("fraction", "count", "ids") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of fraction, count, ids (got {', '.join(given)})")
        return self


class Privacy(_Strict):
    curious: Union[int, list[int]] = Field(1, description="number of curious peers, or their ids")
    rounds: list[int] = Field(default_factory=lambda: [1], description="rounds at which curious peers reconstruct")
    victims: int = Field(4, ge=1, description="at most this many victims per curious peer")
    distinct_victims: bool = Field(False, description="attack each victim once a round (skip neighbours "
                                   "an earlier curious peer already attacks)")
    adaptive: bool = Field(False, description="the inversion attacker knows the privacy defense")
    attack: InversionSpec = Field(default_factory=InversionSpec,
                                  description="gradient inversion attack of the curious peers")
    defense: PrivacyDefenseSpec = Field(default_factory=PrivacyDefenseSpec, description="sender-side privacy defense")


class Distribution(_Strict):
    """A positive quantity drawn once per peer (compute) or per directed link (latency)."""
    kind: Literal["constant", "lognormal", "pareto"] = Field(
        "constant", description="constant | lognormal (mean, sigma) | pareto (mean, alpha: heavy-tailed)")
    mean: float = Field(0.0, ge=0, description="mean of the distribution (simulated seconds)")
    sigma: float = Field(0.5, ge=0, description="lognormal: standard deviation of the log")
    alpha: float = Field(2.0, gt=1, description="pareto: tail index (> 1, so that the mean exists)")


class ComputeTime(Distribution):
    mean: float = Field(1.0, ge=0, description="mean seconds of one local step")


class Latency(Distribution):
    mean: float = Field(0.0, ge=0, description="mean latency of a link (simulated seconds)")


class Links(_Strict):
    latency: Latency = Field(default_factory=Latency,
                             description="per directed link, drawn once (simulated seconds)")
    bandwidth: Optional[float] = Field(None, gt=0, description="bytes/s of every link; null = unlimited "
                                       "(transfer time = bytes on the wire / bandwidth + latency)")
    loss: float = Field(0.0, ge=0, le=1, description="probability that a message is lost")


class ChurnProcess(_Strict):
    up_mean: Optional[float] = Field(None, gt=0, description="mean online spell (simulated seconds, "
                                     "exponential); null = never leaves")
    down_mean: float = Field(1.0, gt=0, description="mean offline spell (simulated seconds, exponential)")
    join_at: float = Field(0.0, ge=0, description="simulated time of the first joining (offline before)")


class Churn(ChurnProcess):
    trace: Optional[str] = Field(None, description="CSV file of online spells: peer,start,end (replaces the "
                                 "exponential process; peers not listed are always online)")
    queue: bool = Field(False, description="messages that arrive while the receiver is offline wait for it "
                        "(true) or are lost (false)")
    attackers: Optional[ChurnProcess] = Field(None, description="the Byzantine peers' own churn; absent = "
                                              "the same process as honest peers")


class Network(_Strict):
    mode: Literal["sync", "async"] = Field("sync", description="sync: rounds with a barrier | async: "
                                           "event-driven gossip on a simulated clock")
    round_s: float = Field(1.0, gt=0, description="sync: simulated seconds per round (the clock of churn)")
    participation: float = Field(1.0, gt=0, le=1, description="sync: share of online peers drawn to take "
                                 "part in each round (client sampling)")
    compute: ComputeTime = Field(default_factory=ComputeTime,
                                 description="async: simulated seconds of one local step, drawn once per peer")
    compute_per_peer: Optional[list[float]] = Field(None, description="async: seconds of one local step of "
                                                    "each peer (replaces compute)")
    links: Links = Field(default_factory=Links, description="latency, bandwidth and loss of messages")
    churn: Optional[Churn] = Field(None, description="peers going offline and back; absent = always online")
    tick: float = Field(0.1, gt=0, description="async: simulated seconds merged into one batched step")
    duration_s: float = Field(100.0, gt=0, description="async: simulated seconds to run")
    eval_every_s: float = Field(10.0, gt=0, description="async: evaluate every this many simulated seconds")


class Backend(_Strict):
    name: Literal["local", "ray"] = Field("local", description="local (one process) | ray (actors)")
    address: Optional[str] = Field(None,
                                   description="ray: null = start a local instance; auto or ray://host:port = join")
    peers_per_actor: int = Field(16, ge=1, description="ray: peers stacked in each actor")
    num_cpus: Optional[int] = Field(None, ge=1, description="ray: CPUs of a local instance; null = all")
    device: Literal["cpu", "cuda"] = Field("cpu", description="where heads, features, local training and "
                                           "evaluation run: cpu | cuda (local backend; defenses merge on the CPU)")

    @model_validator(mode="after")
    def _device_available(self):
        if self.device == "cuda":
            import torch
            if not torch.cuda.is_available():
                raise ValueError("device: cuda requested, but torch.cuda.is_available() is false "
                                 "(no GPU, or a CPU-only torch build); use device: cpu")
            if self.name != "local":
                raise ValueError("device: cuda runs with the local backend only")
        return self


class Output(_Strict):
    dir: Optional[str] = Field(None, description="run directory; null = runs/<name>-<timestamp>")
    checkpoint_every: int = Field(10, ge=0, description="checkpoint every k rounds (0: only the last)")
    plots: bool = Field(True, description="draw figures into plots/ at the end")
    tensorboard: bool = Field(False, description="also write TensorBoard event files to tensorboard/ (tensorboardX)")
    target_accuracy: float = Field(0.9, gt=0, le=1, description="summary.json's rounds_to_accuracy: the first "
                                   "evaluated round whose accuracy_mean reaches it (Bristle's 90%)")
    save_heads: int = Field(0, ge=0, description="save the heads of this many honest peers (a seeded sample; "
                            "all if fewer) at every evaluated round into heads/, for `fedsim infoplane` (0 = none)")


class Scenario(_Strict):
    name: str = Field("scenario", description="scenario name (names the run directory)")
    seed: int = Field(0, ge=0, le=2**64 - 1, description="seed of every random draw")
    rounds: int = Field(30, ge=1, description="communication rounds")
    eval_every: int = Field(1, ge=1, description="evaluate every k rounds (and the last)")
    eval_samples: Optional[int] = Field(None, ge=1, description="evaluate on this many global test samples; null = all")
    data: Data = Field(default_factory=Data, description="dataset, splits and partition")
    model: Model = Field(default_factory=Model, description="backbone, head and pre-training")
    training: Training = Field(default_factory=Training, description="local training of the head")
    topology: Topology = Field(default_factory=Topology, description="communication graph")
    defense: DefenseSpec = Field(default_factory=DefenseSpec, description="aggregation rule of honest peers")
    adversary: Optional[Adversary] = Field(None, description="Byzantine peers; absent = none")
    privacy: Optional[Privacy] = Field(None, description="curious peers and gradient inversion; absent = none")
    network: Optional[Network] = Field(None, description="simulated network: async gossip, churn, loss, "
                                       "latency, participation; absent = synchronous rounds, every message arrives")
    backend: Backend = Field(default_factory=Backend, description="where peers run")
    output: Output = Field(default_factory=Output, description="what the run writes")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        # The name becomes a directory name (runs/<name>-<timestamp>): one path component,
        # short enough for every file system's 255-byte limit with the timestamp added.
        if not value or any(ch in value for ch in "/\\") or not value.isprintable():
            raise ValueError("must be a non-empty name without slashes or control characters")
        if len(value.encode()) > MAX_NAME_BYTES:
            raise ValueError(f"must be at most {MAX_NAME_BYTES} bytes; got {len(value.encode())}")
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
        if first["type"] == "value_error":  # our own validators' messages say what they got
            msg = msg.removeprefix("Value error, ")
        elif not isinstance(given, (dict, list)) and first["type"] != "missing":
            shown = repr(given)
            msg += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
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
    shown = text if len(text) <= 80 else text[:77] + "..."
    if "=" not in text:
        raise ScenarioError(f"--set {shown}: expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ScenarioError(f"--set {shown}: bad key path {key!r}")
    try:
        value = parse_yaml(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ScenarioError(f"--set {shown}: value is not valid YAML ({yaml_problem(exc).removeprefix('invalid YAML: ')})") from None
    return key.split("."), value


def apply_overrides(raw: dict, overrides) -> dict:
    data = copy.deepcopy(raw)
    for text in overrides or ():
        path, value = parse_override(text)
        shown = text if len(text) <= 80 else text[:77] + "..."
        node = data
        for part in path[:-1]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise ScenarioError(f"--set {shown}: {part} is not a mapping")
            node = node[part]
        node[path[-1]] = value
    return data


# What no scenario needs and a hostile file uses: refused before they can hang or exhaust memory.
MAX_SCENARIO_BYTES = 1 << 20     # scenarios are a few hundred bytes; 1 MiB leaves room for long id lists
MAX_YAML_DEPTH = 32              # the schema nests 4 levels; plugin args a few more
MAX_YAML_NODES = 100_000         # nodes after expanding aliases (a "billion laughs" expands to 10^9)
MAX_NAME_BYTES = 100             # the name is a directory name: runs/<name>-<timestamp>


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader (plain data only: no Python objects) that also refuses nesting
    deeper than ``MAX_YAML_DEPTH``, an alias inside the node it names (a recursive
    structure), and documents whose aliases expand to more than ``MAX_YAML_NODES`` nodes."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._open_anchors: set = set()

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise yaml.composer.ComposerError(None, None, f"recursive alias *{event.anchor} (an alias inside "
                                                  "the node it names)", event.start_mark)
            return super().compose_node(parent, index)
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels",
                                              event.start_mark)
        self._depth += 1
        if event.anchor is not None:
            self._open_anchors.add(event.anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open_anchors.discard(event.anchor)

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_YAML_NODES:
            raise yaml.composer.ComposerError(None, None, f"aliases expand to more than {MAX_YAML_NODES} nodes",
                                              node.start_mark)
        return node


# YAML 1.2 reads "1e12" and "1e-3" as numbers; PyYAML's YAML 1.1 rules need a dot and a
# signed exponent ("1.0e+12") and would hand the plugins the string "1e12".
_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _expanded_size(node, memo: dict) -> int:
    """Number of nodes once every alias is replaced by a copy of what it names
    (memoised per node, so a bomb is measured without being expanded)."""
    if id(node) not in memo:
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        memo[id(node)] = 1 + sum(_expanded_size(child, memo) for child in children)
    return memo[id(node)]


def parse_yaml(text: str):
    """Plain data from YAML text, through :class:`_BoundedLoader`; raises ``yaml.YAMLError``."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: where (line, column) and what PyYAML found wrong."""
    if isinstance(exc, yaml.reader.ReaderError):
        return f"invalid YAML: character #x{exc.character:04x} at position {exc.position} is not allowed"
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    if context and problem == "second occurrence":  # PyYAML's duplicate-anchor wording
        context, problem = None, context.split(";")[0]
    return f"{where}invalid YAML: {f'{context}: ' if context else ''}{problem}"


def read_text_file(path, limit: int, what: str) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes; anything else is a
    :class:`UnreadableFile` naming the path and the reason (never a hang on a device or a pipe)."""
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # before open(): opening a FIFO would block
            raise UnreadableFile(f"{path}: cannot read {what}: not a regular file")
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise UnreadableFile(f"{path}: no such file") from None
    except OSError as exc:
        raise UnreadableFile(f"{path}: cannot read {what}: {exc.strerror or exc.__class__.__name__}") from None
    if len(data) > limit:
        raise UnreadableFile(f"{path}: cannot read {what}: larger than {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile(f"{path}: cannot read {what}: not UTF-8 text") from None


def read_yaml(path) -> dict:
    path = Path(path)
    try:
        text = read_text_file(path, MAX_SCENARIO_BYTES, "scenario")
    except UnreadableFile as exc:
        raise ScenarioError(str(exc)) from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: {yaml_problem(exc)}") from None
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


def _check_args(source, key, kind, name, args: dict, facts):
    """The plugin's declared parameter constraints and run checks (fedsim.params), so
    that bad arguments fail now, with the same message as ``registry.create``."""
    from fedsim.registry import validate_args
    try:
        validate_args(kind, name, args, prefix=key, facts=facts)
    except ParameterError as exc:
        raise ScenarioError(f"{source}: {exc}") from None


def run_facts(s: Scenario, graph) -> RunFacts:
    """What the scenario fixes about the run, for the plugins' ``check_run`` hooks (the
    number of classes from the dataset's declaration, without loading it). The
    neighbour counts come from the graph when it is static (a resampled graph may
    differ from round to round: then only ``n_peers`` bounds them)."""
    degrees = [d for _, d in graph.degree()] if s.topology.resample_every == 0 and len(graph) else None
    from fedsim.data.datasets import class_count
    return RunFacts(n_peers=s.topology.n_peers, n_byzantine=adversary_count(s),
                    min_neighbours=min(degrees) if degrees else None,
                    max_neighbours=max(degrees) if degrees else None,
                    n_classes=class_count(s.data.dataset, s.data.args))


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


def total_memory_bytes() -> int:
    """Physical memory of this machine (``os.sysconf``; 0 where unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _int_or(value, default: int) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else default


def _feature_dim_estimate(s: Scenario) -> int:
    """The backbone's feature_dim from its (defaulted) arguments; 64 where it cannot be told."""
    from fedsim.models.features import resolved_backbone_args
    try:
        args = resolved_backbone_args(s.model.backbone, s.model.backbone_args)
    except Exception:  # an unknown backbone is reported by the name check
        return 64
    if "feature_dim" in args:
        return _int_or(args["feature_dim"], 64)
    hidden = args.get("hidden")
    return _int_or(hidden[-1], 64) if isinstance(hidden, (list, tuple)) and hidden else 64


def check_sizes(s: Scenario, source: str, memory: int | None = None) -> None:
    """Refuse sizes that cannot fit in this machine's memory before anything is built.

    Estimates (float32 = 4 bytes): heads ``n * C * (D + 1) * 4`` (the engine holds at
    least 3 such tensors: heads, sent, merged); one round's batch draws
    ``n * local_steps * batch_size * 24`` (uniform draws, positions, rows) plus one peer's
    batch features ``local_steps * batch_size * 4 (D + 1)`` (training gathers them in
    chunks of peers; README "Memory model");
    the synthetic dataset ``n_samples * dim * 24`` (three float64 arrays while drawing).
    ``C`` is ``data.args.n_classes`` or 10, ``D`` the backbone's feature_dim.
    """
    memory = total_memory_bytes() if memory is None else memory
    if memory <= 0:
        return
    gb = lambda b: f"{b / 1e9:,.0f} GB" if b >= 1e10 else f"{b / 1e9:.2g} GB"  # noqa: E731
    have = f"this machine has {gb(memory)}"
    n, t = s.topology.n_peers, s.training
    classes = _int_or(s.data.args.get("n_classes"), 10)
    dim = _feature_dim_estimate(s)
    heads = n * classes * (dim + 1) * 4
    if 3 * heads > memory:
        raise ScenarioError(f"{source}: topology.n_peers: {n} peers need ~{gb(heads)} for heads alone "
                            f"(~{gb(3 * heads)} with the engine's copies); {have}")
    batches = n * t.local_steps * t.batch_size * 24 + t.local_steps * t.batch_size * 4 * (dim + 1)
    if batches > memory:
        key = "local_steps" if t.local_steps >= t.batch_size else "batch_size"
        raise ScenarioError(f"{source}: training.{key}: {t.local_steps} local steps of batch_size {t.batch_size} "
                            f"on {n} peers need ~{gb(batches)} per round for the mini-batches; {have}")
    if s.data.dataset == "synthetic":
        samples = s.data.args.get("n_samples", 10000)
        if isinstance(samples, (int, float)) and not isinstance(samples, bool) and math.isfinite(samples):
            need = samples * _int_or(s.data.args.get("dim"), 32) * 24
            if need > memory:
                raise ScenarioError(f"{source}: data.args.n_samples: {samples:g} samples need ~{gb(need)} "
                                    f"to draw; {have}")


def check_semantics(s: Scenario, source: str) -> None:
    n = s.topology.n_peers
    check_sizes(s, source)
    _check_name(source, "data.dataset", "datasets", s.data.dataset)
    _check_name(source, "data.partition.kind", "partitions", s.data.partition.kind)
    _check_name(source, "model.backbone", "backbones", s.model.backbone)
    _check_name(source, "model.head", "heads", s.model.head)
    _check_args(source, "model.head_args", "heads", s.model.head, s.model.head_args, RunFacts())
    if s.model.pretrain.classes is not None and not s.model.pretrain.classes:
        raise ScenarioError(f"{source}: model.pretrain.classes: must be null or a non-empty list")
    _check_args(source, "data.args", "datasets", s.data.dataset, s.data.args, RunFacts())
    _check_args(source, "model.backbone_args", "backbones", s.model.backbone, s.model.backbone_args, RunFacts())
    _check_name(source, "topology.kind", "topologies", s.topology.kind)
    _check_args(source, "topology.args", "topologies", s.topology.kind, s.topology.args, RunFacts(n_peers=n))
    from fedsim.topology import TopologyError, build
    try:
        graph = build(s.topology.kind, n, s.seed, dict(s.topology.args), keep=True)  # the run takes it over
    except TypeError as exc:
        raise ScenarioError(f"{source}: topology.args: {exc}") from None
    except (TopologyError, ValueError) as exc:
        raise ScenarioError(f"{source}: topology: {exc}") from None
    facts = run_facts(s, graph)
    _check_name(source, "defense.name", "defenses", s.defense.name)
    _check_args(source, "defense.args", "defenses", s.defense.name, s.defense.args, facts)
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
        _check_name(source, "adversary.attack.name", "attacks", adv.attack.name)
        _check_args(source, "adversary.attack.args", "attacks", adv.attack.name, adv.attack.args, facts)
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
        _check_name(source, "privacy.attack.name", "inversions", p.attack.name)
        _check_args(source, "privacy.attack.args", "inversions", p.attack.name, p.attack.args, facts)
        _check_name(source, "privacy.defense.name", "privacy_defenses", p.defense.name)
        _check_args(source, "privacy.defense.args", "privacy_defenses", p.defense.name, p.defense.args, facts)
    if s.backend.name == "local" and s.backend.address is not None:
        raise ScenarioError(f"{source}: backend.address: only used with backend.name: ray")
    if s.network is not None:
        from fedsim.network.validate import problems
        for key, message in problems(s)[:1]:
            raise ScenarioError(f"{source}: {key}: {message}")
