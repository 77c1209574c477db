"""Attacks that exploit timing in asynchronous gossip: ``adversary.fast`` and the
``sybil_churn`` attack (fresh identities, one spell each)."""
import numpy as np

from fedsim import config
from fedsim.network.run import presence_of
from fedsim.plugins import Plugins
from tests.test_network_async import gossip
from tests.test_peer_group import make_world


def attacked_world(attack, fast=False, **network):
    world = make_world(n=5)
    s = world.scenario.to_dict()
    s["network"] = {"mode": "async", **network}
    s["adversary"] = {"ids": [3, 4], "fast": fast, "attack": attack}
    s["training"]["local_steps"] = 1
    world.scenario = config.from_dict(s)
    world.byzantine_ids, world.honest_ids = [3, 4], [0, 1, 2]
    world.plugins = Plugins.build(world.scenario)
    return world


def test_sybil_churn_identities_take_turns_once_each():
    world = attacked_world({"name": "sybil_churn", "args": {"spell_s": 1.0}}, fast=True,
                           compute_per_peer=[1.0] * 5, tick=0.25, duration_s=4.0)
    presence = presence_of(world.scenario, world, 4.0)
    times = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    assert [presence.online([3], t)[0] for t in times] == [True, True, False, False, False, False]
    assert [presence.online([4], t)[0] for t in times] == [False, False, True, True, False, False]
    assert presence.online([0, 1, 2], 3.0).all()  # honest peers: the scenario's churn (none)
    engine, _ = gossip(world)
    # honest peers at 1, 2, 3 (4.0 is past the run); fast identities every tick (0.25 s) of
    # their spell: 3 at 0.25, 0.5, 0.75 and 4 at 1.25, 1.5, 1.75, then never again
    assert engine.update_count.tolist() == [3, 3, 3, 3, 3]
    assert engine.next_event[3:].tolist() == [np.inf, np.inf]


def test_fast_attackers_send_every_tick_or_every_wire_time():
    slow = attacked_world({"name": "sign_flip"}, compute_per_peer=[1.0] * 5, tick=0.25, duration_s=2.1)
    assert gossip(slow)[0].update_count.tolist() == [2, 2, 2, 2, 2]
    fast = attacked_world({"name": "sign_flip"}, fast=True, compute_per_peer=[1.0] * 5, tick=0.25,
                          duration_s=2.1)
    engine, _ = gossip(fast)
    assert engine.update_count.tolist() == [2, 2, 2, 8, 8]
    # a 3 x 5 float32 head is 60 bytes: at 100 bytes/s it takes 0.6 s on the wire
    wired = attacked_world({"name": "sign_flip"}, fast=True, compute_per_peer=[1.0] * 5, tick=0.25,
                           duration_s=2.1, links={"bandwidth": 100.0})
    engine, _ = gossip(wired)
    assert engine.update_count.tolist()[3:] == [3, 3]  # at 0.6, 1.2, 1.8
