"""Privacy metrics (PSNR, SSIM, feature cosine) and sender-side privacy defenses."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from defenses.privacy.transforms import DPGaussian, NoPrivacy, StochasticQuantization, TopK
from fedsim.privacy_metrics import feature_cosine, psnr, ssim
from fedsim.registry import create, names


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ============================================================================ PSNR
def test_psnr_hand_computed():
    a = torch.zeros(1, 2, 2)
    b = torch.tensor([[[0.1, 0.0], [0.0, 0.0]]])
    # MSE = 0.1^2 / 4 = 0.0025 -> 10 log10(1 / 0.0025) = 10 log10(400) = 26.0206 dB
    assert float(psnr(a, b)) == pytest.approx(26.020599913, abs=1e-6)
    # data_range 2: 10 log10(4 / 0.0025) = 10 log10(1600) = 32.0412 dB
    assert float(psnr(a, b, data_range=2.0)) == pytest.approx(32.041199827, abs=1e-6)
    # [H, W] input is one image too
    assert float(psnr(a[0], b[0])) == pytest.approx(26.020599913, abs=1e-6)


def test_psnr_identical_images_is_inf_and_batches_keep_leading_dims():
    a = torch.rand(3, 1, 8, 8, generator=gen(0))
    b = a.clone()
    b[1] = 0.5   # image 1 differs
    out = psnr(a, b)
    assert out.shape == (3,)
    assert math.isinf(float(out[0])) and out[0] > 0 and math.isinf(float(out[2]))
    expected = 10 * math.log10(1.0 / float(((a[1].double() - 0.5) ** 2).mean()))
    assert float(out[1]) == pytest.approx(expected, rel=1e-9)


# ============================================================================ SSIM
def ssim_by_loops(x: np.ndarray, y: np.ndarray, data_range=1.0, window=11, sigma=1.5, k1=0.01, k2=0.03) -> float:
    """Reference SSIM written differently: an explicit 2-D weight matrix and a Python loop
    over every window position that fits, statistics as weighted sums (Wang et al. 2004)."""
    height, width = x.shape
    wh, ww = min(window, height), min(window, width)
    weights = np.array([[math.exp(-((i - (wh - 1) / 2) ** 2 + (j - (ww - 1) / 2) ** 2) / (2 * sigma ** 2))
                         for j in range(ww)] for i in range(wh)])
    weights /= weights.sum()
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    values = []
    for top in range(height - wh + 1):
        for left in range(width - ww + 1):
            px = x[top:top + wh, left:left + ww]
            py = y[top:top + wh, left:left + ww]
            mx, my = (weights * px).sum(), (weights * py).sum()
            vx = (weights * (px - mx) ** 2).sum()
            vy = (weights * (py - my) ** 2).sum()
            cxy = (weights * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def noisy_pair(shape, seed, noise=0.2):
    g = gen(seed)
    a = torch.rand(*shape, generator=g, dtype=torch.float64)
    b = (a + noise * torch.randn(*shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return a, b


@pytest.mark.parametrize("shape", [(8, 8), (11, 11), (16, 13), (28, 28), (6, 20)])
def test_ssim_matches_explicit_window_loops(shape):
    a, b = noisy_pair(shape, seed=sum(shape))
    assert float(ssim(a, b)) == pytest.approx(ssim_by_loops(a.numpy(), b.numpy()), abs=1e-12)
    assert float(ssim(a, b, data_range=2.0, window=7, sigma=1.0)) == pytest.approx(
        ssim_by_loops(a.numpy(), b.numpy(), data_range=2.0, window=7, sigma=1.0), abs=1e-12)


@pytest.mark.parametrize("shape", [(11, 11), (16, 13), (28, 28)])
def test_ssim_matches_scikit_image(shape):
    skimage_metrics = pytest.importorskip("skimage.metrics")
    a, b = noisy_pair(shape, seed=7 * sum(shape), noise=0.3)
    expected = skimage_metrics.structural_similarity(a.numpy(), b.numpy(), data_range=1.0, gaussian_weights=True,
                                                     sigma=1.5, use_sample_covariance=False)
    assert float(ssim(a, b)) == pytest.approx(expected, abs=1e-10)


def test_ssim_of_an_image_with_itself_is_one():
    for shape in [(1, 8, 8), (1, 28, 28)]:
        a = torch.rand(*shape, generator=gen(3))
        assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-12)


def test_ssim_constant_images():
    # Both constant: sigma_x = sigma_y = sigma_xy = 0, so the structure term is C2 / C2 = 1 and
    # SSIM = (2*0.2*0.5 + C1) / (0.2^2 + 0.5^2 + C1), C1 = 0.01^2 = 1e-4 -> 0.2001 / 0.2901
    a = torch.full((1, 8, 8), 0.2, dtype=torch.float64)
    b = torch.full((1, 8, 8), 0.5, dtype=torch.float64)
    assert float(ssim(a, b)) == pytest.approx(0.2001 / 0.2901, abs=1e-12)


def test_ssim_constant_shift_of_a_checkerboard_on_8x8():
    # 8x8 image, window shrunk to 8: one window, symmetric weights w_ij = g_i g_j with
    # g_i = g_{7-i}; i and 7-i have opposite parity, so each parity class of g sums to 1/2
    # and the weight on the odd squares of the checkerboard is 2 * 1/2 * 1/2 = 1/2.
    # a = 0.25 + 0.5 * [(i+j) odd] -> mu_a = 0.5; b = a + 0.1 -> mu_b = 0.6.
    # A shift leaves the variances and covariance equal, so the structure term is 1 and
    # SSIM = (2*0.5*0.6 + C1) / (0.5^2 + 0.6^2 + C1) = 0.6001 / 0.6101
    i = torch.arange(8)
    a = (0.25 + 0.5 * ((i[:, None] + i[None, :]) % 2)).double()
    assert float(ssim(a, a + 0.1)) == pytest.approx(0.6001 / 0.6101, abs=1e-12)
    assert float(ssim(a[None], a[None] + 0.1)) == pytest.approx(0.6001 / 0.6101, abs=1e-12)


def test_ssim_batches_and_channels():
    a, b = noisy_pair((2, 3, 1, 8, 8), seed=11)
    out = ssim(a, b)
    assert out.shape == (2, 3)
    assert float(out[1, 2]) == pytest.approx(ssim_by_loops(a[1, 2, 0].numpy(), b[1, 2, 0].numpy()), abs=1e-12)
    # channels are scored separately and averaged
    rgb_a, rgb_b = noisy_pair((3, 12, 12), seed=12)
    per_channel = [ssim_by_loops(rgb_a[c].numpy(), rgb_b[c].numpy()) for c in range(3)]
    assert float(ssim(rgb_a, rgb_b)) == pytest.approx(sum(per_channel) / 3, abs=1e-12)


def test_metrics_reject_bad_input():
    a = torch.rand(1, 8, 8)
    with pytest.raises(ValueError, match="same shape"):
        ssim(a, torch.rand(1, 8, 7))
    with pytest.raises(ValueError, match="data_range"):
        psnr(a, a, data_range=0)
    with pytest.raises(ValueError, match="window"):
        ssim(a, a, window=0)
    with pytest.raises(ValueError, match="sigma"):
        ssim(a, a, sigma=-1.0)
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        psnr(torch.rand(5), torch.rand(5))


def test_feature_cosine_hand_computed():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    assert float(feature_cosine(a, b)) == pytest.approx(0.5, abs=1e-12)   # (0 + 1) / 2
    assert float(feature_cosine(torch.tensor([3.0, 4.0]), torch.tensor([4.0, 3.0]))) == pytest.approx(24 / 25)
    assert float(feature_cosine(torch.tensor([[1.0, 2.0]]), torch.tensor([[-1.0, -2.0]]))) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same shape"):
        feature_cosine(a, b[:1])


# ============================================================================ defenses
def test_registered_names_and_describe():
    assert {"none", "dp_gaussian", "topk", "quantize"} <= set(names("privacy_defenses"))
    rule = create("privacy_defenses", "dp_gaussian", clip=2.0, noise_multiplier=0.5)
    assert isinstance(rule, DPGaussian)
    assert rule.describe() == {"name": "dp_gaussian", "clip": 2.0, "noise_multiplier": 0.5, "noise_std": 1.0,
                               "delta": 1e-5}
    assert DPGaussian().describe()["clip"] == 1.0 and DPGaussian().describe()["noise_multiplier"] == 1.0
    assert create("privacy_defenses", "topk").describe() == {"name": "topk", "fraction": 0.1, "k": None}
    assert create("privacy_defenses", "quantize").describe() == {"name": "quantize", "bits": 8, "levels": 127}


def test_none_is_the_identity():
    delta = torch.randn(3, 5, generator=gen(0))
    out = NoPrivacy().apply(delta, gen(1))
    assert torch.equal(out, delta) and out is not delta
    assert NoPrivacy().bytes_per_message(15) == 60


def test_dp_gaussian_clips_the_l2_norm():
    delta = torch.tensor([[3.0, 0.0], [0.0, 4.0]])                      # ||delta|| = 5
    out = DPGaussian(clip=1.0, noise_multiplier=0.0).apply(delta, gen(0))
    assert torch.allclose(out, delta / 5.0, atol=1e-7)                  # norm 1, same direction
    assert float(out.norm()) == pytest.approx(1.0, abs=1e-6)
    small = torch.tensor([[0.3, 0.0], [0.0, 0.4]])                       # norm 0.5 < clip: unchanged
    assert torch.equal(DPGaussian(clip=1.0, noise_multiplier=0.0).apply(small, gen(0)), small)
    zero = torch.zeros(2, 3)
    assert torch.equal(DPGaussian(noise_multiplier=0.0).apply(zero, gen(0)), zero)


def test_dp_gaussian_noise_std_and_mean():
    rule = DPGaussian(clip=2.0, noise_multiplier=0.5)                    # std = 0.5 * 2 = 1.0
    delta = torch.zeros(10, 1000)
    delta[0, 0] = 100.0                                                  # clipped to norm 2: entry 2.0
    clipped = torch.zeros(10, 1000)
    clipped[0, 0] = 2.0
    noise = torch.cat([(rule.apply(delta, gen(seed)) - clipped).flatten() for seed in range(5)])
    # 50,000 draws: the sample std's standard error is about 1 / sqrt(2 * 50000) = 0.0032
    assert float(noise.std()) == pytest.approx(1.0, abs=0.02)
    assert abs(float(noise.mean())) < 0.02                               # standard error 0.0045


def test_dp_gaussian_is_pure_given_the_generator():
    rule = DPGaussian(clip=1.0, noise_multiplier=1.0)
    delta = torch.randn(4, 6, generator=gen(0))
    assert torch.equal(rule.apply(delta, gen(5)), rule.apply(delta, gen(5)))
    assert not torch.equal(rule.apply(delta, gen(5)), rule.apply(delta, gen(6)))
    assert rule.bytes_per_message(24) == 96


def test_topk_keeps_exactly_the_k_largest_magnitudes():
    delta = torch.randn(4, 10, generator=gen(2))
    out = TopK(fraction=0.25).apply(delta, gen(0))                       # k = ceil(0.25 * 40) = 10
    # brute force: the 10 largest |delta| by sorting
    threshold = sorted(delta.abs().flatten().tolist(), reverse=True)[9]
    keep = delta.abs() >= threshold
    assert int(keep.sum()) == 10 and int((out != 0).sum()) == 10
    assert torch.equal(out[keep], delta[keep])
    assert torch.all(out[~keep] == 0)


def test_topk_k_argument_bytes_and_rounding():
    delta = torch.tensor([[0.5, -3.0, 1.0], [2.0, -0.1, 0.0]])
    out = TopK(k=2).apply(delta, gen(0))
    assert torch.equal(out, torch.tensor([[0.0, -3.0, 0.0], [2.0, 0.0, 0.0]]))
    assert TopK(k=2).bytes_per_message(6) == 16                          # 8 bytes per kept entry
    assert TopK(fraction=0.1).k_for(33) == 4                             # ceil(3.3)
    assert TopK(fraction=0.1).bytes_per_message(33) == 32
    assert TopK(fraction=0.01).k_for(5) == 1                             # at least one entry
    assert TopK(k=100).k_for(6) == 6                                     # at most all entries
    assert torch.equal(TopK(k=100).apply(delta, gen(0)), delta)


def test_quantize_error_below_one_step_on_the_grid_and_signs_kept():
    rule = StochasticQuantization(bits=3)                                # L = 2^2 - 1 = 3 levels
    delta = torch.randn(5, 7, generator=gen(4), dtype=torch.float64)
    scale = float(delta.abs().max())
    step = scale / 3
    assert rule.step(delta) == pytest.approx(step)
    for seed in range(20):
        out = rule.apply(delta, gen(seed))
        assert float((out - delta).abs().max()) < step + 1e-12
        codes = out / step
        assert torch.allclose(codes, codes.round(), atol=1e-9)          # on the grid s * l / L
        assert codes.abs().max() <= 3 + 1e-9
        assert torch.all((out == 0) | (torch.sign(out) == torch.sign(delta)))
        largest = delta.abs().argmax()
        assert float(out.flatten()[largest]) == pytest.approx(float(delta.flatten()[largest]))  # exact at s


def test_quantize_is_unbiased_on_average():
    rule = StochasticQuantization(bits=2)                                # coarsest: L = 1 level
    delta = torch.tensor([[0.9, -0.3, 0.05], [-1.0, 0.5, 0.0]], dtype=torch.float64)
    draws = 4000
    mean = sum(rule.apply(delta, gen(seed)) for seed in range(draws)) / draws
    # each entry is s * Bernoulli(|v|/s) * sign: std <= s/2 = 0.5, std of the mean <= 0.0079
    assert torch.allclose(mean, delta, atol=0.04)
    # one draw is not the mean: stochastic rounding really happens
    assert not torch.allclose(rule.apply(delta, gen(0)), delta)


def test_quantize_bytes_and_zero_update():
    assert StochasticQuantization(bits=8).bytes_per_message(100) == 104   # 100 bytes + 4 for the scale
    assert StochasticQuantization(bits=3).bytes_per_message(10) == 8      # ceil(30 / 8) = 4, + 4
    zero = torch.zeros(3, 4)
    assert torch.equal(StochasticQuantization().apply(zero, gen(0)), zero)


def test_transforms_pass_gradients_for_the_adaptive_attacker():
    delta = torch.randn(3, 4, generator=gen(1), dtype=torch.float64)
    leaf = delta.clone().requires_grad_(True)
    quantized = StochasticQuantization(bits=4).apply(leaf, gen(3))
    assert torch.equal(quantized.detach(), StochasticQuantization(bits=4).apply(delta, gen(3)))  # same value
    quantized.sum().backward()
    assert torch.equal(leaf.grad, torch.ones_like(delta))               # straight-through
    leaf.grad = None
    TopK(k=2).apply(leaf, gen(0)).sum().backward()
    assert int(leaf.grad.sum()) == 2                                     # gradient on the kept entries only
    leaf.grad = None
    DPGaussian(clip=0.1, noise_multiplier=1.0).apply(leaf, gen(0)).sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


def test_apply_rejects_integer_updates():
    with pytest.raises(ValueError, match="floating-point"):
        TopK().apply(torch.ones(2, 2, dtype=torch.long), gen(0))
