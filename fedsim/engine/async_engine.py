"""Asynchronous gossip on a simulated clock (``network.mode: async``).

The event model. Peer ``i`` has a cycle of ``local_steps * compute_i`` simulated
seconds (``compute_i`` drawn once per peer, ``fedsim.network.draws``). A cycle that
ends at time ``t`` is an *update* of the peer, processed in this order:

1. if the peer is offline at ``t`` (``fedsim.network.churn``) nothing happens; its next
   cycle starts when it is next online;
2. it trains ``local_steps`` steps (its batch draws keyed by its own update count, so
   they do not depend on when the update happens);
3. it merges, with the scenario's defense, every message that has arrived by ``t``
   since its last merge (the newest from each sender; older ones count as stale);
   with nothing arrived it keeps its head;
4. it sends the head it trained (step 2) to each current neighbour: a message arrives
   ``bytes / bandwidth + latency`` later unless the link loses it; one arriving while
   the receiver is offline is lost, or waits for it (``churn.queue``). Byzantine peers
   send what the attack crafts instead;
5. its next cycle starts at once.

Batching. Time advances in ticks of ``network.tick`` seconds; every update whose time
falls in tick ``[k tick, (k + 1) tick)`` is processed in one batched step: all those
peers train at once, then all merge, then all send. A message sent in a tick is
merged from the next tick on, even if its arrival time falls inside the tick: this is
the only approximation, and it vanishes as the tick shrinks. Within a tick, peers are
taken in ascending id order and messages in ascending (receiver, sender) order, so a
run is a pure function of the seed: the same on every backend and every grouping of
peers into actors, and resumable from a checkpoint (the whole clock state is saved).

Metrics (each evaluated row, every ``network.eval_every_s`` simulated seconds):
``sim_time_s``, ``tick``, ``online_peers``, ``updates`` (peer updates so far),
``messages_sent`` / ``messages_delivered`` (merged) / ``messages_lost`` (by the link or
an offline receiver) / ``messages_stale`` (superseded by a newer head of the same
sender before being merged), ``staleness_s_mean`` (mean age of merged heads in
simulated seconds: merge time minus send time), ``staleness_updates_mean`` (mean
number of updates the sender completed, up to the merging tick, after the one it sent),
``bytes_on_wire`` (every message sent, lost or not).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from fedsim import functional as F
from fedsim.engine import exchange
from fedsim.network.draws import draw
from fedsim.network.links import lost, transfer_times
from fedsim.network.run import presence_of
from fedsim.topology import neighbour_matrix

# Cumulative counters of the asynchronous engine, in metrics rows and checkpoints.
TOTALS = ("updates", "messages_sent", "messages_delivered", "messages_lost", "messages_stale",
          "messages_dropped", "messages_nonfinite", "bytes_on_wire", "bytes_sent", "staleness_s_sum",
          "staleness_updates_sum")
_MESSAGE_FIELDS = {"arrival": np.float64, "sent_at": np.float64, "sender": np.int64, "receiver": np.int64,
                   "update": np.int64, "block": np.int64, "row": np.int64}


def cycle_times(s) -> np.ndarray:
    """``[N]`` simulated seconds of one update of each peer: ``local_steps`` times its
    compute time per step (``network.compute_per_peer`` or a keyed draw)."""
    net, n = s.network, s.topology.n_peers
    per_step = np.asarray(net.compute_per_peer, dtype=np.float64) if net.compute_per_peer is not None \
        else draw(net.compute, s.seed, np.arange(n), "compute")
    return s.training.local_steps * per_step


class AsyncGossip:
    """The clock, the messages in flight and the counters of an asynchronous run; the
    peers' heads live in the backend (``train_async``, ``craft_async``, ``merge_async``)."""

    def __init__(self, s, world, backend, schedule):
        self.s, self.net, self.world, self.backend, self.schedule = s, s.network, world, backend, schedule
        self.n = world.n_peers
        # one honest message: the head, or what a sender-side compression reduces it to
        self.honest_bytes = exchange.message_bytes(world, world.plugins.privacy if world.plugins else None)
        self.n_ticks = max(1, math.ceil(self.net.duration_s / self.net.tick - 1e-9))
        self.presence = presence_of(s, world, self.net.duration_s + self.net.tick)
        self.cycle = cycle_times(s)
        if s.adversary is not None and s.adversary.fast and world.byzantine_ids:
            # as often as the link allows: one message's time on the wire, at least a tick
            wire = self.honest_bytes / self.net.links.bandwidth if self.net.links.bandwidth else 0.0
            self.cycle[list(world.byzantine_ids)] = max(self.net.tick, wire)
        self.is_byz = np.zeros(self.n, dtype=bool)
        self.is_byz[list(world.byzantine_ids)] = True
        self.tick = 0  # ticks done
        self.next_event = self.presence.next_online(np.arange(self.n), 0.0) + self.cycle
        self.update_count = np.zeros(self.n, dtype=np.int64)
        self.pending = {k: np.zeros(0, dtype=t) for k, t in _MESSAGE_FIELDS.items()}
        self.blocks: dict[int, torch.Tensor] = {}  # tick -> heads of the messages sent then
        self.last_sent = world.init_head.unsqueeze(0).repeat(self.n, 1, 1)  # what the attack may observe
        self.totals = {k: 0 for k in TOTALS}
        self._neighbours = (None, None)

    # ---------------------------------------------------------------- topology
    def neighbours(self, tick: int) -> np.ndarray:
        """``[N, k]`` neighbour matrix of the graph of ``tick`` (1-based; the topology's
        ``resample_every`` counts ticks)."""
        period = self.schedule.period(tick)
        if self._neighbours[0] != period:
            self._neighbours = (period, neighbour_matrix(self.schedule.graph(tick), self.n)[0])
        return self._neighbours[1]

    # ---------------------------------------------------------------- one tick
    def step(self) -> None:
        """Process tick ``self.tick + 1``: every update that falls in it (module doc)."""
        T = self.tick + 1
        end = T * self.net.tick
        due = np.flatnonzero(self.next_event < end)
        times = self.next_event[due]
        here = self.presence.online(due, times)
        away = due[~here]
        self.next_event[away] = self.presence.next_online(away, times[~here]) + self.cycle[away]
        peers, times = due[here], times[here]
        if len(peers):
            self.update_count[peers] += 1
            keys = {int(p): int(c) for p, c in zip(peers, self.update_count[peers])}
            _, sent = self.backend.train_async(T, peers, keys)
            self._merge(T, peers, times)
            self._send(T, peers, times, sent)
            self.next_event[peers] = times + self.cycle[peers]
            self.totals["updates"] += len(peers)
        self.tick = T

    def _merge(self, T: int, peers: np.ndarray, times: np.ndarray) -> None:
        p = self.pending
        merge_time = np.full(self.n, -np.inf)
        merge_time[peers] = times
        ready = p["arrival"] <= merge_time[p["receiver"]]
        if not ready.any():
            return
        msg = {k: v[ready] for k, v in p.items()}
        self.pending = {k: v[~ready] for k, v in p.items()}
        # Ascending receiver, then sender; the newest update of each sender first.
        order = np.lexsort((-msg["update"], msg["sender"], msg["receiver"]))
        msg = {k: v[order] for k, v in msg.items()}
        first = np.ones(len(order), dtype=bool)
        first[1:] = (msg["receiver"][1:] != msg["receiver"][:-1]) | (msg["sender"][1:] != msg["sender"][:-1])
        self.totals["messages_stale"] += int((~first).sum())
        msg = {k: v[first] for k, v in msg.items()}
        receivers, start, counts = np.unique(msg["receiver"], return_index=True, return_counts=True)
        slot = np.arange(len(msg["receiver"])) - np.repeat(start, counts)
        row = np.repeat(np.arange(len(receivers)), counts)
        k = int(counts.max())
        C, P = self.world.init_head.shape
        received = torch.zeros(len(receivers), k, C, P)
        for block in np.unique(msg["block"]):
            sel = msg["block"] == block
            received[torch.as_tensor(row[sel]), torch.as_tensor(slot[sel])] = \
                self.blocks[int(block)][torch.as_tensor(msg["row"][sel])]
        mask = torch.zeros(len(receivers), k, dtype=torch.bool)
        mask[torch.as_tensor(row), torch.as_tensor(slot)] = True
        senders = torch.full((len(receivers), k), -1, dtype=torch.long)
        senders[torch.as_tensor(row), torch.as_tensor(slot)] = torch.as_tensor(msg["sender"])
        age_s = merge_time[msg["receiver"]] - msg["sent_at"]
        age_updates = self.update_count[msg["sender"]] - msg["update"]
        ages = (torch.zeros(len(receivers), k, dtype=torch.float64), torch.zeros(len(receivers), k, dtype=torch.long))
        ages[0][torch.as_tensor(row), torch.as_tensor(slot)] = torch.as_tensor(age_s)
        ages[1][torch.as_tensor(row), torch.as_tensor(slot)] = torch.as_tensor(age_updates)
        degrees = torch.as_tensor((self.neighbours(T) >= 0).sum(axis=1), dtype=torch.long)
        self.backend.merge_async(T, receivers, received, mask, senders, ages, degrees)
        self.totals["messages_delivered"] += len(row)
        self.totals["bytes_sent"] += len(row) * self.honest_bytes
        if self.is_byz.any():
            self.totals["messages_nonfinite"] += int((mask & ~F.finite_rows(received, batch_dims=2)).sum())
        self.totals["staleness_s_sum"] += float(age_s.sum())
        self.totals["staleness_updates_sum"] += int(age_updates.sum())

    def _send(self, T: int, peers: np.ndarray, times: np.ndarray, sent: torch.Tensor) -> None:
        nbr = self.neighbours(T)[peers]
        real = nbr >= 0
        senders = np.repeat(peers, real.sum(axis=1))
        receivers = nbr[real]
        sent_at = np.repeat(times, real.sum(axis=1))
        heads = sent
        rows = np.repeat(np.arange(len(peers)), real.sum(axis=1))
        size = np.full(len(senders), float(self.honest_bytes))
        valid = ~self.is_byz[senders]
        self.last_sent[torch.as_tensor(peers)] = sent
        byz = peers[self.is_byz[peers]]
        if len(byz):
            crafted = self.backend.craft_async(T, self.schedule.graph(T), byz, self.last_sent)
            extra, count = [], len(peers)
            index = {(int(senders[i]), int(receivers[i])): int(i) for i in np.flatnonzero(self.is_byz[senders])}
            C, P = self.world.init_head.shape
            for pair in sorted(crafted):
                obj, i = crafted[pair], index.get(pair)
                if i is None:
                    continue  # not a current neighbour: nothing is sent
                if isinstance(obj, torch.Tensor):
                    size[i] = obj.numel() * obj.element_size()
                if not (isinstance(obj, torch.Tensor) and obj.shape == (C, P) and obj.is_floating_point()):
                    self.totals["messages_dropped"] += 1
                    continue
                extra.append(obj.to(sent.dtype))
                rows[i] = count
                count += 1
                valid[i] = True
            if extra:
                heads = torch.cat([sent, torch.stack(extra)])
        senders, receivers, sent_at, rows, size = (a[valid] for a in (senders, receivers, sent_at, rows, size))
        updates = self.update_count[senders]
        self.totals["messages_sent"] += len(senders)
        self.totals["bytes_on_wire"] += int(size.sum())
        arrival = sent_at + transfer_times(self.net.links, self.s.seed, senders, receivers, self.n, size)
        gone = lost(self.net.links.loss, self.s.seed, senders, receivers, self.n, updates)
        churn = self.net.churn
        if churn is not None and churn.queue:
            arrival = self.presence.next_online(receivers, arrival)
            gone |= ~np.isfinite(arrival)
        else:
            gone |= ~self.presence.online(receivers, arrival)
        self.totals["messages_lost"] += int(gone.sum())
        keep = ~gone
        new = {"arrival": arrival[keep], "sent_at": sent_at[keep], "sender": senders[keep],
               "receiver": receivers[keep], "update": updates[keep], "block": np.full(int(keep.sum()), T),
               "row": rows[keep]}
        self.pending = {k: np.concatenate([self.pending[k], new[k].astype(_MESSAGE_FIELDS[k])])
                        for k in _MESSAGE_FIELDS}
        if keep.any():
            self.blocks[T] = heads.clone()
        live = set(np.unique(self.pending["block"]).tolist())
        self.blocks = {b: h for b, h in self.blocks.items() if b in live}

    # ---------------------------------------------------------------- reporting
    def online_peers(self) -> int:
        return int(self.presence.online(np.arange(self.n), self.tick * self.net.tick).sum())

    def row(self) -> dict:
        """The network's keys of a metrics row after the current tick."""
        t = self.totals
        merged = max(t["messages_delivered"], 1)
        return {"sim_time_s": round(self.tick * self.net.tick, 9), "tick": self.tick,
                "online_peers": self.online_peers(), "updates": int(t["updates"]),
                "messages_sent": int(t["messages_sent"]), "messages_delivered": int(t["messages_delivered"]),
                "messages_lost": int(t["messages_lost"]), "messages_stale": int(t["messages_stale"]),
                "staleness_s_mean": t["staleness_s_sum"] / merged,
                "staleness_updates_mean": t["staleness_updates_sum"] / merged,
                "bytes_on_wire": int(t["bytes_on_wire"])}

    def n_evaluations(self) -> int:
        """Rows a whole run writes."""
        return sum(self.eval_due(tick) for tick in range(1, self.n_ticks + 1))

    def eval_due(self, tick: Optional[int] = None) -> bool:
        """Whether ``tick`` (default: the tick just done) crosses a multiple of
        ``eval_every_s`` or ends the run."""
        tick = self.tick if tick is None else tick
        every = self.net.eval_every_s / self.net.tick
        return tick == self.n_ticks or math.floor(tick / every + 1e-9) > math.floor((tick - 1) / every + 1e-9)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {"tick": self.tick, "next_event": self.next_event.copy(), "update_count": self.update_count.copy(),
                "pending": {k: v.copy() for k, v in self.pending.items()},
                "blocks": {b: h.clone() for b, h in self.blocks.items()}, "last_sent": self.last_sent.clone(),
                "totals": dict(self.totals)}

    def load_state_dict(self, state: dict) -> None:
        self.tick = int(state["tick"])
        self.next_event = np.asarray(state["next_event"], dtype=np.float64).copy()
        self.update_count = np.asarray(state["update_count"], dtype=np.int64).copy()
        self.pending = {k: np.asarray(state["pending"][k], dtype=t).copy() for k, t in _MESSAGE_FIELDS.items()}
        self.blocks = {int(b): h.clone() for b, h in state["blocks"].items()}
        self.last_sent = state["last_sent"].clone()
        self.totals = dict(state["totals"])

