"""One round's message exchange, shared by every backend: which honest heads an
attacker may observe, what Byzantine senders' messages are worth on arrival, and what
the wire costs.

Delivery (:func:`deliver`) is where every message is validated and counted, so the
counters (delivered, dropped, non-finite) and the bytes on the wire are computed in
one place, on the receiving side, from the same slots the defense then merges.
"""
from __future__ import annotations

import numpy as np
import torch

from fedsim import functional as F
from fedsim import rng
from fedsim.api import AttackerView
from fedsim.world import World


def observed_senders(world: World, graph, omniscient: bool, present=None) -> list[int]:
    """Honest peers whose heads the attacker sees: all of them (omniscient), else only
    those that sent to a Byzantine peer this round (its neighbours). ``present`` (ids;
    None = every peer): only these peers sent anything (the simulated network's
    participants, ``fedsim.network``)."""
    byz = set(world.byzantine_ids)
    if omniscient:
        seen = [i for i in range(world.n_peers) if i not in byz]
    else:
        seen = set()
        for b in world.byzantine_ids:
            seen.update(int(j) for j in graph.adj[b] if j not in byz)
        seen = sorted(seen)
    if present is not None:
        here = {int(i) for i in present}
        seen = [i for i in seen if i in here]
    return seen


def attacker_view(world: World, graph, round_: int, sent_all: torch.Tensor, byz_ids: list,
                  own: torch.Tensor, previous: torch.Tensor, defense=None, present=None) -> AttackerView:
    adv = world.scenario.adversary
    observed_ids = observed_senders(world, graph, adv.omniscient, present)
    observed = sent_all[torch.as_tensor(observed_ids, dtype=torch.long)] if observed_ids \
        else sent_all.new_zeros((0,) + tuple(sent_all.shape[1:]))
    receivers = {b: sorted(int(j) for j in graph.adj[b]) for b in byz_ids}
    if present is not None:
        here = {int(i) for i in present}
        receivers = {b: [j for j in r if j in here] for b, r in receivers.items()}
    return AttackerView(
        round=round_, byzantine_ids=list(byz_ids), receivers=receivers, observed=observed.clone(),
        observed_ids=observed_ids, own_heads=own, previous_heads=previous,
        rng=rng.generator(world.seed, -1, round_, "attack"), n_peers=world.n_peers,
        n_classes=world.n_classes, loss=world.scenario.model.head,
        graph=graph if adv.knows_topology else None,
        defense=defense if adv.adaptive else None,
        honest_claimed_classes={b: len(world.peers.classes[b]) for b in byz_ids},
    )


def claimed_classes(world: World, attack) -> torch.Tensor:
    """``[N + 1]`` the class count each peer states with its update (last entry: padding)."""
    claimed = torch.tensor([len(c) for c in world.peers.classes] + [-1], dtype=torch.long)
    if attack is not None:
        for b in world.byzantine_ids:
            claimed[b] = int(attack.claimed_num_classes(b, int(claimed[b])))
    return claimed


def class_membership(world: World) -> torch.Tensor:
    """``[N + 1, C]`` bool: the classes each peer holds (last row, padding: none)."""
    held = torch.zeros(world.n_peers + 1, world.n_classes, dtype=torch.bool)
    for peer, classes in enumerate(world.peers.classes):
        held[peer, classes] = True
    return held


def class_overlap(membership: torch.Tensor, receiver: int, senders: torch.Tensor,
                  claimed: torch.Tensor) -> torch.Tensor:
    """``[k]``: how many classes ``receiver`` shares with each sender, as private set
    intersection cardinality would reveal (Bristle's phi; see
    ``defenses/aggregation/bristle.py``). ``membership`` from :func:`class_membership`,
    ``claimed [N + 1]`` from :func:`claimed_classes`. A sender whose stated count differs
    from its true one (a lying Byzantine peer) is taken to claim the receiver's classes
    first: ``min(stated count, |C_receiver|)``."""
    held = membership[senders]
    true_overlap = (held & membership[receiver]).sum(dim=1)
    stated = claimed[senders]
    lying = stated != held.sum(dim=1)
    return torch.where(lying, torch.minimum(stated.clamp(min=0), membership[receiver].sum()), true_overlap)


