"""Graph builders and per-round schedules.

Each builder is a plain function ``f(n_peers, seed, **args) -> networkx.Graph`` on
nodes ``0..n_peers-1``, registered under ``topologies``; the arguments are
networkx's own (see each docstring). Graphs are undirected: a peer sends its head to
every neighbour and receives from every neighbour.
"""
from __future__ import annotations

import itertools
import math

import networkx as nx
import numpy as np

from fedsim import rng
from fedsim.params import Boolean, Interval, String, declare
from fedsim.registry import create, register


MAX_EDGELIST_BYTES = 512 << 20  # ~50 million "u v" lines


class TopologyError(ValueError):
    """A topology that cannot be built from the given arguments."""


def _check_n(n_peers: int) -> None:
    if n_peers < 2:
        raise TopologyError(f"n_peers must be >= 2 (got {n_peers})")


@register("topologies", "complete")
@declare({})
def complete(n_peers: int, seed: int = 0) -> nx.Graph:
    """Every peer is linked to every other (``networkx.complete_graph``)."""
    _check_n(n_peers)
    return nx.complete_graph(n_peers)


@register("topologies", "ring")
@declare({})
def ring(n_peers: int, seed: int = 0) -> nx.Graph:
    """Peer i is linked to i-1 and i+1 mod n (``networkx.cycle_graph``)."""
    _check_n(n_peers)
    return nx.cycle_graph(n_peers)


def _random_regular_run(args, facts):
    n, degree = facts.n_peers, args["degree"]
    if n is not None and degree >= n:
        return [("degree", f"must be at most {n - 1} for {n} peers")]
    if n is not None and (degree * n) % 2:
        return [("degree", f"must be even for an odd number of peers ({n}): degree * n_peers must be even")]
    return []


def _below_n_peers(name):
    def check_run(args, facts):
        if facts.n_peers is not None and args[name] >= facts.n_peers:
            return [(name, f"must be at most {facts.n_peers - 1} for {facts.n_peers} peers")]
        return []
    return check_run


def _grid_run(args, facts):
    rows = args["rows"]
    if facts.n_peers is not None and rows is not None and facts.n_peers % rows:
        return [("rows", f"must divide n_peers={facts.n_peers}")]
    return []


@register("topologies", "random_regular")
@declare({"degree": Interval(int, 0, None)}, _random_regular_run)
def random_regular(n_peers: int, seed: int = 0, degree: int = 4) -> nx.Graph:
    """Uniform random ``degree``-regular graph (``networkx.random_regular_graph``).

    Needs ``0 <= degree < n_peers`` and ``degree * n_peers`` even.
    """
    _check_n(n_peers)
    return nx.random_regular_graph(degree, n_peers, seed=seed)


def _dumbbell_run(args, facts):
    if facts.n_peers is not None and (facts.n_peers % 2 or facts.n_peers < 4):
        return [("n_peers", f"must be even and >= 4 for a dumbbell (two equal cliques); got {facts.n_peers}")]
    return []


@register("topologies", "dumbbell")
@declare({"extra_edges": Interval(int, 0, None)}, _dumbbell_run)
def dumbbell(n_peers: int, seed: int = 0, extra_edges: int = 0) -> nx.Graph:
    """Two cliques joined by one edge, the graph of He, Karimireddy, Jaggi (2022),
    "Byzantine-robust decentralized learning via ClippedGossip", as their code builds it
    (epfml/byzantine-robust-decentralized-optimizer ``codes/graph_utils.py``,
    ``Dumbbell``): cliques ``0..q-1`` and ``q..2q-1`` (``q = n_peers / 2``), the bridge
    ``(0, 2q - 1)``, and ``extra_edges`` more edges between uniform random endpoints of
    the two cliques (the code's ``r``; drawn with ``numpy.random.default_rng(seed)``).
    Pair it with the ``label_groups`` partition (``classes_per_peer: 5``) for the paper's non-iid
    dumbbell, where each clique holds half of the classes.
    """
    if n_peers % 2 or n_peers < 4:
        raise TopologyError(f"dumbbell needs an even n_peers >= 4 (got {n_peers})")
    q = n_peers // 2
    graph = nx.complete_graph(q)
    graph.add_edges_from((i + q, j + q) for i, j in nx.complete_graph(q).edges)
    graph.add_edge(0, 2 * q - 1)
    generator = np.random.default_rng(seed)
    for _ in range(extra_edges):
        graph.add_edge(int(generator.integers(0, q)), int(generator.integers(q, 2 * q)))
    return graph


@register("topologies", "erdos_renyi")
@declare({"p": Interval(float, 0, 1)})
def erdos_renyi(n_peers: int, seed: int = 0, p: float = 0.2) -> nx.Graph:
    """G(n, p) random graph (``networkx.fast_gnp_random_graph``), edge probability ``p``."""
    _check_n(n_peers)
    return nx.fast_gnp_random_graph(n_peers, p, seed=seed)


@register("topologies", "watts_strogatz")
@declare({"k": Interval(int, 2, None), "p": Interval(float, 0, 1)}, _below_n_peers("k"))
def watts_strogatz(n_peers: int, seed: int = 0, k: int = 4, p: float = 0.1) -> nx.Graph:
    """Small-world graph (``networkx.connected_watts_strogatz_graph``): ring lattice of
    ``k`` nearest neighbours, each edge rewired with probability ``p``."""
    _check_n(n_peers)
    return nx.connected_watts_strogatz_graph(n_peers, k, p, tries=100, seed=seed)


