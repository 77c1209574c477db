"""The plugin interfaces: what fedsim asks of a defense, an attack, a privacy defense
and an inversion attack, what each may see, and what a backend offers the round loop.

fedsim imports nothing from the packages that fill these in (``defenses``,
``attacks``, or a user's own): they subclass the ABCs below and register their
classes by name (:mod:`fedsim.registry`); the engine calls only the methods declared
here (``tests/test_architecture.py`` checks both).

=================  ===========================================  ==========================================
interface          must implement                               may override (default)
=================  ===========================================  ==========================================
Defense            ``aggregate(own, received, ctx)``            ``aggregate_group`` (per-peer loop),
                                                                ``needs_context`` (False)
Attack             ``craft(view)``                              ``poisons_data`` + ``poison`` (no change),
                                                                ``claimed_num_classes`` (the truth),
                                                                ``evaluation_set`` (none),
                                                                ``online_spells`` (the scenario's churn)
PrivacyDefense     ``apply(delta, rng)``                        ``bytes_per_message`` (dense float32),
                                                                ``replay`` (one fixed draw), ``describe``
InversionAttack    ``reconstruct(update, backbone, gen, rng)``  ``prepare(public_images, cache, seed)``
                                                                (nothing to prepare)
Backend            (a Protocol: what ``runner.py`` calls)
=================  ===========================================  ==========================================

Data: :class:`PeerContext` (what a defense knows of the peer that runs it),
:class:`AttackerView` (what a Byzantine attack sees: the threat model),
:class:`PoisonedData` and :class:`EvaluationSet` (what data-poisoning attacks return),
:class:`VictimUpdate` and :class:`Reconstruction` (what an inversion attack observes
and returns), :class:`ArtifactCache` (where a plugin keeps what it learns once).
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import torch

__all__ = ["PeerContext", "AttackerView", "PoisonedData", "EvaluationSet", "VictimUpdate", "Reconstruction",
           "ArtifactCache", "Defense", "Attack", "PrivacyDefense", "InversionAttack", "Backend",
           "INVERSION_OPTIMIZERS", "INVERSION_LOSSES"]


def _repr(obj, items: dict) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in items.items())
    return f"{type(obj).__name__}({args})"


def _public_attributes(obj) -> dict:
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


# =============================================================================== data
@dataclass
class PeerContext:
    """What a defense may know about the peer that runs it.

    Attributes
    ----------
    peer_id, round: who and when.
    test_features, test_labels: the peer's local test set (``test_per_class``
        samples of each class it holds; Bristle's kappa), ``[m, D]`` and ``[m]``.
    classes: the class ids the peer holds (its "familiar" classes), sorted ``[q]``.
    n_classes: C, the number of classes of the task.
    rng: a ``torch.Generator`` seeded by (seed, peer, round, "defense").
    loss: the head's loss name (``linear`` or ``l2svm``).
    train_features, train_labels: the peer's own training data (for defenses that
        use it as a root of trust or a loss filter).
    previous_head: the peer's head at the start of the round, before local training;
        ``received - previous_head`` is a sender's update as seen from this peer.
    sender_ids: ``[k]`` the sender of each received head, in order.
    claimed_num_classes: ``[k]`` the number of classes each sender says it holds,
        -1 where not stated.
    state: a dict the engine keeps for this peer across rounds (checkpointed), for
        stateful rules (history-based ones such as FoolsGold).
    byzantine_neighbours: how many of this round's received messages came from
        Byzantine senders: an oracle (a real peer cannot know it), for rules whose
        ``f`` is set to the true count.
    degree: the peer's own degree in this round's graph.
    sender_degrees: ``[k]`` each sender's degree in this round's graph (for
        Metropolis-Hastings weights ``1 / (1 + max(degree, sender_degree))``).
    sender_class_overlap: ``[k]`` how many classes this peer shares with each sender,
        as private set intersection cardinality would reveal (Bristle's phi); a
        Byzantine sender that states another class count than its own is taken to
        claim this peer's classes first (``fedsim.engine.exchange.class_overlap``).
    ages_s, ages_updates: ``[k]`` in asynchronous gossip (``network.mode: async``), how
        old each received head is when merged: simulated seconds since it was sent, and
        how many updates its sender has made since; None in synchronous rounds (every
        head is of this round). ``round`` is then the tick (1-based).
    """

    peer_id: int
    round: int
    test_features: Optional[torch.Tensor] = None
    test_labels: Optional[torch.Tensor] = None
    classes: Optional[torch.Tensor] = None
    n_classes: int = 0
    rng: Optional[torch.Generator] = None
    loss: str = "linear"
    train_features: Optional[torch.Tensor] = None
    train_labels: Optional[torch.Tensor] = None
    previous_head: Optional[torch.Tensor] = None
    sender_ids: Optional[torch.Tensor] = None
    claimed_num_classes: Optional[torch.Tensor] = None
    state: dict = field(default_factory=dict)
    byzantine_neighbours: int = 0
    degree: int = 0
    sender_degrees: Optional[torch.Tensor] = None
    sender_class_overlap: Optional[torch.Tensor] = None
    ages_s: Optional[torch.Tensor] = None
    ages_updates: Optional[torch.Tensor] = None


@dataclass
class AttackerView:
    """Everything a Byzantine attack may see in one round (the threat model).

    Attributes
    ----------
    round: the current round (1-based).
    byzantine_ids: the Byzantine peers this attack controls.
    receivers: for each Byzantine sender, the peers it sends to this round.
    observed: ``[h, C, D+1]`` honest heads this attacker may see: those its peers
        received this round (non-omniscient), or every honest head (omniscient).
    observed_ids: ``[h]`` sender id of each row of ``observed``.
    own_heads: ``[b, C, D+1]`` the Byzantine peers' own heads after honest local
        training on their (possibly poisoned) data, in ``byzantine_ids`` order.
    previous_heads: ``[b, C, D+1]`` their heads at the start of the round.
    rng: a ``torch.Generator`` seeded by (seed, attacker, round, "attack").
    n_peers: number of peers in the run.
    n_classes: C.
    loss: the head's loss name.
    graph: the round's topology (networkx), only when ``knows_topology``.
    defense: the :class:`Defense` in use, only when ``adaptive``.
    honest_claimed_classes: the Byzantine peers' true class counts, per sender.
    """

    round: int
    byzantine_ids: list
    receivers: dict
    observed: torch.Tensor
    observed_ids: list
    own_heads: torch.Tensor
    rng: torch.Generator
    n_peers: int
    n_classes: int
    loss: str = "linear"
    previous_heads: Optional[torch.Tensor] = None
    graph: Any = None
    defense: Optional["Defense"] = None
    honest_claimed_classes: dict = field(default_factory=dict)

    def own_head(self, sender: int) -> torch.Tensor:
        return self.own_heads[self.byzantine_ids.index(sender)]

    def observed_by(self, receiver: int) -> Optional[torch.Tensor]:
        """The head ``receiver`` sent this round, if this attacker observed it."""
        if receiver in self.observed_ids:
            return self.observed[self.observed_ids.index(receiver)]
        return None


@dataclass
class PoisonedData:
    """What a data-poisoning attack makes of one Byzantine peer's training data.

    ``labels [m']``: the labels it trains on. ``images [m', ...]``: the images, when the
    attack changed or added some (the engine computes their features through the
    frozen backbone); ``None`` when the peer keeps its own images and only the labels
    change (then ``m' = m``).
    """

    labels: torch.Tensor
    images: Optional[torch.Tensor] = None


@dataclass
class EvaluationSet:
    """Test images an attack wants classified as ``target`` (a backdoor's triggered test
    images). Each evaluation reports ``attack_success_rate``: the share of these images
    that honest peers' heads classify as ``target``, averaged over honest peers."""

    images: torch.Tensor
    target: int


INVERSION_OPTIMIZERS = ("sgd", "adam")
INVERSION_LOSSES = ("linear", "l2svm")


@dataclass
class VictimUpdate:
    """One observed update and what the attacker knows (or estimates) about it.

    Threat model (a curious neighbour): the victim starts a round from head ``H0``
    (``start_head`` ``[C, D+1]``), runs ``local_steps`` mini-batch steps of
    ``batch_size`` samples (``optimizer`` SGD or Adam, learning rate ``lr``, L2 penalty
    ``weight_decay`` added to the gradient as in the engine) on the head's ``loss``
    over the features of the frozen public backbone, and sends ``H1`` (``end_head``).
    ``image_shape``: the shape of one input image (e.g. ``(1, 28, 28)``).
    ``transform``: applied to the attacker's dummy update ``H1' - H0`` before matching,
    when the adaptive attacker knows the sender's privacy defense
    (:meth:`PrivacyDefense.replay`); ``None`` is the identity.
    """

    start_head: torch.Tensor
    end_head: torch.Tensor
    local_steps: int
    batch_size: int
    lr: float
    optimizer: str
    loss: str
    n_classes: int
    image_shape: tuple
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.start_head, torch.Tensor) or self.start_head.dim() != 2:
            raise ValueError(f"start_head must be a [C, D+1] tensor; got {type(self.start_head).__name__} "
                             f"of shape {getattr(self.start_head, 'shape', None)}")
        if not isinstance(self.end_head, torch.Tensor) or self.end_head.shape != self.start_head.shape:
            raise ValueError(f"end_head must have start_head's shape {tuple(self.start_head.shape)}; "
                             f"got {tuple(getattr(self.end_head, 'shape', ()))}")
        for key in ("local_steps", "batch_size", "n_classes"):
            value = getattr(self, key)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{key} must be a positive integer; got {value!r}")
            setattr(self, key, int(value))
        if self.n_classes != self.start_head.shape[0]:
            raise ValueError(f"n_classes {self.n_classes} does not match the head's {self.start_head.shape[0]} rows")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive; got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {self.weight_decay!r}")
        if self.optimizer not in INVERSION_OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(INVERSION_OPTIMIZERS)}; got {self.optimizer!r}")
        if self.loss not in INVERSION_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(INVERSION_LOSSES)}; got {self.loss!r}")
        self.image_shape = tuple(int(s) for s in self.image_shape)
        if not self.image_shape or any(s < 1 for s in self.image_shape):
            raise ValueError(f"image_shape must be non-empty and positive; got {self.image_shape}")

    @property
    def n_samples(self) -> int:
        """``local_steps * batch_size``: how many samples the victim trained on."""
        return self.local_steps * self.batch_size

    @property
    def feature_dim(self) -> int:
        return self.start_head.shape[1] - 1

    @property
    def observed_delta(self) -> torch.Tensor:
        """``H1 - H0`` as observed (already transformed by the sender, if it was)."""
        return (self.end_head - self.start_head).detach()


