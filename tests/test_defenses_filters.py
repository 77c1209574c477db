"""Mozi, UBAR, BALANCE, IOS, FLTrust and FoolsGold on inputs small enough to check by hand."""
import io
import math

import pytest
import torch

from defenses import get_defense
from defenses.aggregation.balance import balance_threshold
from defenses.aggregation.foolsgold import HISTORY_KEY, foolsgold_weights
from fedsim.api import PeerContext

NAN, INF = float("nan"), float("inf")


def heads(*rows):
    """Float32 heads from nested lists."""
    return torch.tensor(rows, dtype=torch.float32)


def context(**kwargs):
    base = dict(peer_id=0, round=1, rng=torch.Generator().manual_seed(0), loss="linear")
    base.update(kwargs)
    return PeerContext(**base)


# ---------------------------------------------------------------- Mozi and UBAR
# C = 2 classes, D = 1 feature: a head is [[w0, b0], [w1, b1]].
# Own data: x = +1 has label 0, x = -1 has label 1.
X = torch.tensor([[1.0], [-1.0]])
Y = torch.tensor([0, 1])
OWN = heads([1.0, 0.0], [-1.0, 0.0])
# For a head [[w, 0], [-w, 0]] both samples have logit margin 2w, so the
# cross-entropy is log(1 + exp(-2w)) on each:
#   own  w = 1.0: loss 0.1269,  R1 w = 2.0: 0.0181 (passes),  R2 w = 0.6: 0.2633 (fails),
#   R3 w = -1.0: 2.1269 (fails), R4 w = 1.5: 0.0486 (passes).
# Distances to own: ||(w - 1, w - 1)|| = sqrt(2)|w - 1|:
#   R1 1.414, R2 0.566, R3 2.828, R4 0.707.
R1, R2, R3, R4 = (heads([w, 0.0], [-w, 0.0]) for w in (2.0, 0.6, -1.0, 1.5))
RECEIVED = torch.stack([R1, R2, R3, R4])


def filter_ctx(loss="linear"):
    return context(train_features=X, train_labels=Y, loss=loss)


# The filters as they were before the defaults followed the public Mozi code
# (tests/test_byzantine_fidelity.py checks the new defaults): every sample, the
# trained head as the loss reference, ceil(rho k), own head when nothing passes.
MOZI_PAPER = {"batch_size": None, "selection": "ceil", "if_none": "own", "loss_reference": "trained"}
UBAR_TRAINED = {"loss_reference": "trained"}


@pytest.mark.parametrize("name", ["mozi", "ubar"])
def test_two_stage_filter_by_hand(name):
    extra = {"batch_size": None, **UBAR_TRAINED} if name == "ubar" else MOZI_PAPER
    # rho = 0.5, k = 4: the 2 nearest are R2 (0.566), R4 (0.707); only R4 has a loss
    # <= own's, so merged = 0.5 own + 0.5 R4 = [[1.25, 0], [-1.25, 0]].
    rule = get_defense(name, rho=0.5, alpha=0.5, **extra)
    assert torch.allclose(rule.aggregate(OWN, RECEIVED, filter_ctx()), heads([1.25, 0.0], [-1.25, 0.0]))
    # rho = 0.75: ceil(3) nearest = R2, R4, R1; R4 and R1 pass, mean w = 1.75;
    # alpha = 0.2: 0.2 * 1 + 0.8 * 1.75 = 1.6.
    rule = get_defense(name, rho=0.75, alpha=0.2, **extra)
    assert torch.allclose(rule.aggregate(OWN, RECEIVED, filter_ctx()), heads([1.6, 0.0], [-1.6, 0.0]))


def test_mozi_rejects_the_nearest_head_when_its_loss_is_higher():
    # rho = 0.25 keeps only R2, the nearest; its loss is higher, so Mozi keeps own.
    rule = get_defense("mozi", rho=0.25, **MOZI_PAPER)
    assert torch.equal(rule.aggregate(OWN, RECEIVED, filter_ctx()), OWN)
    # Under the l2svm loss too: own's margins are exactly 1, loss 0; R2's loss is
    # 2 * (1 - 0.6)^2 = 0.32 > 0.
    assert torch.equal(rule.aggregate(OWN, RECEIVED, filter_ctx("l2svm")), OWN)


