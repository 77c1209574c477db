"""The simulated network in the round loop (``fedsim.runner``): its state between rounds
and the keys it adds to ``metrics.jsonl`` rows."""
from __future__ import annotations

from fedsim.network.churn import Presence
from fedsim.network.sync import plan_round
from fedsim.network.validate import read_trace_text

# Cumulative counters of the synchronous network, in metrics rows and checkpoints.
SYNC_TOTALS = ("messages_sent", "messages_lost", "messages_delivered")


def presence_of(s, world, horizon: float) -> Presence:
    """Every peer's online spells up to ``horizon`` simulated seconds; the Byzantine
    peers' follow the attack's ``online_spells`` where it has them (``sybil_churn``)."""
    churn = s.network.churn
    text = read_trace_text(churn.trace) if churn is not None and churn.trace is not None else None
    presence = Presence.of(s, world.byzantine_ids, horizon, text)
    attack = world.plugins.attack if world.plugins is not None else None
    spells = attack.online_spells(world.byzantine_ids) if attack is not None and world.byzantine_ids else None
    return presence if spells is None else presence.with_spells(spells, world.n_peers)


class SyncNetwork:
    """Synchronous rounds on the simulated network (``fedsim.network.sync``)."""

    def __init__(self, s, world):
        self.network = s.network
        self.seed = s.seed
        self.presence = presence_of(s, world, s.rounds * s.network.round_s)
        self.last = None

    def totals(self) -> dict:
        return {key: 0 for key in SYNC_TOTALS}

    def plan(self, round_: int, neighbours):
        self.last = plan_round(self.network, self.seed, round_, neighbours, self.presence)
        return self.last

    def record(self, plan, stats: dict, totals: dict) -> None:
        """Add round ``plan``'s counters to ``totals`` (updated in place)."""
        totals["messages_sent"] = totals.get("messages_sent", 0) + plan.counts["messages_sent"]
        totals["messages_lost"] = totals.get("messages_lost", 0) + plan.counts["messages_lost"]
        totals["messages_delivered"] = totals.get("messages_delivered", 0) + stats["delivered"]

    def row(self, totals: dict) -> dict:
        """The network's keys of a metrics row: simulated time, who is online and takes
        part in the last round, and the cumulative message counters."""
        plan = self.last
        return {"sim_time_s": plan.time_s, "online_peers": plan.counts["online_peers"],
                "active_peers": plan.counts["active_peers"],
                **{key: int(totals.get(key, 0)) for key in SYNC_TOTALS}}
