"""fedsim.functional on numbers worked out by hand (3-4-5 triangles, small medians,
Krum scores summed on paper) and against a second method (torch.optim.Adam)."""
from __future__ import annotations

import math

import pytest
import torch

from fedsim import functional as F

NAN, INF = float("nan"), float("inf")


def test_finite_rows_and_drop_nonfinite():
    rows = torch.tensor([[1.0, 2.0], [NAN, 0.0], [0.0, -INF], [3.0, 4.0]])
    assert F.finite_rows(rows).tolist() == [True, False, False, True]
    assert F.drop_nonfinite(rows).tolist() == [[1.0, 2.0], [3.0, 4.0]]
    group = torch.zeros(2, 3, 2, 2)
    group[1, 2, 0, 1] = NAN
    assert F.finite_rows(group, batch_dims=2).tolist() == [[True, True, True], [True, True, False]]
    empty = torch.zeros(0, 2, 3)
    assert F.drop_nonfinite(empty).shape == (0, 2, 3)


def test_distances_to_one_centre_and_to_one_centre_per_row():
    rows = torch.tensor([[[3.0, 0.0], [0.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]])
    assert F.distances_to(torch.zeros(2, 2), rows).tolist() == [5.0, 2.0]
    # One centre per row (rows [C, P] against their counterparts): sqrt(9 + 16), 0.
    head = torch.tensor([[4.0, 4.0], [1.0, 2.0]])
    assert F.distances_to(torch.tensor([[1.0, 0.0], [1.0, 2.0]]), head).tolist() == [5.0, 0.0]


def test_distances_are_float64_so_huge_float32_heads_stay_finite():
    huge = torch.full((1, 2), 3e38)            # near float32's max (3.4e38)
    d = F.distances_to(torch.zeros(2), huge)
    assert d.dtype == torch.float64
    assert d.item() == pytest.approx(math.sqrt(2) * 3e38, rel=1e-6)
    assert math.isfinite(F.pairwise_squared_distances(torch.cat([huge, -huge])).max().item())


def test_pairwise_distances_by_hand_and_both_compute_modes():
    rows = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    assert F.pairwise_distances(rows).tolist() == [[0.0, 5.0, 10.0], [5.0, 0.0, 5.0], [10.0, 5.0, 0.0]]
    assert F.pairwise_squared_distances(rows).tolist() == [[0.0, 25.0, 100.0], [25.0, 0.0, 25.0],
                                                          [100.0, 25.0, 0.0]]
    assert F.pairwise_distances(rows[:1], rows[1:]).tolist() == [[5.0, 10.0]]
    # Up to 25 rows cdist's own default computes from differences too: the same bits.
    g = torch.Generator().manual_seed(0)
    many = torch.randn(25, 40, generator=g)
    assert torch.equal(F.pairwise_distances(many), F.pairwise_distances(many, compute_mode=F.CDIST_DEFAULT))


def test_nearest_sums_and_krum_scores_by_hand():
    d = torch.tensor([[0.0, 1.0, 5.0], [1.0, 0.0, 2.0], [5.0, 2.0, 0.0]])
    assert F.nearest_sums(d, 1).tolist() == [1.0, 1.0, 2.0]
    assert F.nearest_sums(d, 2).tolist() == [6.0, 3.0, 7.0]
    assert F.nearest_sums(d, 0).tolist() == [0.0, 0.0, 0.0]
    assert d[0, 0] == 0.0                      # the input is not changed
    # Points 0, 1, 2, 10 on a line; squared distances summed over the 2 nearest others:
    # 0: 1 + 4; 1: 1 + 1; 2: 1 + 4; 10: 64 + 81.
    points = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    assert F.krum_scores(points, 2).tolist() == [5.0, 2.0, 5.0, 145.0]
    assert F.krum_scores(points[:1], 0).tolist() == [0.0]


def test_cosine_similarity_against_a_vector_and_rows():
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [-2.0, 0.0]])
    assert F.cosine_similarity(x, torch.tensor([3.0, 0.0])).tolist() == pytest.approx(
        [1.0, 1 / math.sqrt(2), 0.0, -1.0])
    both = F.cosine_similarity(x, torch.tensor([[3.0, 0.0], [0.0, 5.0]]))
    assert both.shape == (4, 2)
    assert both.flatten().tolist() == pytest.approx([1.0, 0.0, 1 / math.sqrt(2), 1 / math.sqrt(2),
                                                     0.0, 0.0, -1.0, 0.0])
    # A zero vector scores 0 (never NaN), whichever side it is on.
    assert F.cosine_similarity(torch.ones(1, 2), torch.zeros(2)).tolist() == [0.0]
    # eps is a floor on ||x|| ||y||: tiny parallel vectors score 1 with the default and
    # 1e-14 / 1e-12 = 0.01 with eps = 1e-12 (the matching loss's choice).
    tiny = torch.tensor([1e-7, 0.0], dtype=torch.float64)
    assert F.cosine_similarity(tiny, tiny).item() == pytest.approx(1.0)
    assert F.cosine_similarity(tiny, tiny, eps=1e-12).item() == pytest.approx(0.01)