@dataclass
class Reconstruction:
    """What an inversion attack recovers: ``images [S, B, *image_shape]``, ``labels [S, B]``,
    ``features [S, B, D]`` (``S`` = local_steps, ``B`` = batch_size)."""

    images: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor


@dataclass
class ArtifactCache:
    """Where a plugin keeps what it learns once from the public split (an image
    generator, say), so that the next run with the same data loads it.

    ``directory``: the cache root (``$FEDSIM_CACHE``); ``key``: what determines the
    public split and its features (the feature cache's key, the image shape).
    :meth:`path` adds the plugin's own settings to that key.
    """

    directory: Path
    key: dict

    def path(self, kind: str, **settings: Any) -> Path:
        """``directory / kind / <sha256 of key + settings>.pt``."""
        text = json.dumps({**self.key, **settings}, sort_keys=True)
        return Path(self.directory) / kind / f"{hashlib.sha256(text.encode()).hexdigest()}.pt"


# =========================================================================== plugins
class Defense(ABC):
    """An aggregation rule (after Flower's ``Strategy``): merge a peer's own head with
    the heads it received.

    Subclasses implement :meth:`aggregate` (the per-peer reference form). They may
    override :meth:`aggregate_group` with a batched form over many peers; the batched
    form must agree with the per-peer one (tests check this). ``needs_context`` says
    whether :meth:`aggregate` reads ``ctx``; rules with ``needs_context = False``
    accept ``ctx=None`` (and the engine does not build one).
    """

    name = "defense"
    needs_context = False

    @abstractmethod
    def aggregate(self, own: torch.Tensor, received: torch.Tensor,
                  ctx: Optional[PeerContext] = None) -> torch.Tensor:
        """``own [C, D+1]``, ``received [k, C, D+1]`` -> merged ``[C, D+1]``."""

    def aggregate_group(self, own: torch.Tensor, received: torch.Tensor, mask: torch.Tensor,
                        ctxs: Optional[Sequence[Optional[PeerContext]]] = None) -> torch.Tensor:
        """Batched form: ``own [n, C, P]``, ``received [n, k, C, P]`` padded, ``mask [n, k]``
        (True where a row holds a real message) -> ``[n, C, P]``.

        The default runs :meth:`aggregate` peer by peer.
        """
        out = torch.empty_like(own)
        for i in range(own.shape[0]):
            ctx = ctxs[i] if ctxs is not None else None
            out[i] = self.aggregate(own[i], received[i][mask[i]], ctx)
        return out

    def __repr__(self) -> str:
        return _repr(self, _public_attributes(self))


