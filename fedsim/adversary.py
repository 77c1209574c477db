"""Where the attackers sit: which peers are Byzantine (how many: ``config.adversary_count``).

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

import networkx as nx

from fedsim import rng

PLACEMENTS = ("random", "degree", "betweenness")


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
