"""Median, trimmed mean, Krum, Multi-Krum, Bulyan, geometric median, centered clipping,
ClippedGossip and BRIDGE on inputs small enough to check by hand."""
import math

import numpy as np
import pytest
import torch
from scipy import optimize, stats

from defenses import get_defense

NAN, INF = float("nan"), float("inf")
ROBUST = ["median", "trimmed_mean", "krum", "multi_krum", "bulyan", "geometric_median",
          "centered_clipping", "clipped_gossip", "bridge"]


def heads(*rows):
    """1 x 2 heads ``[[w, b]]`` from pairs: ``heads((0, 1), (2, 3))`` -> ``[2, 1, 2]``."""
    return torch.tensor([[list(r)] for r in rows], dtype=torch.float32)


def head(*values):
    return torch.tensor([list(values)], dtype=torch.float32)


def scalars(*values):
    """1 x 1 heads (one coordinate): ``[k, 1, 1]``."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1)


def close(actual, expected, atol=1e-5):
    expected = torch.as_tensor(expected, dtype=actual.dtype).view_as(actual)
    return torch.allclose(actual, expected, atol=atol, rtol=1e-5)


# Own head (0, 0) and four received; the last is an outlier.
OWN = head(0.0, 0.0)
RECEIVED = heads((1, 2), (2, 0), (-1, 4), (100, -100))


# ------------------------------------------------------------------- median


def test_median_by_hand_odd_and_even():
    # w: {0, 1, 2, -1, 100} -> sorted -1 0 1 2 100 -> 1;  b: {0, 2, 0, 4, -100} -> 0.
    assert close(get_defense("median").aggregate(OWN, RECEIVED), [1.0, 0.0])
    # Without the outlier (4 candidates): w: -1 0 1 2 -> (0 + 1) / 2 = 0.5;
    # b: 0 0 2 4 -> (0 + 2) / 2 = 1  (even count: mean of the two middle values).
    assert close(get_defense("median").aggregate(OWN, RECEIVED[:3]), [0.5, 1.0])


def test_median_ignores_one_huge_outlier():
    received = heads((1, 1), (2, 2), (1e30, -1e30))
    # w: {0, 1, 2, 1e30} -> (1 + 2) / 2 = 1.5 (likewise b: {0, 1, 2, -1e30} -> 0.5).
    assert close(get_defense("median").aggregate(OWN, received), [1.5, 0.5])


# -------------------------------------------------------------- trimmed mean


def test_trimmed_mean_by_hand():
    # f = 1 over 5 candidates: w drops -1 and 100 -> (0 + 1 + 2) / 3 = 1;
    # b drops -100 and 4 -> (0 + 0 + 2) / 3 = 2/3.
    expected = [1.0, 2.0 / 3.0]
    assert close(get_defense("trimmed_mean", f=1).aggregate(OWN, RECEIVED), expected)
    # beta = 0.2: floor(0.2 * 5) = 1, the same trim.
    assert close(get_defense("trimmed_mean", beta=0.2).aggregate(OWN, RECEIVED), expected)
    # beta = 0.1: floor(0.5) = 0, the plain mean: w (0+1+2-1+100)/5 = 20.4, b (0+2+0+4-100)/5 = -18.8.
    assert close(get_defense("trimmed_mean", beta=0.1).aggregate(OWN, RECEIVED), [20.4, -18.8])


def test_trimmed_mean_falls_back_to_the_median_when_f_is_too_large():
    # f = 3 on 5 candidates leaves nothing; lowered to (5 - 1) // 2 = 2: the median (1, 0).
    assert close(get_defense("trimmed_mean", f=3).aggregate(OWN, RECEIVED), [1.0, 0.0])
    # 4 candidates, f = 5 -> 1: w -1 0 1 2 -> 0.5, b 0 0 2 4 -> 1.
    assert close(get_defense("trimmed_mean", f=5).aggregate(OWN, RECEIVED[:3]), [0.5, 1.0])


def test_trimmed_mean_matches_scipy():
    gen = torch.Generator().manual_seed(3)
    own, received = torch.randn(3, 4, generator=gen), torch.randn(8, 3, 4, generator=gen)
    rows = torch.cat([own[None], received]).double().numpy()            # 9 candidates
    expected = stats.trim_mean(rows, 0.25, axis=0)                       # cuts int(2.25) = 2
    merged = get_defense("trimmed_mean", beta=0.25).aggregate(own, received)
    assert np.allclose(merged.numpy(), expected, atol=1e-6)
    merged = get_defense("trimmed_mean", f=2).aggregate(own, received)
    assert np.allclose(merged.numpy(), expected, atol=1e-6)


# ---------------------------------------------------------------------- Krum

# Own A = (2, 2); received B = (0, 0), C = (1, 0), D = (0, 1), E = (9, 9).
# Squared distances: AB 8, AC 5, AD 5, AE 98, BC 1, BD 1, BE 162, CD 2, CE 145, DE 145.
# n = 5, f = 1: each score sums the n - f - 2 = 2 nearest:
#   A 5+5 = 10,  B 1+1 = 2,  C 1+2 = 3,  D 1+2 = 3,  E 98+145 = 243.
KRUM_OWN = head(2.0, 2.0)
KRUM_RECEIVED = heads((0, 0), (1, 0), (0, 1), (9, 9))


def test_krum_by_hand():
    assert close(get_defense("krum", f=1).aggregate(KRUM_OWN, KRUM_RECEIVED), [0.0, 0.0])
    # f = 2 needs n >= 7; lowered to (5 - 3) // 2 = 1: the same choice.
    assert close(get_defense("krum", f=2).aggregate(KRUM_OWN, KRUM_RECEIVED), [0.0, 0.0])


def test_multi_krum_by_hand():
    # Default m = n - f = 4: B, C, D, A -> ((0+1+0+2)/4, (0+0+1+2)/4) = (0.75, 0.75).
    assert close(get_defense("multi_krum", f=1).aggregate(KRUM_OWN, KRUM_RECEIVED), [0.75, 0.75])
    # m = 3: B, C, D -> (1/3, 1/3);  m = 1 is Krum.
    assert close(get_defense("multi_krum", f=1, m=3).aggregate(KRUM_OWN, KRUM_RECEIVED), [1 / 3, 1 / 3])
    assert close(get_defense("multi_krum", f=1, m=1).aggregate(KRUM_OWN, KRUM_RECEIVED), [0.0, 0.0])
    # m larger than n is lowered to n = 5: the plain mean (12/5, 12/5).
    assert close(get_defense("multi_krum", f=1, m=9).aggregate(KRUM_OWN, KRUM_RECEIVED), [2.4, 2.4])


def test_krum_with_too_few_candidates_keeps_the_own_head():
    # n = 2: both scores are the one distance, the tie goes to the own head.
    assert close(get_defense("krum", f=1).aggregate(OWN, heads((5, 5))), [0.0, 0.0])
    assert close(get_defense("krum", f=3).aggregate(OWN, heads()[:0]), [0.0, 0.0])


# -------------------------------------------------------------------- Bulyan


def test_bulyan_by_hand():
    # One coordinate; own 0, received 1 3 4 6 40 -60; n = 7 = 4f + 3 for f = 1:
    # theta = n - 2f = 5 Krum picks, beta = theta - 2f = 3.
    # Pick 1 (n=7, 4 nearest): 0:1+9+16+36=62, 1:1+4+9+25=39, 3:1+4+9+9=23, 4:1+4+9+16=30,
    #        6:4+9+25+36=74, 40 and -60 huge -> 3.
    # Pick 2 (0 1 4 6 40 -60, n=6, 3 nearest): 0:1+16+36=53, 1:1+9+25=35, 4:4+9+16=29,
    #        6:4+25+36=65 -> 4.
    # Pick 3 (0 1 6 40 -60, n=5, 2 nearest): 0:1+36=37, 1:1+25=26, 6:25+36=61 -> 1.
    # Pick 4 (0 6 40 -60, n=4, f lowered to 0, 2 nearest): 0:36+1600=1636,
    #        6:36+1156=1192, 40:1156+1600=2756, -60:3600+4356=7956 -> 6.
    # Pick 5 (0 40 -60, n=3, 1 nearest): 0:1600, 40:1600, -60:3600 -> tie, own first -> 0.
    # S = {3, 4, 1, 6, 0}, median 3, |S - 3| = 0 1 2 3 3 -> nearest three 3, 4, 1 -> 8/3.
    rule = get_defense("bulyan", f=1)
    assert close(rule.aggregate(scalars(0.0)[0], scalars(1, 3, 4, 6, 40, -60)), [8.0 / 3.0])


def test_bulyan_with_too_few_candidates_stays_near_the_honest_heads():
    # n = 4 < 4f + 3: theta = 2, beta = 1; the outlier is never a Krum pick.
    merged = get_defense("bulyan", f=1).aggregate(OWN, heads((1, 1), (2, 2), (1e30, 1e30)))
    assert torch.all(merged >= 0) and torch.all(merged <= 2)


# ---------------------------------------------------------- geometric median


def test_geometric_median_of_an_equilateral_triangle_is_its_centre():
    # The Fermat point of a triangle with all angles < 120 degrees; for an equilateral
    # one it is the centroid (1, sqrt(3)/3). The start (coordinate median) is (1, 0).
    rule = get_defense("geometric_median", nu=1e-9, max_iter=500, tol=0.0)
    merged = rule.aggregate(head(0.0, 0.0), heads((2, 0), (1, math.sqrt(3))))
    assert close(merged, [1.0, math.sqrt(3) / 3], atol=1e-4)


def test_geometric_median_matches_numerical_minimisation():
    gen = torch.Generator().manual_seed(5)
    own, received = torch.randn(1, 3, generator=gen), torch.randn(6, 1, 3, generator=gen)
    points = torch.cat([own[None], received]).flatten(1).double().numpy()
    solution = optimize.minimize(lambda v: np.linalg.norm(points - v, axis=1).sum(),
                                 points.mean(axis=0), method="Nelder-Mead",
                                 options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000}).x
    merged = get_defense("geometric_median", nu=1e-9, max_iter=1000, tol=0.0).aggregate(own, received)
    assert np.allclose(merged.flatten().numpy(), solution, atol=1e-4)


def test_geometric_median_ignores_one_huge_outlier():
    # On a line the geometric median is the median: {0, 1, 2, 10, 1e30} -> 2.
    merged = get_defense("geometric_median").aggregate(scalars(0.0)[0], scalars(1, 2, 10, 1e30))
    assert close(merged, [2.0], atol=1e-4)


# ---------------------------------------------------------------- clipping

# Own (0, 0); received (3, 4), (0, 1), (-6, 8) at distances 5, 1, 10.
CLIP_RECEIVED = heads((3, 4), (0, 1), (-6, 8))


def test_centered_clipping_one_iteration_by_hand():
    # tau = 2, v0 = own: CLIP(own - v0) = 0, (3,4) -> (1.2, 1.6), (0,1) stays, (-6,8) -> (-1.2, 1.6);
    # v1 = (0 + 1.2 + 0 - 1.2, 0 + 1.6 + 1 + 1.6) / 4 = (0, 1.05).
    rule = get_defense("centered_clipping", tau=2.0, iterations=1)
    assert close(rule.aggregate(OWN, CLIP_RECEIVED), [0.0, 1.05])


def test_centered_clipping_iterations_match_a_plain_python_loop():
    points = [(0.0, 0.0), (3.0, 4.0), (0.0, 1.0), (-6.0, 8.0)]
    v = (0.0, 0.0)
    for _ in range(3):
        steps = []
        for x, y in points:
            dx, dy = x - v[0], y - v[1]
            scale = min(1.0, 2.0 / math.hypot(dx, dy)) if (dx or dy) else 1.0
            steps.append((dx * scale, dy * scale))
        v = (v[0] + sum(s[0] for s in steps) / 4, v[1] + sum(s[1] for s in steps) / 4)
    rule = get_defense("centered_clipping", tau=2.0, iterations=3)
    assert close(rule.aggregate(OWN, CLIP_RECEIVED), list(v))


def test_clipped_gossip_fixed_radius_by_hand():
    # Weights 1/(k+1) = 1/4; with tau = 2 the clipped differences are those above:
    # (0, 0) + ((1.2, 1.6) + (0, 1) + (-1.2, 1.6)) / 4 = (0, 1.05).
    assert close(get_defense("clipped_gossip", tau=2.0).aggregate(OWN, CLIP_RECEIVED), [0.0, 1.05])


def test_clipped_gossip_adaptive_radius_by_hand():
    # f = 1: tau = 2nd largest distance = 5; only (-6, 8) is clipped, to (-3, 4):
    # ((3,4) + (0,1) + (-3,4)) / 4 = (0, 2.25).
    assert close(get_defense("clipped_gossip", f=1).aggregate(OWN, CLIP_RECEIVED), [0.0, 2.25])
    # f = 2: tau = 1: (0.6, 0.8) + (0, 1) + (-0.6, 0.8) = (0, 2.6) -> (0, 0.65).
    assert close(get_defense("clipped_gossip", f=2).aggregate(OWN, CLIP_RECEIVED), [0.0, 0.65])
    # f >= k: the smallest distance, as f = 2.
    assert close(get_defense("clipped_gossip", f=7).aggregate(OWN, CLIP_RECEIVED), [0.0, 0.65])
    # f = 0: tau = 10 clips nothing: the plain mean (-3/4, 13/4).
    assert close(get_defense("clipped_gossip", f=0).aggregate(OWN, CLIP_RECEIVED), [-0.75, 3.25])


def test_clipping_bounds_the_pull_of_a_huge_outlier():
    received = heads((1, 0), (3e38, -3e38))
    merged = get_defense("clipped_gossip", tau=1.0).aggregate(OWN, received)
    # Each clipped difference has norm <= 1, so ||merged - own|| <= 2/3.
    assert torch.isfinite(merged).all() and merged.norm() <= 2 / 3 + 1e-6
    merged = get_defense("centered_clipping", tau=1.0, iterations=5).aggregate(OWN, received)
    assert torch.isfinite(merged).all() and merged.norm() <= 5.0


# -------------------------------------------------------------------- BRIDGE


def test_bridge_by_hand_keeps_the_own_value_untrimmed():
    own = head(200.0, 0.0)
    # Neighbours' w: 1 2 -1 100 -> drop -1 and 100 -> (200 + 1 + 2) / (4 - 2 + 1) = 203/3;
    # b: 2 0 4 -100 -> drop -100 and 4 -> (0 + 2 + 0) / 3 = 2/3.
    assert close(get_defense("bridge", b=1).aggregate(own, RECEIVED), [203.0 / 3.0, 2.0 / 3.0])
    # The trimmed mean puts own among the candidates and trims it: w -1 1 2 100 200 -> 103/3.
    assert close(get_defense("trimmed_mean", f=1).aggregate(own, RECEIVED), [103.0 / 3.0, 2.0 / 3.0])


def test_bridge_lowers_b_when_too_few_neighbours():
    # k = 3, b = 2 -> 1: w 1 2 -1 keeps 1 -> (0 + 1) / 2; b 2 0 4 keeps 2 -> (0 + 2) / 2.
    assert close(get_defense("bridge", b=2).aggregate(OWN, RECEIVED[:3]), [0.5, 1.0])
    # k = 2, b = 1: both trimmed, own only.
    assert close(get_defense("bridge", b=1).aggregate(OWN, RECEIVED[:2]), [0.0, 0.0])


# ------------------------------------------------------- every rule, properties


@pytest.mark.parametrize("name", ROBUST)
def test_finite_with_nan_inf_and_huge_received(name):
    gen = torch.Generator().manual_seed(1)
    own, received = torch.randn(3, 4, generator=gen), torch.randn(7, 3, 4, generator=gen)
    received[1, 0, 0] = NAN
    received[3, 2, 1] = INF
    received[4, 1, 3] = -INF
    received[5] = 3e38
    merged = get_defense(name).aggregate(own, received, None)
    assert merged.shape == own.shape and merged.dtype == own.dtype
    assert torch.isfinite(merged).all()


@pytest.mark.parametrize("name", ROBUST)
def test_only_non_finite_or_nothing_received_keeps_own(name):
    own = torch.tensor([[1.0, -2.0, 0.5]])
    junk = torch.tensor([[[NAN, 0.0, 0.0]], [[0.0, INF, 0.0]]])
    assert torch.equal(get_defense(name).aggregate(own, junk), own)
    assert torch.equal(get_defense(name).aggregate(own, junk[:0]), own)


@pytest.mark.parametrize("name", ["median", "trimmed_mean", "krum", "multi_krum", "bulyan",
                                  "geometric_median"])
def test_equal_candidates_give_that_head(name):
    own = torch.tensor([[0.3, -0.7]])
    merged = get_defense(name).aggregate(own, own.repeat(4, 1, 1))
    assert torch.allclose(merged, own)


@pytest.mark.parametrize("name,args", [
    ("median", {}), ("trimmed_mean", {"f": 1}), ("trimmed_mean", {"beta": 0.3}), ("bridge", {"b": 1}),
    ("centered_clipping", {"tau": 0.5, "iterations": 3}), ("clipped_gossip", {"tau": 0.5}),
    ("clipped_gossip", {"f": 1}), ("clipped_gossip", {"f": 0}), ("krum", {"f": 1}),
    ("geometric_median", {}),
])
def test_group_form_matches_per_peer_form(name, args):
    gen = torch.Generator().manual_seed(2)
    n, k = 6, 5
    own, received = torch.randn(n, 2, 3, generator=gen), torch.randn(n, k, 2, 3, generator=gen)
    received[0, 1, 0, 0] = NAN
    received[2, 4, 1, 2] = INF
    mask = torch.ones(n, k, dtype=torch.bool)
    mask[1, 3:] = False           # 3 real messages
    mask[3] = False               # none
    mask[4, 0] = False            # a hole in the middle of the padding
    received[4, 0] = NAN          # padding content must not matter
    rule = get_defense(name, **args)
    batched = rule.aggregate_group(own, received, mask)
    for i in range(n):
        assert torch.allclose(batched[i], rule.aggregate(own[i], received[i][mask[i]]), atol=1e-6), i

