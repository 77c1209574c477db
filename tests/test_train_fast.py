"""The fast training path: its chunking and buffer layout change no bit, and the
one-hot-free logit gradients equal the one-hot formulas exactly."""
import dataclasses

import pytest
import torch

from fedsim import config
from fedsim.engine import peer_group
from fedsim.models.heads import L2SVMHead, SoftmaxHead
from tests.test_peer_group import group_of, make_world


@pytest.mark.parametrize("training", [
    {"optimizer": "sgd"},
    {"optimizer": "adam", "weight_decay": 0.01, "batch_size": 5},
    {"optimizer": "sgd", "missing_class_scale": 0.5, "z_loss": 0.01, "migu_quantile": 0.3},
])
def test_chunks_of_one_peer_equal_one_chunk_of_all(monkeypatch, training):
    world = make_world()
    s = world.scenario.to_dict()
    s["training"] = {**s["training"], **training}
    world = dataclasses.replace(world, scenario=config.from_dict(s))
    whole = group_of(world, range(5))
    monkeypatch.setattr(peer_group, "_TRAIN_CHUNK_BYTES", 1)  # one peer per chunk
    split = group_of(world, range(5))
    for r in (1, 2):
        monkeypatch.setattr(peer_group, "_TRAIN_CHUNK_BYTES", 1)
        a = split.train(r)
        monkeypatch.setattr(peer_group, "_TRAIN_CHUNK_BYTES", 2**30)
        b = whole.train(r)
        assert torch.equal(a, b) and torch.equal(split.heads, whole.heads)


def test_gathered_steps_are_aligned_and_hold_the_rows():
    inputs = torch.randn(50, 13)
    rows = torch.randint(0, 50, (3, 2 * 5))
    blocks = peer_group._gathered_steps(inputs, rows, (2, 5))
    for s, block in enumerate(blocks):
        assert block.shape == (2, 5, 13) and block.data_ptr() % 64 == 0
        assert torch.equal(block.reshape(10, 13), inputs[rows[s]])


def test_logit_gradients_equal_the_one_hot_formulas():
    g = torch.Generator().manual_seed(3)
    logits, labels = torch.randn(4, 6, 7, generator=g), torch.randint(0, 7, (4, 6), generator=g)
    one_hot = torch.nn.functional.one_hot(labels, 7).to(logits.dtype)
    assert torch.equal(SoftmaxHead().logit_grad(logits, labels), torch.softmax(logits, dim=-1) - one_hot)
    t = 2.0 * one_hot - 1.0
    assert torch.equal(L2SVMHead()._targets(logits, labels), t)