class Attack(ABC):
    """A Byzantine attack: crafts what each Byzantine sender tells each receiver.

    :meth:`craft` returns ``{(sender, receiver): head [C, D+1]}`` for pairs in
    ``view.receivers``; a missing pair means that sender sends nothing to that
    receiver (anything that is not a float tensor of the head's shape is dropped and
    counted). Data-poisoning attacks set ``poisons_data = True`` and override
    :meth:`poison`: the engine then trains the Byzantine peers on the poisoned data.
    """

    name = "attack"
    poisons_data = False

    @abstractmethod
    def craft(self, view: AttackerView) -> dict:
        """``{(sender, receiver): head}`` for this round."""

    def poison(self, images: torch.Tensor, labels: torch.Tensor, n_classes: int,
               rng: torch.Generator) -> PoisonedData:
        """A Byzantine peer's training data (``images [m, ...]``, ``labels [m]``) as the
        attack changes it; called once per Byzantine peer before round 1, only when
        ``poisons_data``. The default changes nothing."""
        return PoisonedData(labels=labels)

    def claimed_num_classes(self, sender: int, true_count: int) -> int:
        """How many classes ``sender`` says it holds (Bristle's phi); honest by default."""
        return true_count

    def evaluation_set(self, test_images: torch.Tensor, test_labels: torch.Tensor) -> Optional[EvaluationSet]:
        """Test images (from the global test set ``test_images [M, ...]``, ``test_labels
        [M]``) whose classification as a target class measures this attack's success
        (``attack_success_rate`` in the metrics); ``None`` (the default): no such measure."""
        return None

    def online_spells(self, byzantine_ids: Sequence[int]) -> Optional[dict]:
        """``{peer: [(start, end), ...]}``: when the Byzantine peers are online, in
        simulated seconds (``fedsim.network.churn``), for attacks that exploit timing;
        ``None`` (the default): they follow the scenario's churn."""
        return None

    def __repr__(self) -> str:
        return _repr(self, _public_attributes(self))


