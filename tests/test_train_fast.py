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
    {"optimizer": "sgd", "kernel": "fast"},                                # the fused step
    {"optimizer": "sgd", "kernel": "fast", "missing_class_scale": 0.5, "z_loss": 0.01},
    {"optimizer": "adam", "kernel": "fast", "weight_decay": 0.01},        # class-major, not fused
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


def step_inputs(seed: int, extras: dict):
    """Random float64 heads [3, 4, 6], inputs with their ones column [3, 8, 6], labels,
    and the FedRS scale and z-loss weight that ``extras`` asks for."""
    g = torch.Generator().manual_seed(seed)
    heads = torch.randn(3, 4, 6, dtype=torch.float64, generator=g)
    inputs = torch.cat([torch.randn(3, 8, 5, dtype=torch.float64, generator=g),
                        torch.ones(3, 8, 1, dtype=torch.float64)], dim=-1)
    labels = torch.randint(0, 4, (3, 8), generator=g)
    scale = torch.tensor([[1.0, 0.5, 1.0, 0.0]] * 3, dtype=torch.float64) if extras.get("logit_scale") else None
    return heads, inputs, labels, scale, extras.get("z_loss", 0.0)


@pytest.mark.parametrize("head_fn", [SoftmaxHead(), L2SVMHead(C=0.7)])
@pytest.mark.parametrize("extras", [{}, {"z_loss": 0.05}, {"logit_scale": True}])
def test_class_major_gradient_equals_autograd(head_fn, extras):
    """``training.kernel: fast`` computes the logits class-major: its logits and gradient
    are the loss's (autograd on the per-sample loss, float64) for both heads, with FedRS's
    logit scale and the z-loss."""
    heads, inputs, labels, scale, z_loss = step_inputs(5, extras)
    logits, grad = head_fn.grad(heads, inputs, labels, scale, z_loss, class_major=True)

    leaf = heads.clone().requires_grad_(True)
    z = inputs @ leaf.transpose(-1, -2)
    if scale is not None:
        z = z * scale.unsqueeze(-2)
    per_sample = head_fn.loss(z, labels) + z_loss * torch.logsumexp(z, dim=-1) ** 2
    loss = per_sample.mean(dim=-1)
    penalty = head_fn.penalty(leaf, labels.shape[-1])
    total = (loss if penalty is None else loss + penalty[0]).sum()
    total.backward()
    assert logits.shape == (3, 8, 4)
    assert torch.allclose(logits, z.detach(), rtol=0, atol=1e-12)
    assert torch.allclose(grad, leaf.grad, rtol=0, atol=1e-12)


def test_fast_kernel_trains_like_the_exact_one_to_float32_rounding():
    """The two kernels give the same heads to float32 rounding after two rounds of 3
    steps on every peer, and the default is the exact one."""
    world = make_world()
    runs = {}
    for kernel in ("exact", "fast"):
        s = world.scenario.to_dict()
        s["training"] = {**s["training"], "kernel": kernel}
        group = group_of(dataclasses.replace(world, scenario=config.from_dict(s)), range(5))
        runs[kernel] = [group.train(r).clone() for r in (1, 2)]
    for exact, fast in zip(runs["exact"], runs["fast"]):
        assert torch.allclose(exact, fast, rtol=0, atol=1e-6)
        assert exact.dtype == torch.float32
    assert config.from_dict({}).training.kernel == "exact"


@pytest.mark.parametrize("head_fn", [SoftmaxHead(), L2SVMHead(C=0.7)])
@pytest.mark.parametrize("extras", [{}, {"z_loss": 0.05, "logit_scale": True}])
def test_fused_sgd_step_is_the_gradient_step(head_fn, extras):
    """``Head.sgd_step_`` (the fast kernel's plain SGD step, one fused baddbmm) moves the
    heads to ``heads - lr * grad`` with ``grad`` from :meth:`Head.grad` (float64, to
    1e-12), the l2svm penalty taken at the pre-step heads."""
    heads, inputs, labels, scale, z_loss = step_inputs(7, extras)
    expected = heads - 0.3 * head_fn.grad(heads, inputs, labels, scale, z_loss)[1]
    stepped = heads.clone()
    head_fn.sgd_step_(stepped, inputs, labels, 0.3, scale, z_loss)
    assert torch.allclose(stepped, expected, rtol=0, atol=1e-12)
    assert not torch.equal(stepped, heads)


def test_label_indicator_stays_out_of_place_under_autograd():
    """The inversion attacks differentiate through ``logit_grad``: with autograd tracking
    the logits the indicator is added out of place, and the gradient flows."""
    logits = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 2, 1, 1, 0])
    dz = SoftmaxHead().logit_grad(logits, labels)
    dz.pow(2).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert torch.allclose(dz.detach(), torch.softmax(logits.detach(), -1)
                          - torch.nn.functional.one_hot(labels, 3).double())
