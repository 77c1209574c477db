"""The default backend: one PeerGroup with every peer, in this process."""
from __future__ import annotations

import torch

from fedsim.engine import exchange
from fedsim.engine.peer_group import PeerGroup
from fedsim.world import World
from fedsim.registry import create


class LocalBackend:
    name = "local"

    def __init__(self, world: World):
        self.world = world
        self.group = PeerGroup(world, range(world.n_peers))
        adv = world.scenario.adversary
        self.attack = create("attacks", adv.attack.name, **adv.attack.args) if adv is not None else None
        self.claimed = exchange.claimed_classes(world, self.attack)
        self.privacy_defense = self.group.privacy

    def round(self, round_: int, graph, neighbours) -> dict:
        """Train, send, attack, receive, defend. Returns the round's message counts."""
        sent = self.group.train(round_)
        crafted = {}
        if self.attack is not None and self.world.byzantine_ids:
            ids, own, prev = self.group.byzantine_heads()
            view = exchange.attacker_view(self.world, graph, round_, sent, ids, own, prev, self.group.defense)
            crafted = self.attack.craft(view)
        stats = self.group.aggregate(round_, sent, neighbours, self.claimed, crafted)
        stats["crafted_bytes"] = exchange.crafted_bytes(crafted)
        stats["sent"] = sent
        return stats

    def evaluate(self, features, labels, backdoor=None, target=None) -> dict:
        return self.group.evaluate(features, labels, backdoor, target)

    def consensus_distance(self) -> float:
        total, count = self.group.honest_sum()
        return float(self.group.distances_to(total / max(count, 1)).mean())

    def heads(self) -> torch.Tensor:
        return self.group.heads

    def state_dict(self) -> dict:
        return self.group.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.group.load_state_dict(state)

    def close(self) -> None:
        pass

    def sent_heads(self, sent, ids) -> torch.Tensor:
        """Rows ``ids`` of the heads sent this round."""
        return sent[torch.as_tensor(list(ids), dtype=torch.long)]
