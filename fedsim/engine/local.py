"""The default backend: one GroupHost with every peer, in this process; messages are
the tensors themselves."""
from __future__ import annotations

import numpy as np
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

    # ------------------------------------------- asynchronous gossip (fedsim.engine.async_engine)
    def train_async(self, tick: int, peers, draw_keys: dict):
        """Peers ``peers`` (sorted global ids) train, each batch keyed by ``draw_keys[peer]``;
        returns ``(ids, sent)``."""
        return self.host.train(tick, active=peers, draw_keys=draw_keys)

    def craft_async(self, tick: int, graph, byzantine, last_sent: torch.Tensor) -> dict:
        """The attack's messages from Byzantine peers ``byzantine`` (those updating now),
        observing the heads honest peers sent last (``last_sent [N, C, P]``)."""
        active = np.union1d(np.asarray(byzantine, dtype=np.int64), np.asarray(self.world.honest_ids, dtype=np.int64))
        return self.host.craft(tick, graph, (np.arange(self.world.n_peers), last_sent), active=active)

    def merge_async(self, tick: int, peers, received, mask, senders, ages, degrees) -> None:
        self.host.merge(tick, peers, received, mask, senders, ages, degrees)

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
