"""What an attacker may see, what it costs on the wire, and the training options that
shape what peers send (FedRS restricted softmax, public-split initial head)."""
import networkx as nx
import numpy as np
import torch

from fedsim import config
from fedsim.engine import exchange
from fedsim.engine.host import GroupHost
from fedsim.topology import neighbour_matrix
from tests.test_peer_group import group_of, make_world


def attacked_world(omniscient: bool):
    world = make_world(n=5)
    adv = {"count": 1, "omniscient": omniscient, "attack": {"name": "gaussian"}}
    world.scenario = config.from_dict({**world.scenario.to_dict(), "adversary": adv})
    world.byzantine_ids, world.honest_ids = [4], [0, 1, 2, 3]
    return world


def test_non_omniscient_attacker_sees_only_what_its_peer_received():
    # path 0 - 1 - 2 - 3 - 4: Byzantine peer 4 only hears from peer 3
    graph = nx.path_graph(5)
    sent = torch.arange(5, dtype=torch.float32)[:, None, None].expand(5, 3, 5).clone()
    world = attacked_world(omniscient=False)
    view = exchange.attacker_view(world, graph, 1, sent, [4], sent[[4]], sent[[4]])
    assert view.observed_ids == [3]
    assert torch.equal(view.observed, sent[[3]])
    assert view.observed_by(0) is None and view.graph is None and view.defense is None
    assert view.receivers == {4: [3]}


def test_omniscient_attacker_sees_every_honest_head():
    graph = nx.path_graph(5)
    sent = torch.randn(5, 3, 5)
    view = exchange.attacker_view(attacked_world(omniscient=True), graph, 1, sent, [4], sent[[4]], sent[[4]])
    assert view.observed_ids == [0, 1, 2, 3] and torch.equal(view.observed, sent[:4])


def test_deliver_writes_crafted_heads_into_their_slots_and_counts():
    # receivers 0 and 1; peer 4 is Byzantine; 5 peers + the padding entry
    byzantine = torch.tensor([False, False, False, False, True, False])
    senders = torch.tensor([[1, 4, -1], [0, 2, 4]])
    received = torch.zeros(2, 3, 1, 2)
    good = torch.ones(1, 2)
    crafted = exchange.by_receiver({(4, 0): good, (4, 1): torch.zeros(2, 2, dtype=torch.float64),
                                    (4, 7): good}, receivers=[0, 1])
    assert list(crafted) == [0, 1]  # receiver 7 is not among these receivers
    mask, counts = exchange.deliver(received, senders, [0, 1], byzantine, crafted, honest_bytes=8)
    # slot (0, 1) now holds the crafted head; (1, 2) stays empty: wrong shape, dropped
    assert mask.tolist() == [[True, True, False], [True, True, False]]
    assert torch.equal(received[0, 1], good) and torch.equal(received[1, 2], torch.zeros(1, 2))
    # 3 honest messages of 8 bytes; the two crafted tensors at their own size: 2 float32, 4 float64
    assert counts == {"delivered": 4, "dropped": 1, "nonfinite": 0, "bytes": 3 * 8 + 2 * 4 + 4 * 8}


def test_deliver_refuses_integer_heads_and_non_neighbours_and_counts_nonfinite():
    byzantine = torch.tensor([False, False, True, True, False])
    senders = torch.tensor([[1, 2, 3]])
    received = torch.zeros(1, 3, 1, 2)
    received[0, 0, 0, 0] = float("inf")  # an honest head that diverged
    crafted = {0: [(2, torch.ones(1, 2, dtype=torch.long)), (3, torch.full((1, 2), float("nan"))),
                   (4, torch.ones(1, 2))]}  # 4 is no neighbour of 0: nothing arrives
    mask, counts = exchange.deliver(received, senders, [0], byzantine, crafted, honest_bytes=8)
    assert mask.tolist() == [[True, False, True]]
    assert counts["dropped"] == 1 and counts["delivered"] == 2 and counts["nonfinite"] == 2
    # one honest message; crafted: 2 int64, 2 + 2 float32 (refused or not, they were sent)
    assert counts["bytes"] == 8 + 2 * 8 + 2 * 4 + 2 * 4


def test_crafted_messages_validated_dropped_and_counted_in_a_round():
    world = attacked_world(omniscient=False)
    group = group_of(world, range(5))
    sent = torch.cat([group.heads.clone(), torch.zeros(1, 3, 5)])
    neighbours = np.array([[1, 4], [0, 4], [3, -1], [2, -1], [0, 1]])
    nan_head = torch.full((3, 5), float("nan"))
    crafted = {(4, 0): torch.zeros(2, 2), (4, 1): nan_head}  # wrong shape -> dropped; NaN -> kept
    stats = group.aggregate(1, sent, neighbours, torch.full((6,), -1), exchange.by_receiver(crafted, range(5)),
                            honest_bytes=60)
    assert stats["dropped"] == 1 and stats["nonfinite"] == 1
    # peer 0 got only peer 1's head (the wrong-shaped one was dropped): mean of two equal heads
    assert torch.allclose(group.heads[0], world.init_head)
    assert torch.isnan(group.heads[1]).all()  # the mean defense is not robust: NaN spreads
    # 6 honest messages (0<-1, 1<-0, 2<-3, 3<-2, 4<-0, 4<-1); crafted: 4 + 15 float32
    assert stats["bytes"] == 6 * 60 + 4 * 4 + 15 * 4


def test_bytes_per_message_counts_the_head_only():
    world = make_world(n=5, C=3, D=4)
    assert exchange.message_bytes(world, None) == 3 * 5 * 4
    # complete graph, no adversary: 5 peers each send to 4 neighbours
    host = GroupHost(world, range(5))
    neighbours, _ = neighbour_matrix(nx.complete_graph(5), 5)
    stats = host.aggregate(1, neighbours, {}, host.train(1))
    assert stats["bytes"] == 20 * 60 and stats["delivered"] == 20


def test_restricted_softmax_leaves_missing_class_rows_untouched():
    world = make_world(n=2, C=3, D=4)
    world.peers.classes = [torch.tensor([0, 1]), torch.tensor([0, 1, 2])]
    s = world.scenario.to_dict()
    s["training"]["missing_class_scale"] = 0.0
    world.scenario = config.from_dict(s)
    group = group_of(world, range(2))
    start = group.heads.clone()
    group.train(1)
    assert torch.equal(group.heads[0, 2], start[0, 2])       # class 2 not held by peer 0: unchanged
    assert not torch.equal(group.heads[0, 0], start[0, 0])   # held classes learn
    assert not torch.equal(group.heads[1, 2], start[1, 2])   # peer 1 holds class 2
