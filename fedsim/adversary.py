"""Where the attackers sit: how many Byzantine peers, and which ones.

Pure functions over a networkx graph. Placement strategies:

- ``random``: a seeded uniform choice without replacement (the common default of
  Byzantine-robust learning experiments).
- ``degree``: the best-connected peers first (highest degree; ties to the lowest id),
  the strongest placement for a local attack on a sparse graph.
- ``betweenness``: the peers on most shortest paths first (highest betweenness
  centrality, Freeman 1977, "A set of measures of centrality based on betweenness",
  computed exactly with Brandes' algorithm by ``networkx.betweenness_centrality``;
  ties to the lowest id): the information bottlenecks that the dissensus attack
  (He, Karimireddy, Jaggi 2022) exploits.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import networkx as nx

from fedsim import rng

PLACEMENTS = ("random", "degree", "betweenness")


def byzantine_count(n_peers: int, fraction: Optional[float] = None, count: Optional[int] = None,
                    ids: Optional[Sequence[int]] = None) -> int:
    """How many peers are Byzantine, from the scenario's one of ``fraction``, ``count``
    or ``ids``; 0 when none is given.

    ``fraction``: ``round(fraction * n_peers)`` rounded half up (0.25 * 10 -> 3);
    ``count``: as given; ``ids``: the number of distinct ids. Raises ``ValueError`` when
    more than one is given or a value is out of range.
    """
    if n_peers < 1:
        raise ValueError(f"n_peers must be >= 1, not {n_peers}")
    given = [name for name, value in (("fraction", fraction), ("count", count), ("ids", ids))
             if value is not None]
    if len(given) > 1:
        raise ValueError(f"give only one of fraction, count, ids (got {', '.join(given)})")
    if fraction is not None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], not {fraction!r}")
        return int(math.floor(fraction * n_peers + 0.5))
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= n_peers:
            raise ValueError(f"count must be an integer in 0..{n_peers}, not {count!r}")
        return count
    if ids is not None:
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_peers]
        if bad:
            raise ValueError(f"ids must be peer ids in 0..{n_peers - 1} (got {bad[0]!r})")
        return len(set(ids))
    return 0


def _ranked(scores: dict) -> list[int]:
    # Scores are rounded so that float noise in centrality does not break id ties.
    return sorted(scores, key=lambda node: (-round(float(scores[node]), 12), node))


def choose_byzantine(graph: nx.Graph, count: int, placement: str = "random", seed: int = 0) -> list[int]:
    """The ``count`` Byzantine peer ids of ``graph``, sorted ascending.

    ``placement``: ``random`` (uniform without replacement, drawn from the generator
    keyed by ``(seed, 0, 0, "byzantine_placement")``), ``degree`` or ``betweenness``
    (highest first, ties to the lowest id); see the module doc.
    """
    nodes = sorted(int(v) for v in graph.nodes)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= len(nodes):
        raise ValueError(f"count must be an integer in 0..{len(nodes)}, not {count!r}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, not {placement!r}")
    if count == 0:
        return []
    if placement == "random":
        generator = rng.numpy_rng(seed, 0, 0, "byzantine_placement")
        chosen = generator.choice(len(nodes), size=count, replace=False)
        return sorted(nodes[i] for i in chosen)
    if placement == "degree":
        scores = {int(v): d for v, d in graph.degree()}
    else:
        scores = {int(v): c for v, c in nx.betweenness_centrality(graph).items()}
    return sorted(_ranked(scores)[:count])