def test_ubar_keeps_the_best_candidate_when_none_passes():
    # Candidates R2 (loss 0.263) and the zero head (loss log 2 = 0.693): neither
    # beats own (0.127). UBAR keeps argmin = R2: 0.5 * 1 + 0.5 * 0.6 = 0.8.
    zero = torch.zeros(2, 2)
    received = torch.stack([R2, zero])
    ubar = get_defense("ubar", rho=1.0, batch_size=None, **UBAR_TRAINED)
    assert torch.allclose(ubar.aggregate(OWN, received, filter_ctx()), heads([0.8, 0.0], [-0.8, 0.0]))
    mozi = get_defense("mozi", rho=1.0, **MOZI_PAPER)
    assert torch.equal(mozi.aggregate(OWN, received, filter_ctx()), OWN)


def test_ubar_evaluates_a_minibatch_drawn_with_ctx_rng():
    # Own data: two samples at x = +1, labels 0 and 1. Own head = 0 (loss log 2 on
    # each). A = [[1, 0], [-1, 0]] has loss 0.127 on sample 0 and 2.127 on sample 1;
    # B = -A the reverse. A batch of one row lets exactly one of them pass:
    # row 0 -> 0.5 A, row 1 -> 0.5 B. The row is the first of
    # randperm(2) under the same seed, drawn here by hand.
    features = torch.tensor([[1.0], [1.0]])
    labels = torch.tensor([0, 1])
    own, head_a = torch.zeros(2, 2), heads([1.0, 0.0], [-1.0, 0.0])
    received = torch.stack([head_a, -head_a])
    rows_seen = set()
    for seed in range(8):
        ctx = context(train_features=features, train_labels=labels,
                      rng=torch.Generator().manual_seed(seed))
        row = int(torch.randperm(2, generator=torch.Generator().manual_seed(seed))[0])
        rows_seen.add(row)
        out = get_defense("ubar", rho=1.0, alpha=0.5, batch_size=1, **UBAR_TRAINED).aggregate(own, received, ctx)
        assert torch.allclose(out, 0.5 * received[row])
    assert rows_seen == {0, 1}
    # On the whole data set A and B tie with own (mean loss 1.127 > log 2 = 0.693):
    # neither passes; UBAR keeps the first best (A).
    full = get_defense("ubar", rho=1.0, batch_size=None, **UBAR_TRAINED).aggregate(own, received, context(
        train_features=features, train_labels=labels))
    assert torch.allclose(full, 0.5 * head_a)


# ---------------------------------------------------------------- BALANCE
# own = [[3, 0], [0, 4]], ||own|| = 5; gamma = 0.3 -> gamma ||own|| = 1.5.
B_OWN = heads([3.0, 0.0], [0.0, 4.0])
B_A = B_OWN + heads([0.9, 0.0], [0.0, 0.0])    # distance 0.9
B_B = B_OWN + heads([0.0, 0.0], [0.0, 0.95])   # distance 0.95
B_C = B_OWN + heads([2.0, 0.0], [0.0, 0.0])    # distance 2.0
B_RECEIVED = torch.stack([B_A, B_B, B_C])