class PrivacyDefense(ABC):
    """A sender-side transform of one head update ``delta = H1 - H0`` (``[C, D+1]``)
    before it is sent: the sender sends ``H0 + apply(delta, rng)`` and keeps its own
    untransformed head.

    :meth:`apply` is a pure function of ``delta`` and the generator's state; it keeps
    ``delta``'s shape, dtype and device, and stays differentiable in ``delta`` where the
    rule allows it (the adaptive inversion attacker replays it on its dummy update).
    """

    name = "privacy_defense"

    @abstractmethod
    def apply(self, delta: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """The transformed update."""

    def bytes_per_message(self, numel: int) -> int:
        """Payload of one transformed update of ``numel`` entries, for the run's
        ``bytes_sent``. Default: dense float32, 4 bytes per entry."""
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise ValueError(f"numel must be a non-negative integer; got {numel!r}")
        return 4 * numel

    def replay(self, rng: torch.Generator) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """What the adaptive attacker (``privacy.adaptive``) applies to its dummy update:
        this defense as far as the attacker can know it, as a *deterministic* function
        (``None``: the identity).

        The sender's random draws are secret and independent of the attacker's, and a
        fresh draw at every evaluation of the matching loss would make the loss itself
        random (for Gaussian noise the dummy's own noise can exceed its signal). Rules
        replay their expectation over the sender's randomness where it has a closed
        form. This default replays :meth:`apply` with one fixed draw: every call starts
        from ``rng``'s state when ``replay`` was called.
        """
        state, device = rng.get_state(), rng.device

        def fixed_draw(delta: torch.Tensor) -> torch.Tensor:
            generator = torch.Generator(device=device)
            generator.set_state(state)
            return self.apply(delta, generator)

        return fixed_draw

    def describe(self) -> dict:
        """The rule's name and parameters, for the run summary."""
        return {"name": self.name}

    def __repr__(self) -> str:
        return _repr(self, {k: v for k, v in self.describe().items() if k != "name"})


class InversionAttack(ABC):
    """A gradient inversion attack run by a curious peer after the run: from one
    observed :class:`VictimUpdate`, rebuild the victim's training samples.

    :meth:`prepare` is called once per run, before any :meth:`reconstruct`, with the
    public split's images; what it returns (an image generator for the generative
    attacks; ``None`` by default) is passed to every :meth:`reconstruct` as
    ``generator``.
    """

    name = "inversion"

    def prepare(self, public_images: torch.Tensor, cache: Optional[ArtifactCache] = None, seed: int = 0) -> Any:
        """Learn what the attack needs from ``public_images [N, *image_shape]`` (keyed
        by ``seed``), loading it from ``cache`` when it was learnt before and saving it
        there otherwise (``cache=None``: no cache). Default: nothing to learn."""
        return None

    @abstractmethod
    def reconstruct(self, update: VictimUpdate, backbone: torch.nn.Module, generator: Any = None,
                    rng: Optional[torch.Generator] = None) -> Reconstruction:
        """The reconstruction of ``update``'s training samples through the frozen
        ``backbone``; ``generator`` is what :meth:`prepare` returned."""

    def __repr__(self) -> str:
        return _repr(self, _public_attributes(self))


# =========================================================================== backend
class Backend(Protocol):
    """What the round loop (``fedsim/runner.py``) asks of a backend: where the peer
    groups live and how messages move between them is the backend's business."""

    name: str

    def round(self, round_: int, graph: Any, neighbours: Any) -> dict:
        """Train, send, attack, receive, defend; ``neighbours [N, k]`` each peer's senders
        (sorted, padded with -1). Returns the round's message counters
        (``fedsim.engine.exchange.deliver``) and ``sent``, a handle for :meth:`sent_heads`."""

    def sent_heads(self, sent: Any, ids: Sequence[int]) -> torch.Tensor:
        """``[len(ids), C, D+1]`` the heads peers ``ids`` sent this round."""

    def evaluate(self, features: torch.Tensor, labels: torch.Tensor, backdoor: Optional[torch.Tensor] = None,
                 target: Optional[int] = None) -> dict:
        """Per honest peer: ``ids``, ``accuracy``, ``loss`` (and ``asr`` with ``backdoor``)."""

    def consensus_distance(self) -> float:
        """Mean distance of honest heads to their average."""

    def heads(self) -> torch.Tensor:
        """``[N, C, D+1]`` every peer's current head."""

    def state_dict(self) -> dict:
        """Everything a checkpoint needs to resume."""

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`."""

    def close(self) -> None:
        """Release processes and resources."""
