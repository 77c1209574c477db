import numpy as np
import torch

from fedsim import rng
from fedsim.models.heads import L2SVMHead, SoftmaxHead, head_logits, init_head


def test_head_logits_by_hand():
    # two classes, D = 2: row c = [w_c1, w_c2, b_c]
    head = torch.tensor([[1.0, 2.0, 0.5], [-1.0, 0.0, 1.0]])
    x = torch.tensor([[3.0, 4.0]])
    # class 0: 3 + 8 + 0.5 = 11.5; class 1: -3 + 0 + 1 = -2
    assert head_logits(head, x).tolist() == [[11.5, -2.0]]


def test_softmax_grad_matches_autograd_and_hand_value():
    torch.manual_seed(0)
    head = torch.randn(3, 5, requires_grad=True)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 2, 1, 0])
    loss, grad = SoftmaxHead().loss_and_grad(head.detach(), x, y)
    ref = torch.nn.functional.cross_entropy(head_logits(head, x), y)
    ref.backward()
    assert torch.allclose(loss, ref.detach(), atol=1e-6)
    assert torch.allclose(grad, head.grad, atol=1e-6)
    # hand value: zero head -> softmax uniform 1/3; one sample x=[2], y=0, D=1:
    # dz = [1/3 - 1, 1/3, 1/3]; grad = dz^T [x, 1] = [[-4/3, -2/3], [2/3, 1/3], [2/3, 1/3]]
    _, g = SoftmaxHead().loss_and_grad(torch.zeros(3, 2), torch.tensor([[2.0]]), torch.tensor([0]))
    assert torch.allclose(g, torch.tensor([[-4 / 3, -2 / 3], [2 / 3, 1 / 3], [2 / 3, 1 / 3]]))


def test_l2svm_loss_and_grad_by_hand():
    # logits z = [0.5, -2], y = 0: t = [1, -1]; hinge terms max(0, 1 - 0.5) = 0.5, max(0, 1 - 2) = 0
    # (C = 1; the default C = 0.5 halves both, tests/test_gru_svm.py)
    z = torch.tensor([[0.5, -2.0]])
    assert torch.allclose(L2SVMHead(C=1.0).loss(z, torch.tensor([0])), torch.tensor([0.25]))
    # d/dz0 = -2 * 1 * 0.5 = -1, d/dz1 = 0
    assert torch.allclose(L2SVMHead(C=1.0).logit_grad(z, torch.tensor([0])), torch.tensor([[-1.0, 0.0]]))
    head = torch.randn(4, 3, requires_grad=True)
    x, y = torch.randn(5, 2), torch.tensor([0, 3, 1, 2, 3])
    _, grad = L2SVMHead(C=1.0).loss_and_grad(head.detach(), x, y)
    # plus the weight penalty 0.5 ||W||^2 / B (bias column excluded)
    (L2SVMHead(C=1.0).loss(head_logits(head, x), y).mean() + 0.5 * head[:, :-1].pow(2).sum() / 5).backward()
    assert torch.allclose(grad, head.grad, atol=1e-6)


def test_batched_heads_equal_one_by_one():
    torch.manual_seed(1)
    heads, x = torch.randn(4, 3, 6), torch.randn(4, 7, 5)
    y = torch.randint(0, 3, (4, 7))
    _, g = SoftmaxHead().loss_and_grad(heads, x, y)
    for i in range(4):
        assert torch.allclose(g[i], SoftmaxHead().loss_and_grad(heads[i], x[i], y[i])[1], atol=1e-6)


def test_init_head_common_and_seeded():
    a, b = init_head(10, 8, seed=3), init_head(10, 8, seed=3)
    assert torch.equal(a, b) and a.shape == (10, 9) and torch.all(a[:, -1] == 0)
    assert not torch.equal(a, init_head(10, 8, seed=4))


def test_rng_is_a_function_of_its_key_only():
    both = rng.uniform(7, [3, 5], 2, "batch", 4)
    assert np.array_equal(both[1], rng.uniform(7, [5], 2, "batch", 4)[0])  # grouping does not matter
    assert not np.array_equal(both[0], rng.uniform(7, [3], 3, "batch", 4)[0])  # round matters
    assert not np.array_equal(both[0], rng.uniform(7, [3], 2, "other", 4)[0])  # purpose matters
    big = rng.uniform(0, np.arange(1000), 1, "x", 100)
    assert abs(big.mean() - 0.5) < 0.005 and big.min() >= 0 and big.max() < 1
    g1, g2 = rng.generator(0, 1, 2, "x"), rng.generator(0, 1, 2, "x")
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