def test_coordinate_median_and_trimmed_mean_by_hand():
    rows = torch.tensor([[1.0, 9.0], [2.0, 7.0], [4.0, 8.0], [100.0, 0.0]])
    assert F.coordinate_median(rows).tolist() == [3.0, 7.5]          # mean of the middle two
    assert F.coordinate_median(rows[:3]).tolist() == [2.0, 8.0]
    values = torch.tensor([[1.0], [5.0], [2.0], [9.0]])
    assert F.trimmed_values(values, 1).tolist() == [[2.0], [5.0]]
    assert F.coordinate_trimmed_mean(values, 1).tolist() == [3.5]
    assert F.coordinate_trimmed_mean(values, 0).tolist() == [4.25]
    with pytest.raises(ValueError, match="cannot trim 2"):
        F.coordinate_trimmed_mean(values, 2)


def test_clip_rows_by_hand():
    rows = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    assert F.clip_rows(rows, 1.0).flatten().tolist() == pytest.approx([0.6, 0.8, 0.3, 0.4, 0.0, 0.0])
    # tau = 0 clips every non-zero row to zero and leaves the zero row alone (no 0 / 0).
    assert F.clip_rows(rows, 0.0).tolist() == [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    # One radius per row: the second row (norm 0.5) is scaled by 0.1 / 0.5.
    per_row = F.clip_rows(rows, torch.tensor([10.0, 0.1, 1.0]))
    assert per_row.flatten().tolist() == pytest.approx([3.0, 4.0, 0.06, 0.08, 0.0, 0.0])


def test_clip_rows_gradient_is_finite_at_a_zero_row():
    zero = torch.zeros(1, 3, requires_grad=True)
    F.clip_rows(zero, 1.0).sum().backward()
    assert torch.isfinite(zero.grad).all()
    assert zero.grad.tolist() == [[1.0, 1.0, 1.0]]


def test_adam_first_step_moves_by_lr_times_the_sign():
    update, m, v = F.adam_step(torch.tensor([2.0, -0.5]), torch.zeros(2), torch.zeros(2), 1, 0.1)
    # m_hat = g, v_hat = g^2: lr g / (|g| + 1e-8).
    assert update.tolist() == pytest.approx([0.1 * 2 / (2 + 1e-8), -0.1 * 0.5 / (0.5 + 1e-8)], rel=1e-6)
    assert m.tolist() == pytest.approx([0.2, -0.05])
    assert v.tolist() == pytest.approx([0.004, 0.00025])


def test_adam_second_step_by_hand():
    g1, g2 = 2.0, 1.0
    _, m, v = F.adam_step(torch.tensor([g1], dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                          torch.zeros(1, dtype=torch.float64), 1, 0.1)
    update, _, _ = F.adam_step(torch.tensor([g2], dtype=torch.float64), m, v, 2, 0.1)
    m2 = 0.9 * 0.1 * g1 + 0.1 * g2                     # 0.28
    v2 = 0.999 * 0.001 * g1 ** 2 + 0.001 * g2 ** 2     # 0.004996
    expected = 0.1 * (m2 / (1 - 0.9 ** 2)) / (math.sqrt(v2 / (1 - 0.999 ** 2)) + 1e-8)
    assert update.item() == pytest.approx(expected, rel=1e-12)


def test_adam_matches_torch_optim_adam():
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(6)]
    param = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([param], lr=0.05, betas=(0.9, 0.999), eps=1e-8)
    ours, m, v = torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3, 4, dtype=torch.float64), \
        torch.zeros(3, 4, dtype=torch.float64)
    for step, grad in enumerate(grads, start=1):
        param.grad = grad.clone()
        optimizer.step()
        update, m, v = F.adam_step(grad, m, v, step, 0.05)
        ours = ours - update
    assert torch.allclose(ours, param.detach(), rtol=1e-10, atol=1e-12)


def test_adam_step_is_the_engines_in_place_step_bit_for_bit():
    # The engine's former in-place form (float32 heads): the shared function must not
    # change a single bit of any run.
    g = torch.Generator().manual_seed(2)
    m_ref, v_ref = torch.zeros(4, 5), torch.zeros(4, 5)
    m, v = m_ref.clone(), v_ref.clone()
    for step in range(1, 5):
        grad = torch.randn(4, 5, generator=g)
        m_ref.mul_(0.9).add_(grad, alpha=0.1)
        v_ref.mul_(0.999).addcmul_(grad, grad, value=0.001)
        expected = 0.05 * (m_ref / (1 - 0.9 ** step)) / ((v_ref / (1 - 0.999 ** step)).sqrt() + 1e-8)
        update, m, v = F.adam_step(grad, m, v, step, 0.05)
        assert torch.equal(update, expected)


def test_adam_sqrt_floor_keeps_the_gradient_finite_at_zero_gradients():
    grad = torch.zeros(3, requires_grad=True)
    update, _, _ = F.adam_step(grad * 1.0, torch.zeros(3), torch.zeros(3), 1, 0.1, sqrt_floor=1e-30)
    update.sum().backward()
    assert torch.isfinite(grad.grad).all()
    assert update.tolist() == [0.0, 0.0, 0.0]