def test_balance_by_hand():
    rule = get_defense("balance", gamma=0.3, kappa=1.0, alpha=0.5, total_rounds=10)
    # t = 5: threshold 1.5 exp(-0.5) = 0.9098 -> only A; merged = own + 0.5 * 0.9 e00.
    out = rule.aggregate(B_OWN, B_RECEIVED, context(round=5))
    assert torch.allclose(out, heads([3.45, 0.0], [0.0, 4.0]))
    # t = 0: threshold 1.5 -> A and B; mean offset (0.45, 0.475); half of it added.
    out = rule.aggregate(B_OWN, B_RECEIVED, context(round=0))
    assert torch.allclose(out, heads([3.225, 0.0], [0.0, 4.2375]))
    # t = T: threshold 1.5 / e = 0.552 -> nothing accepted -> own.
    assert torch.equal(rule.aggregate(B_OWN, B_RECEIVED, context(round=10)), B_OWN)
    # Without total_rounds: no decay, same as t = 0.
    no_decay = get_defense("balance", gamma=0.3, total_rounds=None).aggregate(B_OWN, B_RECEIVED, context(round=10))
    assert torch.allclose(no_decay, heads([3.225, 0.0], [0.0, 4.2375]))


def test_balance_threshold_shrinks_with_t():
    thresholds = [balance_threshold(B_OWN, 0.3, 1.0, t / 10) for t in range(11)]
    assert thresholds[0] == pytest.approx(1.5)
    assert thresholds[10] == pytest.approx(1.5 / math.e)
    assert all(a > b for a, b in zip(thresholds, thresholds[1:]))


# ---------------------------------------------------------------- IOS
# C = 1, D = 1: a head is one row [w, b], written here as a point (w, b).
def points(*pts):
    return torch.tensor([[list(p)] for p in pts], dtype=torch.float32)


def test_ios_by_hand():
    own = points((0, 0))[0]
    received = points((1, 0), (0, 2), (10, 0))
    # f = 1: mean of all four = (2.75, 0.5); distances 1.82, 3.13, 7.27 -> drop (10, 0);
    # result mean((0,0), (1,0), (0,2)) = (1/3, 2/3).
    assert torch.allclose(get_defense("ios", f=1).aggregate(own, received), points((1 / 3, 2 / 3))[0])
    # f = 2: then centre (1/3, 2/3); distances 0.943 (1,0), 1.374 (0,2) -> drop (0,2);
    # result mean((0,0), (1,0)) = (0.5, 0).
    assert torch.allclose(get_defense("ios", f=2).aggregate(own, received), points((0.5, 0))[0])
    # f = 0 is the plain mean (11/4, 2/4); f >= k leaves only own.
    assert torch.allclose(get_defense("ios", f=0).aggregate(own, received), points((2.75, 0.5))[0])
    assert torch.equal(get_defense("ios", f=5).aggregate(own, received), own)


def test_ios_never_removes_own_head():
    # own = (100, 0) is the outlier, but only neighbours can be cut: mean of four =
    # (25.25, 0.25); neighbour distances 25.251 (0,0), 24.251 (1,0), 25.261 (0,1)
    # -> drop (0,1); result mean((100,0), (0,0), (1,0)) = (101/3, 0).
    own = points((100, 0))[0]
    out = get_defense("ios", f=1).aggregate(own, points((0, 0), (1, 0), (0, 1)))
    assert torch.allclose(out, points((101 / 3, 0))[0])


# ---------------------------------------------------------------- FLTrust
def test_fltrust_by_hand():
    # previous = 0, own = (3, 4): g0 = (3, 4), ||g0|| = 5.
    #   a = (4, 3):   cos = 24/25 = 0.96, ||a|| = 5 -> a' = (4, 3)
    #   b = (0, 10):  cos = 40/50 = 0.8,  rescaled to (0, 5)
    #   c = (-3, -4): cos = -1 -> TS = 0
    # merged = (0.96 (4,3) + 0.8 (0,5)) / 1.76 = (3.84, 6.88) / 1.76 = (2.181818, 3.909091).
    # Shifting every head by previous = (1, 1) shifts the result by (1, 1).
    for shift in (0.0, 1.0):
        prev = points((shift, shift))[0]
        own = points((3 + shift, 4 + shift))[0]
        received = points((4 + shift, 3 + shift), (shift, 10 + shift), (-3 + shift, -4 + shift))
        out = get_defense("fltrust").aggregate(own, received, context(previous_head=prev))
        assert torch.allclose(out, points((3.84 / 1.76 + shift, 6.88 / 1.76 + shift))[0])


