"""Who is online when: every peer's online spells, as a padded matrix of toggle times.

A peer's spells are ``[start_0, end_0), [start_1, end_1), ...``, stored as the row
``start_0, end_0, start_1, end_1, ...`` of ``toggles [N, M]`` (padded with +inf): the peer
is online at time ``t`` exactly when an odd number of its toggles are ``<= t``.

Sources (``network.churn``):

- the exponential on/off process (an alternating renewal process, as in the churn
  models of Stutzbach & Rejaie, "Understanding churn in peer-to-peer networks", IMC
  2006, with exponential sessions): a peer joins at ``join_at``, stays online for an
  exponential time of mean ``up_mean`` (null: for ever), offline for one of mean
  ``down_mean``, and so on. Spell ``k``'s lengths are keyed draws
  ``(seed, peer, k, "churn_up" / "churn_down")``, so the schedule is a pure function of
  the seed. Byzantine peers follow ``churn.attackers`` when it is given.
- a trace file: CSV rows ``peer,start,end`` (online spells; peers it does not list are
  always online).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from fedsim import rng


class TraceError(ValueError):
    """A churn trace that cannot be used: one line naming the row and the problem."""


def exponential_toggles(seed: int, peers, join_at: float, up_mean: Optional[float], down_mean: float,
                        horizon: float) -> np.ndarray:
    """``[len(peers), M]`` toggle times of the exponential on/off process, drawn until
    every peer's last toggle lies beyond ``horizon`` (padded with +inf)."""
    peers = np.asarray(peers, dtype=np.int64)
    if up_mean is None or len(peers) == 0:
        return np.tile(np.array([join_at, np.inf]), (len(peers), 1))
    columns, now, k = [], np.full(len(peers), float(join_at)), 0
    while True:
        up = -up_mean * np.log1p(-rng.uniform(seed, peers, k, "churn_up", 1)[:, 0])
        down = -down_mean * np.log1p(-rng.uniform(seed, peers, k, "churn_down", 1)[:, 0])
        columns += [now.copy(), now + up]
        now = now + up + down
        k += 1
        if bool((columns[-1] > horizon).all()):
            break
    starts, ends = np.stack(columns[0::2], axis=1), np.stack(columns[1::2], axis=1)
    late = starts > horizon  # spells that start beyond the horizon are never needed
    starts[late], ends[late] = np.inf, np.inf
    toggles = np.stack([starts, ends], axis=2).reshape(len(peers), -1)
    return toggles[:, :2 * max(1, int((~late).sum(axis=1).max(initial=1)))]


