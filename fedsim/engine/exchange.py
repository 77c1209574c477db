"""One round's message exchange, shared by every backend: which honest heads an
attacker may observe, what Byzantine senders craft, and what the wire costs."""
from __future__ import annotations

import torch

from fedsim import rng
from fedsim.engine.messages import AttackerView
from fedsim.world import World


def observed_senders(world: World, graph, omniscient: bool) -> list[int]:
    """Honest peers whose heads the attacker sees: all of them (omniscient), else only
    those that sent to a Byzantine peer this round (its neighbours)."""
    byz = set(world.byzantine_ids)
    if omniscient:
        return [i for i in range(world.n_peers) if i not in byz]
    seen = set()
    for b in world.byzantine_ids:
        seen.update(int(j) for j in graph.adj[b] if j not in byz)
    return sorted(seen)


def attacker_view(world: World, graph, round_: int, sent_all: torch.Tensor, byz_ids: list,
                  own: torch.Tensor, previous: torch.Tensor, defense=None) -> AttackerView:
    adv = world.scenario.adversary
    observed_ids = observed_senders(world, graph, adv.omniscient)
    observed = sent_all[torch.as_tensor(observed_ids, dtype=torch.long)] if observed_ids \
        else sent_all.new_zeros((0,) + tuple(sent_all.shape[1:]))
    receivers = {b: sorted(int(j) for j in graph.adj[b]) for b in byz_ids}
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


def message_bytes(world: World, privacy_defense) -> int:
    """Payload of one honest message: the head only (float32), or what the sender-side
    privacy transform reduces it to."""
    numel = world.n_classes * (world.feature_dim + 1)
    if privacy_defense is not None and hasattr(privacy_defense, "bytes_per_message"):
        return int(privacy_defense.bytes_per_message(numel))
    return 4 * numel


def honest_messages(world: World, graph) -> int:
    """Messages honest peers send in a round: each to every neighbour."""
    byz = set(world.byzantine_ids)
    return int(sum(d for node, d in graph.degree() if node not in byz))


def crafted_bytes(crafted: dict) -> int:
    return int(sum(obj.numel() * obj.element_size() for obj in crafted.values()
                   if isinstance(obj, torch.Tensor)))

