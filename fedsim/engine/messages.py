"""What moves between peers, and what an algorithm is allowed to see.

These dataclasses are the public contract between the engine and the pluggable
algorithms (``defenses``, ``attacks``): a defense sees one peer's
:class:`PeerContext`, an attack sees an :class:`AttackerView`, and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch


@dataclass
class Message:
    """One update on the wire: sender, round, the head ``[C, D+1]`` and metadata.

    ``num_classes`` is how many classes the sender says it holds (Bristle's phi);
    Byzantine senders may lie, ``None`` means not stated.
    """

    sender: int
    round: int
    head: Any  # torch.Tensor normally; anything at all from a Byzantine sender
    num_classes: Optional[int] = None


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
    defense: the defense instance in use, only when ``adaptive``.
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
    defense: Any = None
    honest_claimed_classes: dict = field(default_factory=dict)

    def own_head(self, sender: int) -> torch.Tensor:
        return self.own_heads[self.byzantine_ids.index(sender)]

    def observed_by(self, receiver: int) -> Optional[torch.Tensor]:
        """The head ``receiver`` sent this round, if this attacker observed it."""
        if receiver in self.observed_ids:
            return self.observed[self.observed_ids.index(receiver)]
        return None
