"""What the engine tells a defense in PeerContext about the round's graph and senders,
checked by hand on a small graph."""
import dataclasses

import numpy as np
import torch

from fedsim.api import Defense
from fedsim.engine import exchange
from fedsim.engine.host import Plugins
from fedsim.engine.peer_group import PeerGroup
from fedsim.registry import create
from tests.test_peer_group import make_world


class _Recorder(Defense):
    """Keeps every peer's context and returns its own head."""

    name = "recorder_for_test"
    needs_context = True

    def __init__(self):
        self.seen = {}

    def aggregate(self, own, received, ctx=None):
        self.seen[ctx.peer_id] = (ctx, received.shape[0])
        return own


def test_context_counts_byzantine_senders_and_gives_degrees():
    # Edges 0-1, 0-2, 0-3, 1-3, 2-4; peer 3 is Byzantine and crafts a message to peer 0
    # only (so peer 1 hears 3 in the graph but receives nothing from it).
    world = dataclasses.replace(make_world(n=5, C=2, D=3), byzantine_ids=[3], honest_ids=[0, 1, 2, 4])
    neighbours = np.array([[1, 2, 3], [0, 3, -1], [0, 4, -1], [0, 1, -1], [2, -1, -1]])
    degrees = exchange.degrees(neighbours)
    assert degrees.tolist() == [3, 2, 2, 2, 1]
    recorder = _Recorder()
    scenario = world.scenario
    plugins = Plugins(head=create("heads", scenario.model.head), defense=recorder, fallback=create("defenses", "mean"),
                      attack=None, privacy=None)
    group = PeerGroup(world, range(5), plugins)
    sent_all = torch.cat([group.heads.clone(), torch.zeros(1, 2, 4)])
    crafted = {0: [(3, torch.ones(2, 4))]}
    group.aggregate(1, sent_all, neighbours, torch.full((6,), -1), crafted, honest_bytes=32, degrees=degrees)

    expected = {  # peer: (received, byzantine among them, own degree, sender degrees)
        0: (3, 1, 3, [2, 2, 2]),
        1: (1, 0, 2, [3]),
        2: (2, 0, 2, [3, 1]),
        4: (1, 0, 1, [2]),
    }
    assert sorted(recorder.seen) == sorted(expected)   # the Byzantine peer 3 is not defended
    for peer, (received, byzantine, degree, sender_degrees) in expected.items():
        ctx, k = recorder.seen[peer]
        assert k == received == len(ctx.sender_ids)
        assert ctx.byzantine_neighbours == byzantine
        assert ctx.degree == degree
        assert ctx.sender_degrees.tolist() == sender_degrees
