"""Layer-adaptive mixed-precision quantization (defenses/privacy/adaptive.py): the
distortion formula, the budget allocation and the encoding, on hand-worked numbers and
against second methods (Monte Carlo, brute force, global top-k)."""
import itertools
import math

import numpy as np
import pytest
import torch

from defenses.privacy.adaptive import (AdaptiveQuantization, allocate_budget, encoded_bits,
                                       quantization_distortion)
from defenses.privacy.transforms import stochastic_quantize, topk_mask
from fedsim.examples import example_heads
from fedsim.params import ParameterError
from fedsim.registry import create

# Honest neighbour 1's update: row 0 = [1.1, 0, 0.1], row 1 = [0, 0.9, 0]; C = 2, P = 3.
DELTA = example_heads()[1][0]


def test_distortion_by_hand():
    # b = 0: the row's squared norm. b = 2 (L = 1): only 0.1 is off the grid {0, 1.1},
    # p = 0.1/1.1 = 1/11: (1.1)^2 (1/11)(10/11) = 0.1. b = 3 (L = 3): p = 3/11,
    # (1.1/3)^2 (3/11)(8/11) = 24/900. Row 1 sits on every grid (0 and its own max).
    assert quantization_distortion(DELTA, 0).tolist() == pytest.approx([1.22, 0.81])
    assert quantization_distortion(DELTA, 2).tolist() == pytest.approx([0.1, 0.0])
    assert quantization_distortion(DELTA, 3).tolist() == pytest.approx([24 / 900, 0.0])
    assert quantization_distortion(torch.zeros(2, 4), 4).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("bits", [2, 3, 5])
