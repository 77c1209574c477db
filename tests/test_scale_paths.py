"""The whole-group paths that replaced per-peer Python loops for 100,000 peers (issue
14.3) against the per-peer forms they replaced, computed here peer by peer."""
import networkx as nx
import numpy as np
import pytest
import torch

from fedsim import rng
from fedsim.data.partition import dirichlet, local_test_split
from fedsim.sinks import peer_properties
from fedsim.topology import build, neighbour_matrix
from fedsim.world import local_test_splits


@pytest.mark.parametrize("test_per_class", [0, 2])
def test_local_test_splits_are_every_peers_local_test_split(test_per_class):
    labels = np.random.default_rng(0).integers(0, 10, 3000)
    groups = dirichlet(labels, 120, 0, alpha=0.1, min_samples=1)   # peers with 1..few classes
    train, test, classes = local_test_splits(groups, labels, test_per_class, 3)
    for peer, idx in enumerate(groups):
        tr, te, cl = local_test_split(idx, labels, test_per_class, rng.local_test_seed(3, peer))
        assert np.array_equal(train[peer], tr) and train[peer].dtype == np.int64
        assert np.array_equal(test[peer], te) and test[peer].dtype == np.int64
        assert torch.equal(classes[peer], torch.as_tensor(np.asarray(cl, dtype=np.int64))), peer


@pytest.mark.parametrize("graph", [nx.random_regular_graph(4, 20, seed=1), nx.barabasi_albert_graph(40, 2, seed=0),
                                   nx.empty_graph(4), nx.fast_gnp_random_graph(30, 0.1, seed=2)])
def test_neighbour_matrix_rows_are_each_peers_sorted_neighbours(graph):
    n = graph.number_of_nodes()
    ids, degree = neighbour_matrix(graph, n)
    assert ids.shape == (n, max(1, max(d for _, d in graph.degree())))
    for i in range(n):
        nbrs = sorted(graph.adj[i])
        assert degree[i] == len(nbrs)
        assert ids[i, :len(nbrs)].tolist() == nbrs and (ids[i, len(nbrs):] == -1).all()


def test_a_kept_graph_serves_the_next_build_with_the_same_arguments_once():
    kept = build("random_regular", 30, 5, {"degree": 4}, keep=True)       # validation
    assert build("random_regular", 30, 5, {"degree": 4}) is kept           # the run's schedule
    again = build("random_regular", 30, 5, {"degree": 4})                  # built afresh
    assert again is not kept and sorted(again.edges) == sorted(kept.edges)
    build("random_regular", 30, 5, {"degree": 4}, keep=True)
    other = build("random_regular", 30, 6, {"degree": 4})                  # other arguments
    assert sorted(other.edges) == sorted(nx.random_regular_graph(4, 30, seed=6).edges)


def test_peer_properties_leave_betweenness_empty_above_the_limit(monkeypatch):
    import fedsim.sinks as sinks
    graph = nx.path_graph(5)                             # 0 - 1 - 2 - 3 - 4
    classes = [torch.tensor([0])] * 5
    # the middle peer lies on the only shortest path of 4 of the 6 pairs of other peers
    assert peer_properties(graph, [], classes)[2]["betweenness"] == pytest.approx(4 / 6)
    monkeypatch.setattr(sinks, "BETWEENNESS_UP_TO", 4)
    assert peer_properties(graph, [], classes)[2]["betweenness"] is None
