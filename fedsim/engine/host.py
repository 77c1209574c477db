"""GroupHost: a PeerGroup and the run's plugins, doing one host's part of each round.

Both backends run the same host; they differ only in where hosts live and how
messages move between them. The local backend holds one host with every peer in its
own process and hands it the tensors directly; the Ray backend makes ``GroupHost`` an
actor class (``ray.remote(GroupHost)``), one actor per group of peers, and moves what
hosts send as references into Ray's object store. A round on every host is:

1. ``train(round)`` -> ``(ids, sent)``: the group's peers train; what they send;
2. ``craft(round, graph, *sent)`` -> ``{(sender, receiver): object}``: on the host
   of the Byzantine peers, the attack crafts their messages (empty elsewhere);
3. ``aggregate(round, neighbours, crafted, *sent)`` -> counters: every peer receives
   its neighbours' heads and the crafted messages (``exchange.deliver``) and merges
   them with the defense.

``*sent`` is every host's ``(ids, sent)`` of the round (Ray resolves each reference
passed as an argument), so a host sees the same inputs on either backend.
"""
from __future__ import annotations

import os
import socket

import numpy as np
import torch

from fedsim.engine import exchange
from fedsim.engine.peer_group import PeerGroup
from fedsim.plugins import Plugins  # noqa: F401  (re-exported: tests and users build groups with it)
from fedsim.world import World


def consensus_center(sums) -> torch.Tensor:
    """The mean honest head from each host's ``(sum of its honest heads, count)``."""
    sums = list(sums)
    count = sum(c for _, c in sums)
    return sum(s for s, c in sums if c) / max(count, 1)


class GroupHost:
    """Peers ``peer_ids`` of a run, the plugins, and the per-round steps of the module doc.

    ``threads``: torch's intra-op threads in this process (0: leave as is); a Ray actor
    gets its share of the node's CPUs.
    """

    def __init__(self, world: World, peer_ids, threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        self.world = world
        self.plugins = Plugins.of(world)
        self.group = PeerGroup(world, peer_ids, self.plugins)
        self.claimed = exchange.claimed_classes(world, self.plugins.attack)
        self.honest_bytes = exchange.message_bytes(world, self.plugins.privacy)

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        """Where this host runs: its Ray node id inside a Ray actor, else the host name."""
        try:
            import ray
            if ray.is_initialized():
                return ray.get_runtime_context().get_node_id()
        except ImportError:
            pass
        return socket.gethostname()

    # ----------------------------------------------------------------- a round
    def rows_of(self, peer_ids) -> torch.Tensor:
        """The local rows (sorted LongTensor) of those of ``peer_ids`` this host holds."""
        ids = np.intersect1d(np.asarray(peer_ids, dtype=np.int64), self.group.ids)
        return torch.as_tensor(np.searchsorted(self.group.ids, ids), dtype=torch.long)

    def train(self, round_: int, active=None, draw_keys=None):
        """``(ids, sent)``: the group's peer ids and the heads they send this round.
        ``active`` (global ids; None = every peer): only those of this group train and
        send; ``draw_keys {peer: key}`` replaces the round as a peer's batch-draw key."""
        if active is None:
            return self.group.ids, self.group.train(round_)
        rows = self.rows_of(active)
        ids = self.group.ids[rows.numpy()]
        keys = None if draw_keys is None else np.array([draw_keys[int(i)] for i in ids], dtype=np.int64)
        return ids, self.group.train(round_, rows=rows, draw_keys=keys)

    def craft(self, round_: int, graph, *sent, active=None) -> dict:
        """The attack's messages from the Byzantine peers of this group (none elsewhere);
        ``active`` (global ids; None = every peer): only those Byzantine peers send, and
        only those honest peers can be observed."""
        attack = self.plugins.attack
        if attack is None or not bool(self.group.is_byzantine.any()):
            return {}
        ids, own, previous = self.group.byzantine_heads()
        if active is not None:
            keep = torch.as_tensor(np.isin(np.asarray(ids), np.asarray(active)))
            ids, own, previous = [i for i, k in zip(ids, keep) if k], own[keep], previous[keep]
            if not ids:
                return {}
        sent_all = exchange.gather_sent(self.world.n_peers, sent)
        view = exchange.attacker_view(self.world, graph, round_, sent_all, ids, own, previous,
                                      self.plugins.defense, present=active)
        return attack.craft(view)

    def aggregate(self, round_: int, neighbours, crafted: dict, *sent, active=None, degrees=None) -> dict:
        """Receive and merge. ``neighbours [N, k]``: every peer's senders this round
        (ascending, padded with -1); returns the counters of ``exchange.deliver``.
        ``active`` (global ids; None = every peer): only those receive and merge;
        ``degrees [N]``: every peer's degree (default: counted in ``neighbours``)."""
        sent_all = exchange.gather_sent(self.world.n_peers, sent)
        degrees = exchange.degrees(neighbours) if degrees is None else torch.as_tensor(degrees)
        if active is None:
            return self.group.aggregate(round_, sent_all, neighbours[self.group.ids], self.claimed,
                                        exchange.by_receiver(crafted, self.group.ids), self.honest_bytes,
                                        degrees=degrees)
        rows = self.rows_of(active)
        ids = self.group.ids[rows.numpy()]
        return self.group.aggregate(round_, sent_all, neighbours[ids], self.claimed,
                                    exchange.by_receiver(crafted, ids), self.honest_bytes,
                                    degrees=degrees, rows=rows)

    def merge(self, round_: int, peers, received, mask, senders, ages, degrees) -> None:
        """Asynchronous gossip (``fedsim.engine.async_engine``): those of ``peers`` (sorted
        global ids) this host holds merge their rows of ``received [n, k, C, P]`` (where
        ``mask``, from ``senders``, ``ages`` = (seconds, updates) ``[n, k]``); the others
        are another host's."""
        peers = np.asarray(peers, dtype=np.int64)
        sel = np.isin(peers, self.group.ids)
        if not sel.any():
            return
        rows = torch.as_tensor(np.searchsorted(self.group.ids, peers[sel]), dtype=torch.long)
        s = torch.as_tensor(sel)
        is_byz_sender = torch.zeros(self.world.n_peers + 1, dtype=torch.bool)
        is_byz_sender[torch.as_tensor(list(self.world.byzantine_ids), dtype=torch.long)] = True
        self.group.heads[rows] = self.group.merge(round_, rows, received[s], mask[s], senders[s], self.claimed,
                                                  degrees, is_byz_sender, (ages[0][s], ages[1][s]))

    # ----------------------------------------------------------- what is asked
    def evaluate(self, features, labels, backdoor=None, target=None) -> dict:
        return self.group.evaluate(features, labels, backdoor, target)

    def honest_sum(self):
        return self.group.honest_sum()

    def distances_to(self, center):
        return self.group.distances_to(center)

    def heads(self):
        return self.group.ids, self.group.heads.cpu()

    def state_dict(self) -> dict:
        return self.group.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.group.load_state_dict(state)