def read_trace(text: str, n_peers: int) -> dict[int, list[tuple[float, float]]]:
    """``{peer: [(start, end), ...]}`` from CSV text ``peer,start,end`` (a header line and
    ``#`` comments allowed). Raises :class:`TraceError` for an unknown peer, a spell that
    does not satisfy ``0 <= start < end``, or spells of one peer that overlap."""
    spells: dict[int, list[tuple[float, float]]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        try:
            peer, start, end = int(fields[0]), float(fields[1]), float(fields[2])
            if len(fields) != 3:
                raise ValueError
        except (ValueError, IndexError):
            if number == 1 and not any(spells):
                continue  # a header line
            raise TraceError(f"line {number}: expected peer,start,end (got {line[:60]!r})") from None
        if not 0 <= peer < n_peers:
            raise TraceError(f"line {number}: unknown peer {peer} (peers are 0..{n_peers - 1})")
        if not (0 <= start < end) or not np.isfinite(start):
            raise TraceError(f"line {number}: a spell needs 0 <= start < end (got {start:g}, {end:g})")
        spells.setdefault(peer, []).append((start, end))
    for peer, items in spells.items():
        items.sort()
        for (s0, e0), (s1, _) in zip(items, items[1:]):
            if s1 < e0:
                raise TraceError(f"peer {peer}: spells [{s0:g}, {e0:g}) and starting at {s1:g} overlap")
    return spells


def trace_toggles(spells: dict, n_peers: int) -> np.ndarray:
    """``[n_peers, M]`` toggles from :func:`read_trace`'s spells (unlisted peers: always online)."""
    width = max((2 * len(v) for v in spells.values()), default=2)
    toggles = np.full((n_peers, max(width, 2)), np.inf)
    toggles[:, 0] = 0.0
    for peer, items in spells.items():
        flat = [t for spell in items for t in spell]
        toggles[peer] = np.inf
        toggles[peer, :len(flat)] = flat
    return toggles


class Presence:
    """Online spells of every peer (``toggles [N, M]``; None: always online)."""

    def __init__(self, toggles: Optional[np.ndarray]):
        self.toggles = toggles

    @classmethod
    def of(cls, scenario, byzantine_ids, horizon: float, trace_text: Optional[str] = None) -> "Presence":
        """The presence a scenario's ``network.churn`` describes, up to time ``horizon``."""
        net = scenario.network
        churn = net.churn if net is not None else None
        n = scenario.topology.n_peers
        if churn is None:
            return cls(None)
        if churn.trace is not None:
            return cls(trace_toggles(read_trace(trace_text, n), n))
        byz = np.zeros(n, dtype=bool)
        byz[list(byzantine_ids)] = True
        processes = [(np.flatnonzero(~byz), churn)]
        if churn.attackers is not None:
            processes.append((np.flatnonzero(byz), churn.attackers))
        else:
            processes[0] = (np.arange(n), churn)
        parts = [(ids, exponential_toggles(scenario.seed, ids, p.join_at, p.up_mean, p.down_mean, horizon))
                 for ids, p in processes]
        width = max(t.shape[1] for _, t in parts)
        toggles = np.full((n, width), np.inf)
        for ids, t in parts:
            toggles[ids, :t.shape[1]] = t
        return cls(toggles)

    def with_spells(self, spells: dict, n_peers: int) -> "Presence":
        """This presence with the rows of the peers in ``spells`` (``{peer: [(start,
        end), ...]}``, an attack's ``online_spells``) replaced by those spells."""
        toggles = np.tile(np.array([0.0, np.inf]), (n_peers, 1)) if self.toggles is None else self.toggles
        given = trace_toggles(spells, n_peers)
        width = max(toggles.shape[1], given.shape[1])
        out = np.full((n_peers, width), np.inf)
        out[:, :toggles.shape[1]] = toggles
        rows = np.asarray(sorted(spells), dtype=np.int64)
        out[rows] = np.inf
        out[rows, :given.shape[1]] = given[rows]
        return Presence(out)

    def _count(self, peers, t) -> np.ndarray:
        peers = np.asarray(peers, dtype=np.int64)
        t = np.broadcast_to(np.asarray(t, dtype=np.float64), peers.shape)
        return (self.toggles[peers] <= t[:, None]).sum(axis=1)

    def online(self, peers, t) -> np.ndarray:
        """Whether each of ``peers`` is online at time ``t`` (a scalar or one per peer)."""
        peers = np.asarray(peers, dtype=np.int64)
        if self.toggles is None:
            return np.ones(len(peers), dtype=bool)
        return self._count(peers, t) % 2 == 1

    def next_online(self, peers, t) -> np.ndarray:
        """The first time ``>= t`` at which each of ``peers`` is online (+inf: never again)."""
        peers = np.asarray(peers, dtype=np.int64)
        t = np.broadcast_to(np.asarray(t, dtype=np.float64), peers.shape).copy()
        if self.toggles is None:
            return t
        count = self._count(peers, t)
        offline = count % 2 == 0
        rows = self.toggles[peers]
        nxt = np.where(count < rows.shape[1], rows[np.arange(len(peers)), np.minimum(count, rows.shape[1] - 1)],
                       np.inf)
        return np.where(offline, nxt, t)