def message_bytes(world: World, privacy_defense) -> int:
    """Payload of one honest message: the head only (float32), or what the sender-side
    privacy transform reduces it to."""
    numel = world.n_classes * (world.feature_dim + 1)
    if privacy_defense is not None:
        return int(privacy_defense.bytes_per_message(numel))
    return 4 * numel


def degrees(neighbours) -> torch.Tensor:
    """``[N]`` every peer's degree this round, from the neighbour matrix ``[N, k]``
    (each peer's neighbours, padded with -1)."""
    return torch.as_tensor((np.asarray(neighbours) >= 0).sum(axis=1), dtype=torch.long)


def gather_sent(n_peers: int, parts) -> torch.Tensor:
    """``[N + 1, C, P]`` the heads every peer sent, from ``(ids, heads)`` parts (one per
    host); the last row is the padding slot (zeros), where id -1 points."""
    parts = list(parts)
    C, P = parts[0][1].shape[1:]
    sent_all = torch.zeros(n_peers + 1, C, P)
    for ids, heads in parts:
        sent_all[torch.as_tensor(np.array(ids))] = heads  # np.array: ids may be read-only (Ray)
    return sent_all


def by_receiver(crafted: dict, receivers) -> dict[int, list]:
    """``{receiver: [(sender, object), ...]}`` of the crafted messages addressed to
    ``receivers``, in the attack's order."""
    wanted = {int(r) for r in receivers}
    out: dict[int, list] = {}
    for (sender, receiver), obj in crafted.items():
        if receiver in wanted:
            out.setdefault(receiver, []).append((sender, obj))
    return out


def deliver(received: torch.Tensor, senders: torch.Tensor, receivers, byzantine: torch.Tensor,
            crafted: dict, honest_bytes: int) -> tuple[torch.Tensor, dict]:
    """What arrives at ``receivers``: the honest heads already in ``received``, plus the
    Byzantine senders' crafted messages written into their slots.

    ``received [n, k, C, P]``: row ``r``, slot ``j`` holds the head ``senders[r, j]``
    sent (any value where that sender is Byzantine or the slot is padding); the
    crafted heads are written into it in place. ``senders [n, k]``: each receiver's
    neighbours, ascending, padded with -1. ``receivers``: the ``n`` receiving peer ids.
    ``byzantine [N + 1]``: whether each sender id is Byzantine (last entry: padding).
    ``crafted``: ``{receiver: [(sender, object), ...]}`` (:func:`by_receiver`).
    ``honest_bytes``: the size of one honest message (:func:`message_bytes`).

    A crafted message from a peer that is not the receiver's neighbour this round never
    arrives; one that is not a floating-point ``[C, P]`` tensor is dropped (the receiver
    validates every message); a non-finite one is kept for the defense to cope with.

    Returns ``(mask [n, k], counts)``: ``mask`` marks the slots that hold a message;
    ``counts`` has ``delivered`` (messages in the slots), ``dropped`` (crafted messages
    refused), ``nonfinite`` (delivered messages with a NaN or inf; counted only when
    some sender is Byzantine: honest heads are finite unless training diverged, and
    the check costs a pass over ``received``), and ``bytes``: the honest messages
    received times ``honest_bytes``, plus every crafted tensor addressed to these
    receivers at its own size (element count times element size), delivered or not.
    """
    C, P = received.shape[2:]
    mask = (senders >= 0) & ~byzantine[senders.clamp(min=0)]
    counts = {"delivered": 0, "dropped": 0, "nonfinite": 0, "bytes": int(mask.sum()) * honest_bytes}
    for r, receiver in enumerate(receivers):
        for sender, obj in crafted.get(int(receiver), ()):
            if isinstance(obj, torch.Tensor):
                counts["bytes"] += obj.numel() * obj.element_size()
            slots = torch.nonzero(senders[r] == sender).flatten()
            if len(slots) == 0:
                continue  # not a neighbour this round: nothing arrives
            slot = int(slots[0])
            if not (isinstance(obj, torch.Tensor) and obj.shape == (C, P) and obj.is_floating_point()):
                counts["dropped"] += 1
                continue
            received[r, slot] = obj.to(received.dtype)
            mask[r, slot] = True
    if bool(byzantine.any()):
        finite = F.finite_rows(received, batch_dims=2)
        counts["nonfinite"] = int((mask & ~finite).sum())
    counts["delivered"] = int(mask.sum())
    return mask, counts
