"""The default backend: one GroupHost with every peer, in this process; messages are
the tensors themselves."""
from __future__ import annotations

import torch

from fedsim.engine import exchange
from fedsim.engine.host import GroupHost, consensus_center
from fedsim.world import World


class LocalBackend:
    name = "local"

    def __init__(self, world: World):
        self.world = world
        self.host = GroupHost(world, range(world.n_peers))

    def round(self, round_: int, graph, neighbours, plan=None) -> dict:
        """Train, send, attack, receive, defend. Returns the round's counters, and under
        ``sent`` what every peer sent (for ``sent_heads``). ``plan``: the round on the
        simulated network (``fedsim.network.sync.RoundPlan``; None = every peer, every
        message)."""
        if plan is not None:
            sent = self.host.train(round_, active=plan.active)
            crafted = self.host.craft(round_, graph, sent, active=plan.active)
            stats = self.host.aggregate(round_, plan.neighbours, crafted, sent, active=plan.active,
                                        degrees=plan.degrees)
            stats["sent"] = [sent]
            return stats
        sent = self.host.train(round_)
        crafted = self.host.craft(round_, graph, sent)
        stats = self.host.aggregate(round_, neighbours, crafted, sent)
        stats["sent"] = [sent]
        return stats

    def sent_heads(self, sent, ids) -> torch.Tensor:
        """Rows ``ids`` of the heads sent this round."""
        return exchange.gather_sent(self.world.n_peers, sent)[torch.as_tensor(list(ids), dtype=torch.long)]

    def evaluate(self, features, labels, backdoor=None, target=None) -> dict:
        return self.host.evaluate(features, labels, backdoor, target)

    def consensus_distance(self) -> float:
        return float(self.host.distances_to(consensus_center([self.host.honest_sum()])).mean())

    def heads(self) -> torch.Tensor:
        return self.host.heads()[1]

    def state_dict(self) -> dict:
        return self.host.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.host.load_state_dict(state)

    def close(self) -> None:
        pass