def test_fltrust_gives_zero_weight_to_an_update_opposite_to_g0():
    prev, own = points((0, 0))[0], points((3, 4))[0]
    ctx = context(previous_head=prev)
    honest = points((4, 3))
    opposite = points((-3000, -4000))
    rule = get_defense("fltrust")
    alone = rule.aggregate(own, honest, ctx)
    with_opposite = rule.aggregate(own, torch.cat([honest, opposite]), ctx)
    assert torch.allclose(alone, with_opposite)
    assert torch.allclose(alone, points((4, 3))[0])   # a' = (4, 3), the only weight
    # Only opposite updates: every TS is 0 -> the peer keeps its own head.
    assert torch.equal(rule.aggregate(own, opposite, ctx), own)


# ---------------------------------------------------------------- FoolsGold
def test_foolsgold_weights_by_hand():
    # Histories at 30, 90 and 180 degrees:
    #   cs_ab = cos 60 = 0.5, cs_ac = cos 150 = -0.866, cs_bc = cos 90 = 0;
    #   v = (0.5, 0.5, 0). Pardoning for c (v_a, v_b > v_c): cs_ca, cs_cb *= 0/0.5 -> 0.
    #   alpha = 1 - max_j cs_ij = (0.5, 0.5, 1); / max = (0.5, 0.5, 1).
    #   logit: ln(0.5/0.5) + 0.5 = 0.5; alpha = 1 -> +inf -> 1.
    a = [math.cos(math.radians(30)), math.sin(math.radians(30))]
    histories = torch.tensor([a, [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(foolsgold_weights(histories), torch.tensor([0.5, 0.5, 1.0], dtype=torch.float64))
    # kappa = 0.5 halves the logit: 0.25; kappa = 2 gives 1.0.
    assert torch.allclose(foolsgold_weights(histories, 0.5), torch.tensor([0.25, 0.25, 1.0], dtype=torch.float64))
    assert torch.allclose(foolsgold_weights(histories, 2.0), torch.ones(3, dtype=torch.float64))
    # Pardoning changes the result: 0, 60 and 135 degrees.
    #   cs_ab = cos 60 = 0.5, cs_ac = cos 135 = -0.70711, cs_bc = cos 75 = 0.258819;
    #   v = (0.5, 0.5, 0.258819). c is pardoned (v_a, v_b > v_c):
    #   cs_ca = -0.70711 * 0.258819 / 0.5 = -0.366025, cs_cb = 0.258819^2 / 0.5 = 0.133975.
    #   alpha = (1 - 0.5, 1 - 0.5, 1 - 0.133975) = (0.5, 0.5, 0.866025 = sqrt(3)/2);
    #   / max -> (1/sqrt(3), 1/sqrt(3), 1); logit: ln((1/sqrt 3) / (1 - 1/sqrt 3)) + 0.5
    #   = ln(1 / (sqrt(3) - 1)) + 0.5 = ln(1.366025) + 0.5 = 0.311905 + 0.5 = 0.811905.
    #   (Without pardoning alpha_c = 0.741181 and a, b would get weight 1.)
    angles = [0.0, 60.0, 135.0]
    histories = torch.tensor([[math.cos(math.radians(t)), math.sin(math.radians(t))] for t in angles],
                             dtype=torch.float64)
    expected = torch.tensor([0.811905, 0.811905, 1.0], dtype=torch.float64)
    assert torch.allclose(foolsgold_weights(histories), expected, atol=1e-6)


def test_foolsgold_aggregate_uses_accumulated_histories():
    # Round 2 updates are identical ((1, 1) from everyone: alone they would all get
    # weight 0), but the histories (round 1 + round 2) are the 30/90/180-degree
    # vectors above, whose weights are (0.5, 0.5, 1).
    a = (math.cos(math.radians(30)), math.sin(math.radians(30)))
    totals = [a, (0.0, 1.0), (-1.0, 0.0)]
    prev = points((0, 0))[0]
    state = {}
    senders = torch.tensor([10, 11, 12])
    rule = get_defense("foolsgold")
    round1 = points(*[(x - 1, y - 1) for x, y in totals])
    rule.aggregate(prev, round1, context(round=1, previous_head=prev, sender_ids=senders, state=state))
    round2 = points((1, 1), (1, 1), (1, 1))
    own = points((0, 0))[0]
    out = rule.aggregate(own, round2, context(round=2, previous_head=prev, sender_ids=senders, state=state))
    # (own + 0.5 (1,1) + 0.5 (1,1) + 1 (1,1)) / (1 + 2) = (2/3, 2/3).
    assert torch.allclose(out, points((2 / 3, 2 / 3))[0])
    assert torch.allclose(state[HISTORY_KEY][12], torch.tensor([-1.0, 0.0], dtype=torch.float64))
    # The state survives torch.save (the engine checkpoints it).
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer)[HISTORY_KEY][11], state[HISTORY_KEY][11])
    # A fresh peer that sees only round 2 gives the sybil-like senders weight 0.
    fresh = rule.aggregate(own, round2, context(previous_head=prev, sender_ids=senders, state={}))
    assert torch.equal(fresh, own)


def test_foolsgold_zeroes_identical_sybils():
    prev, own = points((0, 0))[0], points((0, 0))[0]
    received = points((1, 0), (0, 5), (0, 5))          # two sybils send the same update
    out = get_defense("foolsgold").aggregate(
        own, received, context(previous_head=prev, sender_ids=torch.tensor([1, 2, 3]), state={}))
    # cs_23 = 1 -> alpha_2 = alpha_3 = 0; sender 1: alpha = 1 -> weight 1.
    # (own + (1, 0)) / 2 = (0.5, 0).
    assert torch.allclose(out, points((0.5, 0))[0])


# ---------------------------------------------------------------- every rule
def all_rules_case():
    """(rule, own, finite received, ctx factory) for every rule."""
    prev = heads([0.9, 0.1], [-0.8, 0.0])

    def make_ctx(k):
        return context(round=2, train_features=X, train_labels=Y, previous_head=prev,
                       sender_ids=torch.arange(k), state={})

    return [(get_defense(name), OWN, RECEIVED, make_ctx) for name in
            ("mozi", "ubar", "balance", "ios", "fltrust", "foolsgold")]


@pytest.mark.parametrize("index", range(6))
def test_nonfinite_received_heads_are_dropped(index):
    rule, own, received, make_ctx = all_rules_case()[index]
    bad_nan = torch.full_like(own, NAN)
    bad_inf = own.clone()
    bad_inf[0, 0] = INF
    bad_neg = own.clone()
    bad_neg[1, 1] = -INF
    dirty = torch.stack([bad_nan, received[0], bad_inf, received[1], received[2], bad_neg, received[3]])
    out = rule.aggregate(own, dirty, make_ctx(dirty.shape[0]))
    assert torch.isfinite(out).all()
    assert torch.allclose(out, rule.aggregate(own, received, make_ctx(received.shape[0])))
    # Nothing finite, or nothing at all, received: own.
    only_bad = torch.stack([bad_nan, bad_inf])
    assert torch.equal(rule.aggregate(own, only_bad, make_ctx(2)), own)
    assert torch.equal(rule.aggregate(own, received[:0], make_ctx(0)), own)


@pytest.mark.parametrize("index", range(6))
def test_huge_finite_heads_give_finite_results(index):
    rule, own, received, make_ctx = all_rules_case()[index]
    huge = torch.full_like(own, 3e38)
    dirty = torch.cat([received, huge[None], -huge[None]])
    assert torch.isfinite(rule.aggregate(own, dirty, make_ctx(dirty.shape[0]))).all()


@pytest.mark.parametrize("name", ["mozi", "ubar", "fltrust", "foolsgold"])
def test_missing_context_raises_value_error(name):
    with pytest.raises(ValueError):
        get_defense(name).aggregate(OWN, RECEIVED, None)
