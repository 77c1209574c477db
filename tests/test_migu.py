"""MIGU (Du et al. 2024): the update mask on hand-worked numbers, and local training
that moves only the rows of the units with large output magnitude."""
import dataclasses

import numpy as np
import torch

from fedsim import config
from fedsim import functional as F
from tests.test_peer_group import group_of, make_world


def test_mask_by_hand():
    # outputs of 4 units on a batch of 3; |o_c|_1 = [3, 0.5, 6, 1.5], L1-normalised /11:
    # sorted [0.5, 1.5, 3, 6] / 11; quantile 0.25 at position 0.75 -> (0.5 + 0.75 * 1) / 11
    # = 1.25 / 11: units 0, 2, 3 pass; quantile 0.75 at position 2.25 -> 3.75 / 11: unit 2 only.
    outputs = torch.tensor([[1.0, 0.5, -2.0, 0.5], [-1.0, 0.0, 2.0, -0.5], [1.0, 0.0, 2.0, 0.5]])
    assert F.migu_mask(outputs, 0.25).tolist() == [True, False, True, True]
    assert F.migu_mask(outputs, 0.75).tolist() == [False, False, True, False]
    assert F.migu_mask(outputs, 0.0).all()
    # batched over peers: each peer its own quantile
    both = F.migu_mask(torch.stack([outputs, -outputs[:, [3, 2, 1, 0]]]), 0.75)
    assert both.tolist() == [[False, False, True, False], [False, True, False, False]]


def test_training_moves_only_the_rows_of_large_outputs():
    # D = 4 features made positive, head rows with zero bias and weights proportional to
    # [1, -3, 0.5, 2] on every feature: |z_c| on any sample is |w_c| * sum(x), so the
    # normalised magnitudes are [1, 3, 0.5, 2] / 6.5 whatever the batch; quantile 0.5 lies
    # at 1.5 / 6.5: rows 1 and 3 train, rows 0 and 2 stay.
    world = make_world(C=4)
    world = dataclasses.replace(world, features=world.features.abs() + 0.1)
    s = world.scenario.to_dict()
    s["training"] = {**s["training"], "migu_quantile": 0.5, "local_steps": 1}
    migu_world = dataclasses.replace(world, scenario=config.from_dict(s))
    s["training"]["migu_quantile"] = 0.0
    plain_world = dataclasses.replace(world, scenario=config.from_dict(s))
    start = torch.zeros(5, 4, 5)
    start[:, :, :4] = torch.tensor([1.0, -3.0, 0.5, 2.0])[:, None]
    migu, plain = group_of(migu_world, range(5)), group_of(plain_world, range(5))
    migu.heads, plain.heads = start.clone(), start.clone()
    migu.train(1)
    plain.train(1)
    assert torch.equal(migu.heads[:, [0, 2]], start[:, [0, 2]])
    assert torch.equal(migu.heads[:, [1, 3]], plain.heads[:, [1, 3]])
    assert not torch.equal(plain.heads[:, [0, 2]], start[:, [0, 2]])
