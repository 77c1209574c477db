"""PeerGroup.train on a subset of its peers (asynchronous gossip trains peers at
different times): the trained rows match a group of just those peers, the others are
untouched, and Adam counts its steps per peer."""
import numpy as np
import torch

from fedsim.engine.ray_backend import merge_states
from tests.test_peer_group import group_of, make_world


def test_subset_rows_train_like_their_own_group_and_others_stay():
    world = make_world()
    group = group_of(world, range(5))
    group.train(1)
    heads, previous = group.heads.clone(), group.previous.clone()
    sent = group.train(2, rows=torch.tensor([1, 3]), draw_keys=np.array([5, 7]))
    for row, peer, key in ((0, 1, 5), (1, 3, 7)):
        alone = group_of(world, [peer])
        alone.train(1)
        expected = alone.train(key)
        assert torch.equal(sent[row], expected[0])
        assert torch.equal(group.heads[peer], expected[0])
        assert torch.equal(group.previous[peer], heads[peer])
    untouched = [0, 2, 4]
    assert torch.equal(group.heads[untouched], heads[untouched])
    assert torch.equal(group.previous[untouched], previous[untouched])


def test_all_rows_with_round_keys_equal_the_synchronous_call():
    world = make_world(optimizer="adam")
    a, b = group_of(world, range(5)), group_of(world, range(5))
    sync = a.train(3)
    subset = b.train(9, rows=torch.arange(5), draw_keys=np.full(5, 3))
    assert torch.equal(sync, subset) and torch.equal(a.adam_m, b.adam_m)


def test_adam_counts_steps_per_peer():
    world = make_world(optimizer="adam")
    group = group_of(world, range(5))
    group.train(1)
    group.train(2, rows=torch.tensor([2]), draw_keys=np.array([2]))
    assert group.adam_steps.tolist() == [3, 3, 6, 3, 3]  # local_steps = 3
    m, v = group.adam_m.clone(), group.adam_v.clone()
    group.train(3)  # peers at different step counts: each with its own bias correction
    for peer, rounds in ((2, (1, 2, 3)), (0, (1, 3))):
        alone = group_of(world, [peer])
        for r in rounds:
            alone.train(r)
        assert torch.allclose(group.heads[peer], alone.heads[0], atol=1e-6, rtol=0)
    assert not torch.equal(group.adam_m, m) and not torch.equal(group.adam_v, v)


def test_checkpoints_with_one_step_count_still_load():
    world = make_world(optimizer="adam")
    group = group_of(world, range(5))
    group.train(1)
    state = group.state_dict()
    state["adam_steps"] = 3  # the format before step counts were per peer
    other = group_of(world, range(5))
    other.load_state_dict(state)
    assert other.adam_steps.tolist() == [3] * 5
    assert torch.equal(other.train(2), group.train(2))


def test_merged_states_keep_each_peers_step_count():
    world = make_world(optimizer="adam")
    left, right = group_of(world, [0, 3]), group_of(world, [1, 2, 4])
    left.train(1)
    merged = merge_states([left.state_dict(), right.state_dict()])
    assert merged["adam_steps"].tolist() == [3, 0, 0, 3, 0]