def test_distortion_equals_the_monte_carlo_error_of_the_quantizer(bits):
    rows = torch.randn(3, 40, generator=torch.Generator().manual_seed(bits), dtype=torch.float64)
    levels = 2 ** (bits - 1) - 1
    draws = torch.rand(4000, 3, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    errors = torch.stack([((torch.stack([stochastic_quantize(rows[c], levels, u[c]) for c in range(3)]) - rows) ** 2)
                          .sum(dim=1) for u in draws])
    assert errors.mean(dim=0).tolist() == pytest.approx(quantization_distortion(rows, bits).tolist(), rel=0.05)


def test_allocation_by_hand():
    # Two rows, options (0, a, b) costing (0, 2, 3), budget 4: {a, a} = 1 + 1 = 2 beats
    # {b, 0} = 0 + 5 and {0, b} = 6 + 0; budget 3: {b, 0} = 5 beats {a, 0} = 6 and {0, a} = 7.
    distortion = np.array([[6.0, 1.0, 0.0], [5.0, 1.0, 0.0]])
    cost = np.array([[0, 2, 3], [0, 2, 3]])
    assert allocate_budget(distortion, cost, 4).tolist() == [1, 1]
    assert allocate_budget(distortion, cost, 3).tolist() == [2, 0]
    assert allocate_budget(distortion, cost, 1).tolist() == [0, 0]
    assert allocate_budget(distortion, cost, -5).tolist() == [0, 0]


def test_allocation_equals_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n_rows, n_options = 4, 4
        distortion = np.sort(rng.random((n_rows, n_options)), axis=1)[:, ::-1].copy()
        cost = np.concatenate([np.zeros((n_rows, 1), dtype=int), rng.integers(1, 9, (n_rows, n_options - 1))], axis=1)
        budget = int(rng.integers(0, 25))
        best = min(distortion[np.arange(n_rows), list(pick)].sum()
                   for pick in itertools.product(range(n_options), repeat=n_rows)
                   if cost[np.arange(n_rows), list(pick)].sum() <= budget)
        pick = allocate_budget(distortion, cost, budget)
        assert cost[np.arange(n_rows), pick].sum() <= budget
        assert distortion[np.arange(n_rows), pick].sum() == pytest.approx(best)


def test_a_sparsity_budget_over_rows_is_global_topk():
    # The Notes' claim: keeping k_c entries of row c (largest first) with distortion = the
    # dropped squares, under sum k_c <= K, keeps exactly the global top-K.
    delta = torch.randn(5, 12, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    squares = np.sort(delta.numpy() ** 2, axis=1)                       # ascending
    dropped = np.stack([squares[:, :12 - k].sum(axis=1) for k in range(13)], axis=1)  # [C, k kept]
    cost = np.tile(np.arange(13), (5, 1))
    for budget in (1, 7, 20, 45):
        kept = allocate_budget(dropped, cost, budget)
        assert kept.tolist() == topk_mask(delta, budget).sum(dim=1).tolist()


def test_allocation_rejects_a_row_without_a_free_option():
    with pytest.raises(ValueError, match="free option"):
        allocate_budget(np.ones((2, 2)), np.ones((2, 2), dtype=int), 10)


@pytest.mark.parametrize("bits, widths, frame", [
    (9.0, [2, 0], 7),     # 54 bits -> 7 bytes = 56: 16 header bits, 40 left; 2 bits cost 32 + 6 = 38
    (16.0, [3, 2], 12),   # 96 bits, 80 left: {3, 2} costs 41 + 38 = 79 for 24/900 + 0
    (2.0, [0, 0], 2),     # 16 bits: the header alone
    (0.5, [0, 0], 1),     # smaller than the header: nothing is sent
])
def test_widths_and_frame_by_hand(bits, widths, frame):
    rule = AdaptiveQuantization(bits=bits)
    assert rule.widths(DELTA) == widths
    assert rule.bytes_per_message(DELTA.numel()) == frame == math.ceil(bits * 6 / 8)


def test_the_encoding_fits_the_frame_and_uses_the_budget():
    delta = torch.randn(10, 65, generator=torch.Generator().manual_seed(0))
    for bits in (0.5, 1.0, 2.0, 3.2, 6.0):
        rule = AdaptiveQuantization(bits=bits)
        widths = rule.widths(delta)
        used = encoded_bits(widths, 65)
        assert used <= 8 * rule.bytes_per_message(650)
        # no row could have been widened within the frame, up to max_bits
        spare = 8 * rule.bytes_per_message(650) - used
        assert all(b == rule.max_bits or (65 if b else 32 + 130) > spare for b in widths)
    assert encoded_bits([0, 3, 2], 65) == 24 + (32 + 195) + (32 + 130)


def test_apply_quantizes_sent_rows_on_their_grid_and_zeroes_dropped_rows():
    delta = torch.randn(6, 20, generator=torch.Generator().manual_seed(4))
    rule = AdaptiveQuantization(bits=2.5, max_bits=4)
    widths = rule.widths(delta)
    assert 0 in widths and any(b > 0 for b in widths)
    sent = rule.apply(delta, torch.Generator().manual_seed(0))
    for c, b in enumerate(widths):
        if b == 0:
            assert torch.equal(sent[c], torch.zeros(20))
        else:
            step = delta[c].abs().max() / (2 ** (b - 1) - 1)
            codes = sent[c] / step
            assert torch.allclose(codes, codes.round(), atol=1e-4)
            assert torch.all((sent[c] - delta[c]).abs() < step + 1e-6)
            assert torch.all(sent[c] * delta[c] >= 0)        # sign kept


def test_sent_rows_are_unbiased():
    delta = torch.randn(4, 10, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    rule = AdaptiveQuantization(bits=3.0, max_bits=3)
    kept = torch.tensor([b > 0 for b in rule.widths(delta)])
    mean = torch.stack([rule.apply(delta, torch.Generator().manual_seed(s)) for s in range(3000)]).mean(dim=0)
    assert torch.allclose(mean[kept], delta[kept], atol=0.04)
    assert torch.equal(mean[~kept], torch.zeros_like(delta[~kept]))
    assert torch.equal(rule.replay(None)(delta)[kept], delta[kept])


def test_same_seed_same_output_and_straight_through_gradient():
    rule = AdaptiveQuantization(bits=9.0)
    first = rule.apply(DELTA, torch.Generator().manual_seed(7))
    assert torch.equal(first, rule.apply(DELTA, torch.Generator().manual_seed(7)))
    leaf = DELTA.clone().requires_grad_(True)
    out = rule.apply(leaf, torch.Generator().manual_seed(7))
    assert torch.equal(out.detach(), first)
    out.sum().backward()
    assert leaf.grad.tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]   # row 1 is dropped


def test_nonfinite_update_is_sent_unchanged():
    delta = DELTA.clone()
    delta[1, 1] = float("nan")
    out = AdaptiveQuantization().apply(delta, torch.Generator())
    assert torch.equal(out.isnan(), delta.isnan()) and torch.equal(out[0], delta[0])


@pytest.mark.parametrize("args", [{"bits": 0}, {"bits": 16.5}, {"max_bits": 1}, {"max_bits": 2.5}])
def test_invalid_parameters(args):
    with pytest.raises(ParameterError):
        create("privacy_defenses", "adaptive_quantize", **args)


def test_a_run_counts_the_frame_in_bytes_sent(tmp_path):
    from fedsim.runner import run
    from tests.conftest import tiny_scenario
    scenario = tiny_scenario(rounds=1, **{
        "privacy": {"curious": 1, "rounds": [1], "victims": 1, "attack": {"name": "dlg", "args": {"iterations": 1}},
                    "defense": {"name": "adaptive_quantize", "args": {"bits": 1.5}}}})
    summary, _ = run(scenario, out=tmp_path / "run", progress=False)
    dense, _ = run(tiny_scenario(rounds=1), out=tmp_path / "dense", progress=False)
    numel = dense["bytes_sent"] // (8 * 3) // 4          # 8 peers x 3 neighbours, float32
    assert summary["bytes_sent"] == 8 * 3 * math.ceil(1.5 * numel / 8)
