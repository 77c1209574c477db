import networkx as nx
import pytest

from fedsim import topology as T


@pytest.mark.parametrize("kind,args,n,degrees", [
    ("complete", {}, 7, {6}),
    ("ring", {}, 9, {2}),
    ("random_regular", {"degree": 4}, 20, {4}),
    ("random_regular", {"degree": 3}, 10, {3}),
    ("grid_2d", {"rows": 3, "periodic": True}, 12, {4}),
])
def test_builders_degrees_and_nodes(kind, args, n, degrees):
    g = T.build(kind, n, 0, args)
    assert sorted(g.nodes()) == list(range(n))
    assert {d for _, d in g.degree()} == degrees


def test_grid_default_rows_and_corners():
    g = T.grid_2d(12)  # 3 x 4 lattice: corners degree 2, 6 border nodes degree 3, 2 inner degree 4
    degs = sorted(d for _, d in g.degree())
    assert degs == [2] * 4 + [3] * 6 + [4] * 2


def test_barabasi_albert_edges_and_watts_strogatz():
    g = T.barabasi_albert(50, seed=1, m=2)
    assert g.number_of_edges() == (50 - 2) * 2  # m edges per node added after the m seeds
    ws = T.watts_strogatz(30, seed=1, k=4, p=0.0)
    assert {d for _, d in ws.degree()} == {4} and nx.is_connected(ws)


def test_erdos_renyi_extremes():
    assert T.erdos_renyi(10, seed=0, p=0.0).number_of_edges() == 0
    assert T.erdos_renyi(10, seed=0, p=1.0).number_of_edges() == 45


def test_edgelist(tmp_path):
    path = tmp_path / "e.txt"
    path.write_text("# a triangle and a tail\n0 1\n1 2\n2 0\n2 3\n")
    g = T.edgelist(4, path=str(path))
    assert sorted(map(sorted, g.edges())) == [[0, 1], [0, 2], [1, 2], [2, 3]]
    path.write_text("0 7\n")
    with pytest.raises(T.TopologyError, match="line 1"):
        T.edgelist(4, path=str(path))


def test_schedule_resamples_every_k_rounds():
    s = T.Schedule("random_regular", 20, 0, {"degree": 4}, resample_every=3)
    g1, g3, g4 = s.graph(1), s.graph(3), s.graph(4)
    assert set(g1.edges()) == set(s.graph(2).edges()) == set(g3.edges())
    assert set(g4.edges()) != set(g1.edges())
    static = T.Schedule("random_regular", 20, 0, {"degree": 4})
    assert set(static.graph(1).edges()) == set(static.graph(50).edges())


def test_neighbour_matrix_sorted_and_padded():
    g = nx.Graph([(0, 2), (0, 1), (3, 0)])
    g.add_node(4)
    ids, deg = T.neighbour_matrix(g, 5)
    assert ids[0].tolist() == [1, 2, 3] and ids[4].tolist() == [-1, -1, -1]
    assert deg.tolist() == [3, 1, 1, 1, 0]


def test_honest_components():
    g = nx.path_graph(5)  # removing the middle peer cuts the honest subgraph in two
    assert T.honest_components(g, [0, 1, 3, 4]) == 2
    assert T.honest_components(g, range(5)) == 1
