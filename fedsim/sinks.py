"""What a run writes at each evaluated round besides metrics.jsonl: ``peers.csv`` (always)
and TensorBoard event files (``output.tensorboard: true``).

``peers.csv`` has one row per honest peer and evaluated round::

    round, peer, accuracy, loss, degree, betweenness, byzantine_neighbours, hops_to_byzantine, classes

``accuracy`` and ``loss`` are the peer's head on the global test set (the values whose
mean is ``accuracy_mean`` / ``loss_mean``). The graph columns describe the round-1 graph
(the one the Byzantine peers were placed on; with ``topology.resample_every`` later
rounds use other graphs): ``betweenness`` is networkx's normalised betweenness
centrality (exact up to 500 peers; above, estimated from 32 sampled sources seeded by
the scenario seed; empty above 20,000 peers, where even the estimate takes minutes),
``hops_to_byzantine`` the shortest-path length to the nearest
Byzantine peer (empty when there is none or it is unreachable), ``classes`` the classes
the peer holds, space-separated.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import networkx as nx

from fedsim.config import ScenarioError

PEER_COLUMNS = ("round", "peer", "accuracy", "loss", "degree", "betweenness", "byzantine_neighbours",
                "hops_to_byzantine", "classes")
# Exact betweenness costs O(n m); above this many peers it is estimated from a few
# sampled sources (at 10,000 peers of degree 8, 32 sources take a few seconds).
EXACT_BETWEENNESS_UP_TO = 500
BETWEENNESS_SOURCES = 32
# Each sampled source is a pure-Python breadth-first search over the whole graph: 32 of
# them took 3.5 minutes at 100,000 peers of degree 8. Above this many peers: no column.
BETWEENNESS_UP_TO = 20000


def peer_properties(graph: nx.Graph, byzantine_ids, classes, seed: int = 0) -> dict:
    """Per peer: degree, betweenness, Byzantine neighbours, hops to the nearest Byzantine
    peer (None if none is reachable), held classes as text."""
    n = graph.number_of_nodes()
    k = None if n <= EXACT_BETWEENNESS_UP_TO else BETWEENNESS_SOURCES
    betweenness = nx.betweenness_centrality(graph, k=k, seed=seed if k else None) \
        if n <= BETWEENNESS_UP_TO else {}
    byzantine = set(byzantine_ids)
    hops = nx.multi_source_dijkstra_path_length(graph, byzantine) if byzantine else {}
    return {p: {"degree": graph.degree(p), "betweenness": betweenness.get(p),
                "byzantine_neighbours": sum(1 for q in graph.neighbors(p) if q in byzantine),
                "hops_to_byzantine": hops.get(p),
                "classes": " ".join(str(int(c)) for c in classes[p])} for p in graph.nodes()}


class PeerTable:
    """Appends each evaluated round's per-peer rows to ``peers.csv``. A resumed run starts
    at ``start_round``: rows of earlier rounds are kept, later ones (redone) dropped."""

    def __init__(self, path: Path, world, graph, start_round: int):
        self.path = path
        self.properties = peer_properties(graph, world.byzantine_ids, world.peers.classes, world.seed)
        kept = []
        if start_round > 1 and path.exists():
            with open(path, newline="") as fh:
                kept = [row for row in csv.DictReader(fh) if row.get("round", "").isdigit()
                        and int(row["round"]) < start_round]
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=PEER_COLUMNS)
            writer.writeheader()
            writer.writerows(kept)

    def record(self, row: dict, evaluation: dict) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for peer, acc, loss in zip(evaluation["ids"].tolist(), evaluation["accuracy"].tolist(),
                                   evaluation["loss"].tolist()):
            p = self.properties[int(peer)]
            hops = "" if p["hops_to_byzantine"] is None else p["hops_to_byzantine"]
            writer.writerow([row["round"], int(peer), acc, loss, p["degree"], p["betweenness"],
                             p["byzantine_neighbours"], hops, p["classes"]])
        with open(self.path, "a", newline="") as fh:
            fh.write(buffer.getvalue())

    def close(self) -> None:
        pass


class TensorBoardLog:
    """Every numeric metric of an evaluated round as a scalar, and the honest peers'
    accuracies as a histogram, through tensorboardX's ``SummaryWriter`` (event files in
    ``tensorboard/``; ``tensorboard --logdir RUN_DIR/tensorboard``). A resumed run purges
    the events of the rounds it redoes."""

    def __init__(self, path: Path, start_round: int):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ScenarioError("output.tensorboard: needs the tensorboardX package "
                                "(pip install tensorboardX)") from None
        self.writer = SummaryWriter(str(path), purge_step=start_round if start_round > 1 else None)

    def record(self, row: dict, evaluation: dict) -> None:
        step = row["round"]
        for key, value in row.items():
            if key != "round" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"fedsim/{key}", value, step)
        self.writer.add_histogram("peers/accuracy", evaluation["accuracy"].numpy(), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Sinks:
    """The sinks of one run, fed each evaluated round's metrics row and per-peer results."""

    def __init__(self, scenario, run_dir: Path, world, graph, start_round: int):
        self.sinks = [PeerTable(Path(run_dir) / "peers.csv", world, graph, start_round)]
        if scenario.output.tensorboard:
            self.sinks.append(TensorBoardLog(Path(run_dir) / "tensorboard", start_round))

    def record(self, row: dict, evaluation: dict) -> None:
        for sink in self.sinks:
            sink.record(row, evaluation)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
