"""Bristle (Verbraeken et al. 2021): each step on numbers small enough to check by hand."""
import dataclasses
import math

import pytest
import torch
from sklearn.metrics import f1_score

from defenses import get_defense
from defenses.aggregation.bristle import (certainty, class_scores, distance_thirds, draw_counts,
                              f1_per_class, familiar_weights, foreign_weights, integrate, center_weights,
                              local_test_subset, prioritize, select_classes)
from fedsim.api import PeerContext

NAN, INF = float("nan"), float("inf")


def f64(rows):
    return torch.tensor(rows, dtype=torch.float64)


def heads(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# ------------------------------------------------------------------------ prioritizer

def test_draw_counts_are_the_rounded_binomial_terms():
    # alpha 0.4, beta 10: 0.6^2 * 10 = 3.6 -> 4, 2 * 0.4 * 0.6 * 10 = 4.8 -> 5, 0.16 * 10 = 1.6 -> 2.
    assert draw_counts(0.4, 10) == (4, 5, 2)
    # alpha 0.5: 2.5, 5, 2.5 -> ties go to even (Kotlin's round, like Python's): 2, 5, 2.
    assert draw_counts(0.5, 10) == (2, 5, 2)
    assert draw_counts(0.0, 10) == (10, 0, 0)


def test_distance_thirds_follow_the_reference_split():
    # near = first n//3, middle = [n//3, floor(2n/3)), far = last n//3.
    assert distance_thirds(12) == (range(0, 4), range(4, 8), range(8, 12))
    # n = 10: 3 / [3, 6) / [7, 10): position 6 is in no third.
    assert distance_thirds(10) == (range(0, 3), range(3, 6), range(7, 10))
    # n = 11: 3 / [3, 7) / [8, 11): position 7 is in no third.
    assert distance_thirds(11) == (range(0, 3), range(3, 7), range(8, 11))


def line_heads(distances):
    """Heads [[d, 0]] (C = 1, D = 1) at Euclidean distance d from the zero head."""
    return torch.tensor([[[d, 0.0]] for d in distances])


OWN_ZERO = torch.zeros(1, 2)


def test_prioritizer_twelve_heads_by_hand():
    # Index -> distance: 0:12 1:1 2:11 3:2 4:10 5:3 6:9 7:4 8:8 9:5 10:7 11:6.
    # Nearest first: near third = distances 1-4 = indices {1, 3, 5, 7};
    # middle = distances 5-8 = {9, 11, 10, 8}; far = distances 9-12 = {6, 4, 2, 0}.
    # Draws 4 / 5 / 2: all 4 near, all 4 middle (the third is short of 5; no make-up),
    # and 2 of the 4 far ones: 10 heads.
    received = line_heads([12, 1, 11, 2, 10, 3, 9, 4, 8, 5, 7, 6])
    far = {0, 2, 4, 6}
    far_seen = set()
    for seed in range(30):
        chosen = prioritize(OWN_ZERO, received, 0.4, 10, torch.Generator().manual_seed(seed))
        chosen = set(chosen.tolist())
        assert len(chosen) == 10
        assert {1, 3, 5, 7, 8, 9, 10, 11} <= chosen
        assert len(chosen & far) == 2
        far_seen |= chosen & far
    assert far_seen == far  # the far pair is drawn at random, not always the same


def test_prioritizer_counts_four_five_two_from_full_thirds():
    # 21 heads at distances 1..21 (index i at i + 1): thirds of 7 = indices 0-6, 7-13, 14-20.
    received = line_heads(range(1, 22))
    for seed in range(5):
        chosen = prioritize(OWN_ZERO, received, 0.4, 10, torch.Generator().manual_seed(seed))
        assert len(set(chosen.tolist())) == 11
        assert [(chosen < 7).sum().item(), ((chosen >= 7) & (chosen < 14)).sum().item(),
                (chosen >= 14).sum().item()] == [4, 5, 2]


def test_prioritizer_eleven_heads_skips_the_leftover_position():
    # 11 heads at distances 1..11: near 0-2 (3 < 4 asked: all), middle 3-6 (4 < 5: all),
    # far 8-10 (2 of 3); index 7 is in no third and is never drawn.
    received = line_heads(range(1, 12))
    for seed in range(10):
        chosen = set(prioritize(OWN_ZERO, received, 0.4, 10,
                                torch.Generator().manual_seed(seed)).tolist())
        assert len(chosen) == 9 and 7 not in chosen
        assert set(range(7)) <= chosen and len(chosen & {8, 9, 10}) == 2


def test_prioritizer_ten_heads_applies_from_beta_on():
    # k = 10 = beta: the prioritizer runs. Distances 1..10 (index i at i + 1): near 0-2
    # (3 < 4: all), middle 3-5 (3 < 5: all), far 7-9 (2 of 3); index 6 is in no third.
    received = line_heads(range(1, 11))
    for seed in range(10):
        chosen = set(prioritize(OWN_ZERO, received, 0.4, 10,
                                torch.Generator().manual_seed(seed)).tolist())
        assert len(chosen) == 8 and 6 not in chosen and set(range(6)) <= chosen


def test_prioritizer_keeps_all_below_beta_and_ranks_nonfinite_heads_farthest():
    received = line_heads(range(1, 10))                      # 9 < beta = 10
    assert prioritize(OWN_ZERO, received, 0.4, 10, None).tolist() == list(range(9))
    # 12 heads, index 0 is NaN, index 1 is inf: both infinitely far -> far third
    # (distances 3..12 of the rest put indices 2-5 near, 6-9 middle, 10, 11, 0, 1 far).
    received = line_heads([0, 0] + list(range(3, 13)))
    received[0, 0, 0], received[1, 0, 1] = NAN, INF
    for seed in range(10):
        chosen = set(prioritize(OWN_ZERO, received, 0.4, 10,
                                torch.Generator().manual_seed(seed)).tolist())
        assert set(range(2, 10)) <= chosen and len(chosen & {0, 1, 10, 11}) == 2


def test_prioritizer_needs_a_generator_when_it_draws():
    with pytest.raises(ValueError, match="rng"):
        prioritize(OWN_ZERO, line_heads(range(1, 13)), 0.4, 10, None)


# ------------------------------------------------------------------------------- F1

def test_f1_per_class_by_hand_and_against_sklearn():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    predictions = torch.tensor([[0, 1, 1, 1, 0, 2],
                                [0, 0, 0, 0, 0, 0]])
    classes = torch.tensor([0, 1, 2, 3])
    # Row 0: class 0 TP 1, predicted 2, labelled 2 -> 2/4 = 0.5; class 1 TP 2, predicted 3,
    # labelled 3 -> 4/6; class 2 TP 1, 1, 1 -> 1; class 3 never seen: 0/0 -> 0.
    # Row 1: class 0 TP 2, predicted 6, labelled 2 -> 4/8 = 0.5; the others 0.
    expected = f64([[0.5, 4 / 6, 1.0, 0.0], [0.5, 0.0, 0.0, 0.0]])
    got = f1_per_class(predictions, labels, classes)
    assert torch.allclose(got, expected)
    for row in range(2):
        reference = f1_score(labels.numpy(), predictions[row].numpy(), labels=[0, 1, 2, 3],
                             average=None, zero_division=0)
        assert torch.allclose(got[row], torch.from_numpy(reference).double())


# ------------------------------------------------------------- S_j, certainty, scores

def test_select_classes_takes_the_claimed_number_of_best_classes():
    f1 = f64([[0.2, 0.9, 0.5], [0.7, 0.7, 0.1], [0.1, 0.2, 0.3], [0.5, 0.5, 0.5],
              [0.3, 0.1, 0.2], [0.3, 0.1, 0.2], [0.3, 0.1, 0.2]])
    claimed = torch.tensor([1, 2, -1, 2, 3, 5, 0])
    expected = torch.tensor([[False, True, False],   # phi 1: the best class (0.9)
                             [True, True, False],    # phi 2: 0.7, 0.7
                             [True, True, True],     # -1 = not stated: all
                             [True, True, False],    # ties: lower class ids first
                             [True, True, True],     # phi = q: all
                             [True, True, True],     # phi > q: all
                             [False, False, False]])  # phi 0: none
    assert torch.equal(select_classes(f1, claimed), expected)
    assert select_classes(f1, None).all()


def test_certainty_is_mean_minus_population_std():
    f1 = f64([[1.0, 0.5, 0.0], [0.9, 0.9, 0.9], [1.0, 0.0, 0.3], [0.2, 1.0, 0.0], [0.4, 0.4, 0.4]])
    selected = torch.tensor([[True, True, False], [True, True, True], [True, True, False],
                             [True, True, True], [False, False, False]])
    # [1, .5]: mean .75, std .25 -> .5; [.9]*3 -> .9; [1, 0]: .5 - .5 -> 0;
    # [.2, 1, 0]: mean .4, std sqrt(.56 / 3) = .432 -> max(0, -.032) = 0; empty -> 0.
    assert torch.allclose(certainty(f1, selected), f64([0.5, 0.9, 0.0, 0.0, 0.0]))


def test_scores_for_a_better_and_a_worse_sender():
    f1_own = f64([0.5, 1.0])
    f1_senders = f64([[0.7, 1.0],    # better on class 0, equal on class 1
                      [0.3, 0.8]])   # worse on both
    # Better: d = 10 * 0.2 = 2 -> 2^(3 + 0.5) = 8 sqrt(2) = 11.3137; equal: d = 0 -> 0.
    # Worse: class 0 d = 2 -> -2^(4 + 0.5) = -16 sqrt(2) = -22.6274; class 1 d = 2 -> -2^5 = -32.
    expected = f64([[8 * math.sqrt(2), 0.0], [-16 * math.sqrt(2), -32.0]])
    assert torch.allclose(class_scores(f1_senders, f1_own, theta=10.0), expected)


def test_familiar_and_foreign_weights_by_hand():
    scores = f64([[8 * math.sqrt(2), 0.0], [-16 * math.sqrt(2), -32.0], [-150.0, 10.0]])
    selected = torch.tensor([[True, True], [True, True], [True, False]])
    cert = f64([1.0, 0.5, 1.0])
    # 10 sigmoid(0.113137) - 4 = 10 * 0.528254 - 4 = 1.282541; score 0 -> 10 * 0.5 - 4 = 1.
    # -22.6274 -> 10 sigmoid(-0.226274) - 4 = 0.436716, * cert 0.5 = 0.218358;
    # -32 -> 10 sigmoid(-0.32) - 4 = 0.206757, * 0.5 = 0.103379.
    # -150 is clipped to -100 -> 10 sigmoid(-1) - 4 = -1.31 -> 0; class 1 of row 2 is not in S.
    expected = f64([[1.282541, 1.0], [0.218358, 0.103379], [0.0, 0.0]])
    assert torch.allclose(familiar_weights(scores, selected, cert), expected, atol=1e-6)
    # Foreign, over the unclipped sum: row 0: 11.3137 -> 1.282541; row 1: -54.627 ->
    # 10 sigmoid(-0.54627) - 4 = -0.3327 -> 0; row 2: only class 0 counts: -150 ->
    # 10 sigmoid(-1.5) - 4 = 10 * 0.182426 - 4 < 0 -> 0.
    assert torch.allclose(foreign_weights(scores, selected, cert), f64([1.282541, 0.0, 0.0]),
                          atol=1e-6)
    # The -100 clip only shows with a smaller shift: weight_shift = 0 gives row 2, class 0
    # 10 sigmoid(max(-100, -150) / 100) = 10 sigmoid(-1) = 2.689414 (unclipped: 1.824255).
    shifted = familiar_weights(scores, selected, cert, weight_shift=0.0)
    assert shifted[2, 0].item() == pytest.approx(2.689414, abs=1e-6)


def test_a_sender_worse_on_every_familiar_class_gets_familiar_weight_zero():
    # Own F1 1.0 on both classes, sender 0.6 on both: d = 4 -> -4^5 = -1024 -> clipped to -100
    # -> weight 0 although the sender's certainty is 0.6 (mean 0.6, std 0).
    f1 = f64([[0.6, 0.6]])
    scores = class_scores(f1, f64([1.0, 1.0]))
    selected = select_classes(f1, None)
    cert = certainty(f1, selected)
    assert torch.allclose(cert, f64([0.6]))
    assert torch.equal(familiar_weights(scores, selected, cert), f64([[0.0, 0.0]]))
    assert torch.equal(foreign_weights(scores, selected, cert), f64([0.0]))


def test_integrate_rows_by_hand():
    # C = 3, D = 1; familiar classes 0, 1; foreign 2.
    own = f64([[1, 0], [2, 0], [3, 0]])
    received = f64([[[3, 1], [4, 0], [5, 1]], [[-1, 0], [0, 2], [9, 0]]])
    familiar_w = f64([[1.0, 0.0], [0.5, 2.0]])
    foreign_w = f64([1.0, 3.0])
    # Row 0: ([1,0] + 1 [3,1] + 0.5 [-1,0]) / 2.5 = [3.5, 1] / 2.5 = [1.4, 0.4].
    # Row 1: ([2,0] + 0 + 2 [0,2]) / 3 = [2/3, 4/3].
    # Row 2: ([3,0] + 1 [5,1] + 3 [9,0]) / 5 = [35, 1] / 5 = [7, 0.2].
    expected = f64([[1.4, 0.4], [2 / 3, 4 / 3], [7.0, 0.2]])
    got = integrate(own, received, torch.tensor([0, 1]), familiar_w, foreign_w)
    assert torch.allclose(got, expected)
    # A NaN head with weight 0 everywhere must not enter the sum (no 0 * NaN).
    with_nan = torch.cat([received, torch.full((1, 3, 2), NAN, dtype=torch.float64)])
    got = integrate(own, with_nan, torch.tensor([0, 1]), torch.cat([familiar_w, f64([[0, 0]])]),
                    torch.cat([foreign_w, f64([0])]))
    assert torch.allclose(got, expected)


# ------------------------------------------------------------------- the whole rule
# Local test set: class 0 at x = -1, -2; class 1 at x = 1, 2. Familiar {0, 1}, foreign 2.
TEST_X = torch.tensor([[-1.0], [-2.0], [1.0], [2.0]])
TEST_Y = torch.tensor([0, 0, 1, 1])
# Own logits (1 - x, x - 1.5, -10): predicts 0, 0, 0, 1 -> F1 class 0 = 2*2/(3+2) = 0.8,
# class 1 = 2*1/(1+2) = 2/3.
OWN = heads([-1, 1], [1, -1.5], [0, -10])
# A (-x, x, 2x - 10): predicts 0, 0, 1, 1 -> F1 1, 1.
A = heads([-1, 0], [1, 0], [2, -10])
# B (0, 1, 5x - 10): predicts 1 everywhere -> F1 class 0 = 0, class 1 = 2*2/(4+2) = 2/3.
B = heads([0, 0], [0, 1], [5, -10])


def context(claimed=None, classes=(0, 1), overlap=None):
    return PeerContext(peer_id=0, round=1, test_features=TEST_X, test_labels=TEST_Y,
                       classes=torch.tensor(classes), n_classes=3,
                       rng=torch.Generator().manual_seed(0),
                       claimed_num_classes=None if claimed is None else torch.tensor(claimed),
                       sender_class_overlap=None if overlap is None else torch.tensor(overlap))


def bristle(**args):
    """The rule without the final centring (D = 1 here: centring would zero every weight),
    so that these tests check the integration; centring is tested on its own below."""
    return get_defense("bristle", **{"center": False, **args})


def test_bristle_end_to_end_by_hand():
    # A: class 0 d = 10 * 0.2 = 2 -> 2^3.8 = 13.92881; class 1 d = 10/3 -> (10/3)^(11/3) = 82.64604.
    # cert_A = 1 - 0 = 1. w_A0 = 10 sigmoid(0.1392881) - 4 = 1.3476583,
    # w_A1 = 10 sigmoid(0.8264604) - 4 = 2.9560599, W_A = 10 sigmoid(0.9657485) - 4 = 3.2427128.
    # B: cert = mean(0, 2/3) - std = 1/3 - 1/3 = 0 -> every weight 0.
    # Row 0 = ([-1, 1] + 1.3476583 [-1, 0]) / 2.3476583 = [-1, 0.4259564];
    # Row 1 = ([1, -1.5] + 2.9560599 [1, 0]) / 3.9560599 = [1, -0.3791651];
    # Row 2 = ([0, -10] + 3.2427128 [2, -10]) / 4.2427128 = [1.5286035, -10].
    rule = bristle()
    merged = rule.aggregate(OWN, torch.stack([A, B]), context())
    expected = heads([-1, 0.4259564], [1, -0.3791651], [1.5286035, -10])
    assert torch.allclose(merged, expected, atol=1e-5)


def test_claimed_number_of_classes_limits_s_j():
    # A claims 1 class: its F1 ties (1, 1), so S_A = {0} (lower id). Familiar row 1 keeps
    # the own row; W_A uses score 13.92881 only: 10 sigmoid(0.1392881) - 4 = 1.3476583, so
    # row 2 = ([0, -10] + 1.3476583 [2, -10]) / 2.3476583 = [1.1480873, -10].
    rule = bristle(phi="claimed")
    merged = rule.aggregate(OWN, torch.stack([A]), context(claimed=[1]))
    assert torch.allclose(merged[0], heads([-1, 0.4259564])[0], atol=1e-5)
    assert torch.equal(merged[1], OWN[1])
    assert torch.allclose(merged[2], torch.tensor([1.1480873, -10.0]), atol=1e-5)
    # Claiming both classes (= q) or -1 (not stated) gives the unrestricted result.
    full = rule.aggregate(OWN, torch.stack([A]), context())
    for claim in (2, -1):
        assert torch.equal(rule.aggregate(OWN, torch.stack([A]), context(claimed=[claim])), full)


def test_a_received_copy_of_the_own_head_changes_nothing():
    # A copy has the own F1 (0.8, 2/3) on every class: d = 0, score 0, weight
    # 1 * cert = 1 * (0.7333 - 0.0667) = 2/3 per copy, yet the result must be the own head
    # bit for bit. Scaling a head by s > 0 scales its logits and keeps its predictions.
    for scale in (1.0, 1.37, 0.291, 3.3):
        own = OWN * scale
        copies = own.expand(4, -1, -1).clone()
        assert torch.equal(bristle().aggregate(own, copies, context()), own)
        # beta = 2: the prioritizer now draws (thirds of 4 copies at distance 0).
        assert torch.equal(bristle(beta=2).aggregate(own, copies, context()), own)


def test_a_much_worse_head_leaves_the_familiar_rows_alone():
    # Own = A (F1 1, 1). W (-x - 1, x - 1, 0.5) predicts 0, 2, 2, 1 -> F1 2/3 on both classes:
    # d = 10/3 -> -(10/3)^5 = -411.5 -> clipped -100 -> weight 0 though cert = 2/3;
    # foreign: sigmoid(-8.23) -> weight 0. The result is A exactly.
    worse = heads([-1, -1], [1, -1], [0, 0.5])
    merged = bristle().aggregate(A, torch.stack([worse]), context())
    assert torch.equal(merged, A)


def test_nonfinite_heads_get_weight_zero_and_the_result_stays_finite():
    rule = bristle()
    bad = torch.stack([torch.full((3, 2), NAN), torch.full((3, 2), INF), torch.full((3, 2), -INF)])
    clean = rule.aggregate(OWN, torch.stack([A, B]), context())
    merged = rule.aggregate(OWN, torch.cat([torch.stack([A]), bad, torch.stack([B])]), context())
    assert torch.isfinite(merged).all()
    assert torch.allclose(merged, clean, atol=1e-6)
    # With the prioritizer active (12 received, 3 of them non-finite).
    generator = torch.Generator().manual_seed(1)
    many = torch.cat([OWN + 0.1 * torch.randn(9, 3, 2, generator=generator), bad])
    assert torch.isfinite(rule.aggregate(OWN, many, context())).all()
    # Only non-finite heads: the own head.
    assert torch.equal(rule.aggregate(OWN, bad, context()), OWN)


def test_test_size_keeps_the_first_samples_of_each_class():
    features, labels = local_test_subset(TEST_X, TEST_Y, 1)
    assert features.flatten().tolist() == [-1.0, 1.0] and labels.tolist() == [0, 1]
    # With x = -1, 1 only: own predicts 0, 0 -> F1 (2/3, 0); A predicts 0, 1 -> (1, 1);
    # class 0 score (10/3)^(3 + 2/3) = 82.64604, class 1 d = 10 -> 10^3 = 1000, cert 1:
    # w_A0 = 10 sigmoid(0.8264604) - 4 = 2.9560599, w_A1 = 10 sigmoid(10) - 4 = 5.9995460.
    # Row 1 = ([1, -1.5] + 5.999546 [1, 0]) / 6.999546 = [1, -0.2142996].
    merged = bristle(test_size=1).aggregate(OWN, torch.stack([A]), context())
    assert torch.allclose(merged[1], torch.tensor([1.0, -0.2142996]), atol=1e-5)


def test_requires_a_local_test_set():
    with pytest.raises(ValueError, match="test set"):
        bristle().aggregate(OWN, torch.stack([A]), None)


# ------------------------------------------------- the reference's phi, centring, draw

def test_phi_overlap_limits_s_j_like_a_claim_of_as_many_classes():
    # Overlap 1 with A: S_A = {0} (F1 ties 1, 1 -> lower id), as in
    # test_claimed_number_of_classes_limits_s_j: row 1 stays, row 2 = [1.1480873, -10].
    merged = bristle().aggregate(OWN, torch.stack([A]), context(overlap=[1], claimed=[2]))
    assert torch.allclose(merged[0], heads([-1, 0.4259564])[0], atol=1e-5)
    assert torch.equal(merged[1], OWN[1])
    assert torch.allclose(merged[2], torch.tensor([1.1480873, -10.0]), atol=1e-5)
    # The stated count (2 = all familiar classes) is what phi="claimed" reads instead.
    full = bristle().aggregate(OWN, torch.stack([A]), context())
    assert torch.equal(bristle(phi="claimed").aggregate(OWN, torch.stack([A]),
                                                        context(overlap=[1], claimed=[2])), full)
    # A constant phi (the reference's SimulatedRunner uses 3) ignores both.
    assert torch.equal(bristle(phi=1).aggregate(OWN, torch.stack([A]), context(overlap=[2], claimed=[2])),
                       merged)


def test_phi_overlap_zero_gives_the_sender_no_weight():
    # Overlap 0: S_A is empty, certainty 0, every weight 0: the own head is kept.
    merged = bristle().aggregate(OWN, torch.stack([A, B]), context(overlap=[0, 0]))
    assert torch.equal(merged, OWN)
    # Overlap 0 for B only: B had weight 0 anyway (cert 0), so the result is A's alone.
    only_a = bristle().aggregate(OWN, torch.stack([A]), context())
    assert torch.allclose(bristle().aggregate(OWN, torch.stack([A, B]), context(overlap=[2, 0])), only_a)


def test_center_weights_by_hand():
    # Row 0 weights (1, 2, 3): mean 2 -> (-1, 0, 1); row 1 (0, 0, 6): mean 2 -> (-2, -2, 4).
    # The last column is the bias and stays.
    head = heads([1, 2, 3, 5], [0, 0, 6, -1])
    assert torch.equal(center_weights(head), heads([-1, 0, 1, 5], [-2, -2, 4, -1]))


def test_the_default_rule_centres_the_integrated_head():
    # D = 1: every weight equals its mean, so centring leaves 0 weights and the biases
    # of the integrated head (test_bristle_end_to_end_by_hand): 0.4259564, -0.3791651, -10.
    merged = get_defense("bristle").aggregate(OWN, torch.stack([A, B]), context())
    assert torch.allclose(merged, heads([0, 0.4259564], [0, -0.3791651], [0, -10]), atol=1e-5)


def test_uniform_draw_takes_beta_heads_whatever_their_distance():
    # 11 heads: the thirds never draw position 7 (test above); the uniform draw takes 10
    # of 11, so over a few seeds every index is left out once in a while, index 7 included.
    received = line_heads(range(1, 12))
    left_out = set()
    for seed in range(40):
        chosen = prioritize(OWN_ZERO, received, 0.4, 10, torch.Generator().manual_seed(seed), "uniform")
        assert len(set(chosen.tolist())) == 10
        left_out |= set(range(11)) - set(chosen.tolist())
        # The same seed with the distances reversed picks the same positions.
        reversed_heads = line_heads(range(11, 0, -1))
        assert torch.equal(prioritize(OWN_ZERO, reversed_heads, 0.4, 10,
                                      torch.Generator().manual_seed(seed), "uniform"), chosen)
    assert left_out == set(range(11))
    # Fewer than beta heads: all of them, in order.
    assert prioritize(OWN_ZERO, line_heads(range(1, 10)), 0.4, 10, None, "uniform").tolist() == list(range(9))


@pytest.mark.parametrize("args", [{}, {"phi": "claimed"}, {"center": False, "beta": 4}])
def test_group_form_equals_each_peer_alone_bit_for_bit(args):
    """``aggregate_group`` evaluates each peer on its own test set and scores, integrates
    and centres groups of peers of the same shapes together: every peer's head equals
    ``aggregate`` on that peer alone, bit for bit, with peers of different numbers of
    messages (padding), familiar classes and test sets, a non-finite head, a peer with
    no message, and draws of the prioritizer (beta 4 below 6 messages)."""
    g = torch.Generator().manual_seed(11)
    n, k, C, D = 7, 6, 5, 3
    own = torch.randn(n, C, D + 1, generator=g)
    received = own.unsqueeze(1) + 0.3 * torch.randn(n, k, C, D + 1, generator=g)
    received[2, 1, 0, 0] = float("nan")
    mask = torch.ones(n, k, dtype=torch.bool)
    mask[1, 4:] = False                       # 4 messages
    mask[3, 5] = False                        # 5 messages
    mask[5] = False                           # nothing arrived
    ctxs = []
    for i in range(n):
        classes = torch.tensor([0, 1, 2] if i % 2 else [1, 3])
        m = 2 + i % 3                          # test samples per class
        labels = classes.repeat_interleave(m)
        features = torch.randn(len(labels), D, generator=g)
        ctxs.append(PeerContext(peer_id=i, round=3, test_features=features, test_labels=labels,
                                classes=classes, n_classes=C, rng=torch.Generator().manual_seed(100 + i),
                                claimed_num_classes=torch.randint(0, 4, (int(mask[i].sum()),), generator=g)))
    rule = get_defense("bristle", **args)
    together = rule.aggregate_group(own, received, mask, ctxs)
    for i in range(n):
        ctxs[i] = dataclasses.replace(ctxs[i], rng=torch.Generator().manual_seed(100 + i))  # a fresh draw
        alone = rule.aggregate(own[i], received[i][mask[i]], ctxs[i])
        assert torch.equal(together[i], alone), i
    assert torch.equal(together[5], own[5])

