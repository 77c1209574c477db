"""z-loss (Wortsman et al. 2023): ``z_loss * (log Z)^2`` added to the head's loss, its
closed-form gradient against autograd, and the log Z that every evaluated row reports."""
import dataclasses
import math

import pytest
import torch

import fedsim
from fedsim import config
from fedsim.models.heads import L2SVMHead, SoftmaxHead, head_logits, log_partition
from tests.conftest import tiny_scenario
from tests.test_peer_group import group_of, make_world


@pytest.mark.parametrize("head_fn", [SoftmaxHead(), L2SVMHead()], ids=["linear", "l2svm"])
@pytest.mark.parametrize("scaled", [False, True])
def test_z_loss_gradient_equals_autograd(head_fn, scaled):
    g = torch.Generator().manual_seed(0)
    heads = torch.randn(3, 4, 6, generator=g, dtype=torch.float64) * 2
    x = torch.randn(3, 7, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (3, 7), generator=g)
    scale = torch.rand(3, 4, generator=g, dtype=torch.float64) if scaled else None
    z_loss = 0.3
    loss, grad = head_fn.loss_and_grad(heads, x, y, scale, z_loss)
    leaf = heads.clone().requires_grad_(True)
    logits = head_logits(leaf, x) * (scale.unsqueeze(-2) if scaled else 1.0)
    per_sample = head_fn.loss(logits, y) + z_loss * torch.logsumexp(logits, dim=-1) ** 2
    reference = per_sample.mean(dim=-1)
    penalty = head_fn.penalty(leaf, y.shape[-1])
    if penalty is not None:
        reference = reference + penalty[0]
    reference.sum().backward()
    assert torch.allclose(loss, reference.detach(), rtol=0, atol=1e-6)
    assert torch.allclose(grad, leaf.grad, rtol=0, atol=1e-6)


def test_z_loss_by_hand_on_a_zero_head():
    # zero head, C = 4: every logit 0, log Z = log 4, softmax 1/4.
    # loss = log 4 + z (log 4)^2; dz_c = 1/4 - [c == y] + 2 z log 4 / 4; the bias column of
    # the gradient is dz (x = [1] only adds the ones column of D = 1 with feature 0).
    z = 0.5
    loss, grad = SoftmaxHead().loss_and_grad(torch.zeros(4, 2, dtype=torch.float64),
                                              torch.zeros(1, 1, dtype=torch.float64), torch.tensor([2]), z_loss=z)
    log4 = math.log(4)
    assert abs(loss.item() - (log4 + z * log4 ** 2)) < 1e-12
    extra = 2 * z * log4 / 4
    assert torch.allclose(grad[:, 1], torch.tensor([0.25 + extra, 0.25 + extra, -0.75 + extra, 0.25 + extra],
                                                   dtype=torch.float64))
    assert torch.all(grad[:, 0] == 0)


def test_z_loss_is_off_by_default_and_pulls_log_z_down():
    world = make_world()
    plain = group_of(world, range(5))
    s = world.scenario.to_dict()
    s["training"]["z_loss"] = 1.0
    z_world = dataclasses.replace(world, scenario=config.from_dict(s))
    pulled = group_of(z_world, range(5))
    assert world.scenario.training.z_loss == 0.0
    for r in range(1, 6):
        plain.train(r)
        pulled.train(r)
    log_z = lambda group: log_partition(head_logits(group.heads, world.features)).abs().mean()
    assert log_z(pulled) < log_z(plain)


def test_evaluate_reports_log_z_of_honest_and_byzantine_heads():
    world = dataclasses.replace(make_world(n=3, C=3, D=2), byzantine_ids=[2])
    group = group_of(world, range(3))
    group.heads = torch.zeros(3, 3, 3)
    group.heads[1, 0, -1] = math.log(4.0)  # logits [log 4, 0, 0]: Z = 4 + 1 + 1
    group.heads[2, :, -1] = math.log(2.0)  # logits all log 2: Z = 6
    res = group.evaluate(torch.randn(5, 2), torch.tensor([0, 1, 2, 0, 1]))
    assert res["ids"].tolist() == [0, 1]
    assert torch.allclose(res["log_z"], torch.tensor([math.log(3), math.log(6)], dtype=torch.float64))
    assert torch.allclose(res["byzantine_log_z"], torch.tensor([math.log(6)], dtype=torch.float64))


def test_rows_carry_log_z_keys(tmp_path):
    sc = tiny_scenario(**{"rounds": 2, "adversary": {"count": 2, "attack": {"name": "gaussian"}}})
    summary, run_dir = fedsim.run(sc, out=tmp_path / "run", progress=False)
    row = summary["final"]
    assert row["log_z_max"] >= row["log_z_mean"] > 0
    assert "byzantine_log_z_mean" in row


def test_shipped_log_z_scenario_is_valid():
    from tests.conftest import ROOT
    s = config.load(ROOT / "scenarios" / "log_z.yaml")
    assert s.training.z_loss == 1e-4 and s.adversary.count == 6