@register("topologies", "barabasi_albert")
@declare({"m": Interval(int, 1, None)}, _below_n_peers("m"))
def barabasi_albert(n_peers: int, seed: int = 0, m: int = 2) -> nx.Graph:
    """Preferential attachment (``networkx.barabasi_albert_graph``), ``m`` edges per new node."""
    _check_n(n_peers)
    return nx.barabasi_albert_graph(n_peers, m, seed=seed)


@register("topologies", "grid_2d")
@declare({"rows": [None, Interval(int, 1, None)], "periodic": Boolean()}, _grid_run)
def grid_2d(n_peers: int, seed: int = 0, rows: int | None = None, periodic: bool = False) -> nx.Graph:
    """``rows x (n_peers / rows)`` lattice (``networkx.grid_2d_graph``), nodes numbered row by
    row; ``rows`` defaults to the largest divisor of n_peers not above sqrt(n_peers);
    ``periodic`` wraps it into a torus."""
    _check_n(n_peers)
    if rows is None:
        rows = max(d for d in range(1, int(math.isqrt(n_peers)) + 1) if n_peers % d == 0)
    grid = nx.grid_2d_graph(rows, n_peers // rows, periodic=periodic)
    return nx.convert_node_labels_to_integers(grid, ordering="sorted")


@register("topologies", "edgelist")
@declare({"path": String()})
def edgelist(n_peers: int, seed: int = 0, *, path: str) -> nx.Graph:
    """Edges read from a text file, one ``u v`` pair of peer ids per line (``#`` comments)."""
    _check_n(n_peers)
    from fedsim.config import read_text_file
    lines = read_text_file(path, MAX_EDGELIST_BYTES, "edge list").splitlines()
    graph = nx.empty_graph(n_peers)
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            u, v = int(parts[0]), int(parts[1])
        except (IndexError, ValueError):
            raise TopologyError(f"{path} line {number}: expected two peer ids") from None
        if not (0 <= u < n_peers and 0 <= v < n_peers) or u == v:
            raise TopologyError(f"{path} line {number}: ids must be distinct and in 0..{n_peers - 1}")
        graph.add_edge(u, v)
    return graph


_handed_over: dict = {}


def build(kind: str, n_peers: int, seed: int, args: dict, keep: bool = False) -> nx.Graph:
    """The graph of builder ``kind``. ``keep=True`` (scenario validation) keeps it for
    the next build with the same arguments, which takes it over instead of building it
    again (the run's schedule: round 1's graph takes seconds from 100,000 peers on). A
    kept graph serves one build only, so a run that starts later (a resume, an edge list
    rewritten meanwhile) builds afresh. Graphs are not changed after they are built."""
    key = (kind, n_peers, seed, repr(sorted(args.items())))
    graph = _handed_over.pop(key, None)
    if graph is None:
        graph = create("topologies", kind, n_peers, seed=seed, **args)
    if keep:
        _handed_over.clear()
        _handed_over[key] = graph
    return graph


class Schedule:
    """The graph of each round: one static graph, or a new draw of the same kind every
    ``resample_every`` rounds (period p = (round-1) // resample_every; its graph is built
    from ``fedsim.rng.topology_seed(seed, p)``)."""

    def __init__(self, kind: str, n_peers: int, seed: int, args: dict, resample_every: int = 0):
        self.kind, self.n_peers, self.seed, self.args = kind, n_peers, seed, dict(args)
        self.resample_every = resample_every
        self._cache: dict[int, nx.Graph] = {}

    def period(self, round_: int) -> int:
        return 0 if self.resample_every <= 0 else (round_ - 1) // self.resample_every

    def graph(self, round_: int) -> nx.Graph:
        p = self.period(round_)
        if p not in self._cache:
            self._cache = {p: build(self.kind, self.n_peers, rng.topology_seed(self.seed, p), self.args)}
        return self._cache[p]


def neighbour_matrix(graph: nx.Graph, n_peers: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [n, k_max] padded with -1, degree [n])``; each row sorted ascending, so the
    order in which a peer receives is the same on every backend."""
    adjacency = graph.adj
    degree = np.fromiter((len(adjacency[i]) for i in range(n_peers)), dtype=np.int64, count=n_peers)
    k_max = max(int(degree.max()) if n_peers else 0, 1)
    ids = np.full((n_peers, k_max), n_peers, dtype=np.int64)   # n_peers sorts after every id
    flat = np.fromiter(itertools.chain.from_iterable(adjacency[i] for i in range(n_peers)), dtype=np.int64,
                       count=int(degree.sum()))
    ids[np.repeat(np.arange(n_peers), degree), _positions(degree)] = flat
    ids.sort(axis=1)
    ids[ids == n_peers] = -1
    return ids, degree


def _positions(lengths: np.ndarray) -> np.ndarray:
    """``0 .. lengths[i] - 1`` for every ``i``, concatenated."""
    starts = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum())) - np.repeat(starts, lengths)


def honest_components(graph: nx.Graph, honest_ids) -> int:
    """Number of connected components of the subgraph induced by the honest peers."""
    return nx.number_connected_components(graph.subgraph(list(honest_ids)))
