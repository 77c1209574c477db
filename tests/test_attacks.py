"""Byzantine attacks and attacker placement, checked against numbers worked out by hand
or by a second method (closed-form roots, an independent Krum)."""
import math
from statistics import NormalDist

import networkx as nx
import pytest
import torch

from attacks import get_attack, list_attacks
from attacks.byzantine.alie import alie_head, alie_z
from attacks.byzantine.backdoor import default_patch_size
from attacks.byzantine.bristle_evasion import estimate_familiar
from attacks.byzantine.fang import fang_krum_head, fang_krum_lambda_bound
from attacks.byzantine.min_max import min_max_update, min_sum_update, perturbation
from fedsim.adversary import choose_byzantine
from fedsim.api import AttackerView


def heads(*rows):
    """Heads from nested lists: heads([[1, 2]], [[3, 4]]) -> [2, 1, 2]."""
    return torch.tensor(rows, dtype=torch.float32)


def make_view(observed, observed_ids, own, byzantine_ids=(10,), previous=None, receivers=None,
              n_peers=20, graph=None, seed=0):
    byzantine_ids = list(byzantine_ids)
    if receivers is None:
        receivers = {s: list(observed_ids) for s in byzantine_ids}
    return AttackerView(
        round=1, byzantine_ids=byzantine_ids, receivers=receivers, observed=observed,
        observed_ids=list(observed_ids), own_heads=own, rng=torch.Generator().manual_seed(seed),
        n_peers=n_peers, n_classes=own.shape[1], previous_heads=previous, graph=graph)


def independent_krum(points, f):
    """Krum written out with loops (Blanchard et al. 2017), neighbour count clamped to >= 1."""
    n = len(points)
    k = max(n - f - 2, 1)
    scores = []
    for i in range(n):
        d = sorted(float(((points[i] - points[j]) ** 2).sum()) for j in range(n) if j != i)
        scores.append(sum(d[:k]))
    return min(range(n), key=lambda i: (scores[i], i))


# ---------------------------------------------------------------- every attack


def test_every_attack_crafts_one_finite_head_per_pair():
    g = torch.Generator().manual_seed(1)
    observed = torch.randn(6, 3, 5, generator=g)
    own = torch.randn(2, 3, 5, generator=g)
    previous = own - 0.1 * torch.randn(2, 3, 5, generator=g)
    receivers = {10: [0, 1, 2], 11: [2, 3]}
    view = make_view(observed, [0, 1, 2, 3, 4, 5], own, byzantine_ids=(10, 11), previous=previous,
                     receivers=receivers, graph=nx.complete_graph(12))
    expected = {(10, 0), (10, 1), (10, 2), (11, 2), (11, 3)}
    for name in list_attacks():
        sent = get_attack(name).craft(view)
        assert set(sent) == expected, name
        for head in sent.values():
            assert head.shape == (3, 5) and torch.isfinite(head).all(), name


# ---------------------------------------------------------------- sign_flip, ipm


def test_sign_flip_negates_the_own_update():
    # reference (previous) [1, 1], own [3, 4]: update [2, 3]; scale 2 -> [1 - 4, 1 - 6] = [-3, -5]
    view = make_view(heads([[0.0, 0.0]]), [0], heads([[3.0, 4.0]]), previous=heads([[1.0, 1.0]]),
                     receivers={10: [0, 5]})
    sent = get_attack("sign_flip", scale=2.0, level="update").craft(view)
    assert set(sent) == {(10, 0), (10, 5)}
    assert torch.allclose(sent[(10, 5)], torch.tensor([[-3.0, -5.0]]))


def test_ipm_sends_minus_epsilon_times_mean_update():
    # reference [1, 1]; observed [3, 1], [1, 5] -> updates [2, 0], [0, 4], mean [1, 2]
    # epsilon 0.5: [1 - 0.5, 1 - 1] = [0.5, 0]; default epsilon 0.1: [0.9, 0.8]
    view = make_view(heads([[3.0, 1.0]], [[1.0, 5.0]]), [0, 1], heads([[9.0, 9.0]]),
                     previous=heads([[1.0, 1.0]]))
    assert torch.allclose(get_attack("ipm", epsilon=0.5, level="update").craft(view)[(10, 0)],
                          torch.tensor([[0.5, 0.0]]))
    assert torch.allclose(get_attack("ipm", level="update").craft(view)[(10, 1)], torch.tensor([[0.9, 0.8]]))


# ---------------------------------------------------------------- label_flip


def test_label_flip_reverses_or_maps_labels_and_keeps_images():
    images = torch.rand(4, 1, 8, 8)
    labels = torch.tensor([0, 1, 2, 9])
    attack = get_attack("label_flip")
    assert attack.poisons_data
    out = attack.poison(images, labels, 10, torch.Generator())
    assert out.images is None                       # the peer keeps its own images
    assert out.labels.tolist() == [9, 8, 7, 0]
    mapped = get_attack("label_flip", mapping={"1": 5, 9: 0}).poison(images, labels, 10, torch.Generator()).labels
    assert mapped.tolist() == [0, 5, 2, 0]
    with pytest.raises(ValueError):
        get_attack("label_flip", mapping={1: 12}).poison(images, labels, 10, torch.Generator())


# ---------------------------------------------------------------- alie


def test_alie_z_from_the_papers_formula():
    # n = 50, f = 12: s = floor(26) - 12 = 14; z = Phi^-1((50 - 14) / 50) = Phi^-1(0.72).
    # From a normal table Phi(0.58) = 0.7190, Phi(0.59) = 0.7224 -> z ~ 0.583 (not the ~1.0
    # the brief quoted; that would need Phi(z) = 0.84, i.e. s = 8).
    assert alie_z(50, 12) == pytest.approx(0.5828, abs=1e-3)
    assert 0.58 < alie_z(50, 12) < 0.59
    # n = 10, f = 2: s = 6 - 2 = 4, Phi^-1(0.6) = 0.2533
    assert alie_z(10, 2) == pytest.approx(0.2533, abs=1e-3)
    # the attack takes n from view.n_peers and f from the Byzantine ids
    view = make_view(heads([[0.0, 0.0]], [[1.0, 1.0]]), [0, 1], torch.zeros(12, 1, 2),
                     byzantine_ids=range(100, 112), n_peers=50)
    assert get_attack("alie").z_for(view) == pytest.approx(NormalDist().inv_cdf(0.72))


def test_alie_head_is_mean_minus_z_std():
    # coord 0: [0, 2, 4] mean 2, sample std sqrt((4 + 0 + 4) / 2) = 2      -> 2 - 1.5 * 2 = -1
    # coord 1: [2, 2, 8] mean 4, sample std sqrt((4 + 4 + 16) / 2) = sqrt(12) -> 4 - 1.5 * 3.4641
    observed = heads([[0.0, 2.0]], [[2.0, 2.0]], [[4.0, 8.0]])
    sent = get_attack("alie", z=1.5, z_mode="global").craft(make_view(observed, [0, 1, 2], heads([[7.0, 7.0]])))
    assert torch.allclose(sent[(10, 1)], torch.tensor([[-1.0, 4.0 - 1.5 * math.sqrt(12)]]))
    assert torch.allclose(alie_head(observed[:1], 1.0), observed[0])  # one head: no spread


# ---------------------------------------------------------------- min_max, min_sum


def test_min_max_and_min_sum_on_a_hand_example():
    # 1-D updates 0 and 2: mean 1, unit_vec p = -1, so m = 1 - gamma.
    # min-max: max((1 - g)^2, (1 + g)^2) <= max pair distance^2 = 4 -> g <= 1, m = 0.
    # min-sum: (1 - g)^2 + (1 + g)^2 = 2 + 2 g^2 <= max_i sum_j = 4 -> g <= 1.
    updates = torch.tensor([[0.0], [2.0]])
    m, gamma = min_max_update(updates, "unit_vec", gamma_init=10.0, tolerance=1e-6)
    assert gamma == pytest.approx(1.0, abs=2e-6) and gamma <= 1.0
    assert m.item() == pytest.approx(1.0 - gamma)
    _, gamma = min_sum_update(updates, "unit_vec", gamma_init=10.0, tolerance=1e-6)
    assert gamma == pytest.approx(1.0, abs=2e-6) and gamma <= 1.0


def test_perturbations_follow_the_paper():
    updates = torch.tensor([[1.0, -4.0], [3.0, 0.0]])  # mean [2, -2], sample std [sqrt2, 2 sqrt2]
    assert torch.allclose(perturbation(updates, "unit_vec"), torch.tensor([-1.0, 1.0]) / math.sqrt(2))
    assert torch.allclose(perturbation(updates, "sign"), torch.tensor([-1.0, 1.0]))
    assert torch.allclose(perturbation(updates, "std"), -torch.tensor([math.sqrt(2), 2 * math.sqrt(2)]))


@pytest.mark.parametrize("kind", ["unit_vec", "sign", "std"])
def test_min_max_and_min_sum_are_maximal_within_tolerance(kind):
    g = torch.Generator().manual_seed(3)
    observed = torch.randn(5, 2, 3, generator=g) + 1.0
    previous = torch.zeros(1, 2, 3)
    tol = 1e-6
    u = observed.flatten(1).double()  # updates (reference is zero)
    mu = u.mean(0)
    p = perturbation(u, kind)
    a = float(p @ p)
    # min-max by closed form: for each i the positive root of
    # a g^2 + 2 g (mu - u_i).p + ||mu - u_i||^2 - B = 0; the largest feasible g is the min.
    bound_max = float(torch.cdist(u, u).pow(2).max())
    roots = []
    for ui in u:
        b = float((mu - ui) @ p)
        c = float((mu - ui) @ (mu - ui)) - bound_max
        roots.append((-b + math.sqrt(b * b - a * c)) / a)
    gamma_max_exact = min(roots)
    # min-sum: sum_i (mu - u_i) = 0, so h a g^2 + sum ||mu - u_i||^2 <= B_sum.
    bound_sum = float(torch.cdist(u, u).pow(2).sum(1).max())
    spread = float(((u - mu) ** 2).sum())
    gamma_sum_exact = math.sqrt((bound_sum - spread) / (len(u) * a))
    assert gamma_max_exact < 20 and gamma_sum_exact < 20  # reachable from gamma_init = 10

    for name, exact in (("min_max", gamma_max_exact), ("min_sum", gamma_sum_exact)):
        view = make_view(observed, range(5), observed[:1].clone(), previous=previous)
        sent = get_attack(name, perturbation=kind, tolerance=tol).craft(view)[(10, 0)].flatten().double()
        gamma = float((sent - mu) @ p) / a
        assert torch.allclose(sent, mu + gamma * p, atol=1e-5)  # on the ray mu + g p
        assert exact - 3 * tol <= gamma <= exact + 1e-6, name
        d2 = ((u - sent) ** 2).sum(1)
        if name == "min_max":
            assert float(d2.max()) <= bound_max * (1 + 1e-5)
        else:
            assert float(d2.sum()) <= bound_sum * (1 + 1e-5)


# ---------------------------------------------------------------- fang


def test_fang_krum_lambda_bound_and_selection_by_hand():
    # benign 1-D models 1, 3, 4, w_Re = 0, c = 2: m = 5, |G_i| = m - c - 2 = 1,
    # nearest-neighbour distances 2, 1, 1 -> min 1; m - 2c - 1 = 0 clamped to 1; d = 1;
    # max distance to w_Re = 4 -> bound 1 + 4 = 5.
    benign = torch.tensor([[1.0], [3.0], [4.0]])
    reference = torch.zeros(1)
    assert fang_krum_lambda_bound(benign, reference, 2) == pytest.approx(5.0)
    # s = sign(8/3 - 0) = +1, so w'_1 = -5; two copies at distance 0 give Krum score 0.
    crafted, lam = fang_krum_head(benign, reference, 2)
    assert lam == pytest.approx(5.0) and crafted.item() == pytest.approx(-5.0)
    # c = 1: m = 4, |G_i| = 1, m - 2c - 1 = 1 -> bound 1 + 4 = 5 as well
    assert fang_krum_lambda_bound(benign, reference, 1) == pytest.approx(5.0)


def test_fang_krum_makes_krum_select_the_crafted_model():
    g = torch.Generator().manual_seed(5)
    observed = torch.randn(7, 3, 4, generator=g)
    previous = observed.mean(0, keepdim=True).expand(2, -1, -1) - 0.3
    view = make_view(observed, range(7), observed[:2].clone(), byzantine_ids=(20, 21), previous=previous)
    sent = get_attack("fang_krum").craft(view)
    crafted = sent[(20, 0)]
    assert torch.equal(crafted, sent[(21, 3)])
    points = [crafted.flatten(), crafted.flatten()] + [h.flatten() for h in observed]
    assert independent_krum(points, f=2) in (0, 1)
    # direction: every honest parameter rose (previous = mean - 0.3), so s = +1 and the
    # crafted model lies below the reference by the same lambda in every coordinate
    shift = previous[0] - crafted
    assert (shift > 0).all() and torch.allclose(shift, shift.flatten()[0].expand_as(shift))


def test_fang_krum_halves_lambda_until_krum_selects_a_single_crafted_model():
    # one Byzantine peer (no copies to lean on): lambda must come down from the bound
    g = torch.Generator().manual_seed(0)
    benign = torch.randn(6, 4, generator=g)
    reference = benign.mean(0) - 0.05  # every coordinate rose: s = +1
    bound = fang_krum_lambda_bound(benign, reference, 1)
    crafted, lam = fang_krum_head(benign, reference, 1)
    halvings = math.log2(bound / lam)
    assert halvings >= 1 and halvings == pytest.approx(round(halvings))  # lambda = bound / 2^k
    assert torch.allclose(crafted, reference - lam)
    assert independent_krum([crafted] + list(benign), f=1) == 0
    assert independent_krum([reference - 2 * lam] + list(benign), f=1) != 0  # the previous lambda failed


def test_fang_trimmed_mean_values_lie_in_the_papers_intervals():
    # coordinates (benign values; reference; direction s; interval with b = 2):
    #  0: [1, 2, 3];    ref 0   s=+1, w_min = 1 > 0   -> [0.5, 1]
    #  1: [-1, -2, -3]; ref 0   s=-1, w_max = -1 <= 0 -> [-1, -0.5]
    #  2: [-1, 2, 3];   ref -5  s=+1, w_min = -1 <= 0 -> [-2, -1]
    #  3: [1, 2, 3];    ref 10  s=-1, w_max = 3 > 0   -> [3, 6]
    observed = heads([[1.0, -1.0, -1.0, 1.0]], [[2.0, -2.0, 2.0, 2.0]], [[3.0, -3.0, 3.0, 3.0]])
    previous = heads([[0.0, 0.0, -5.0, 10.0]], [[0.0, 0.0, -5.0, 10.0]])
    lo = torch.tensor([0.5, -1.0, -2.0, 3.0])
    hi = torch.tensor([1.0, -0.5, -1.0, 6.0])
    for seed in range(5):
        view = make_view(observed, [0, 1, 2], observed[:2].clone(), byzantine_ids=(7, 8), previous=previous,
                         seed=seed)
        sent = get_attack("fang_trimmed_mean").craft(view)
        for s in (7, 8):
            v = sent[(s, 0)][0]
            assert ((v >= lo - 1e-6) & (v <= hi + 1e-6)).all()
        assert not torch.equal(sent[(7, 0)], sent[(8, 0)])  # each peer draws its own values


# ---------------------------------------------------------------- mimic


def test_mimic_copies_one_honest_head():
    observed = heads([[0.0, 0.0]], [[1.0, 0.1]], [[-1.0, 0.0]], [[5.0, -0.1]])
    ids = [4, 2, 9, 7]
    view = make_view(observed, ids, heads([[8.0, 8.0]], [[9.0, 9.0]]), byzantine_ids=(30, 31))
    fixed = get_attack("mimic").craft(view)
    assert all(torch.equal(h, observed[1]) for h in fixed.values())  # lowest id 2 is row 1
    chosen = get_attack("mimic", peer=9).craft(view)
    assert torch.equal(chosen[(31, 4)], observed[2])
    # mean x = 1.25; the spread is along x; |x - 1.25| is largest for x = 5 (row 3)
    varied = get_attack("mimic", target="variance").craft(view)
    assert all(torch.equal(h, observed[3]) for h in varied.values())


# ---------------------------------------------------------------- backdoor


def test_backdoor_trigger_sets_the_bottom_right_square():
    images = torch.zeros(2, 1, 28, 28)
    attack = get_attack("backdoor")
    out = attack.trigger(images)
    assert images.sum() == 0  # not changed in place
    assert torch.all(out[:, :, 25:, 25:] == 1.0)
    assert out.sum() == 2 * 9  # 3x3 ones per image, nothing else
    assert default_patch_size(8, 8) == 1 and default_patch_size(32, 32) == 3
    assert get_attack("backdoor").trigger(torch.zeros(1, 1, 8, 8)).sum() == 1


def test_backdoor_poison_replaces_or_adds_a_fraction():
    images = torch.full((10, 1, 8, 8), 0.25)
    labels = torch.arange(10) % 5 + 1  # no label is 0
    attack = get_attack("backdoor", target=0, poison_fraction=0.5, patch_size=2)
    out = attack.poison(images, labels, 10, torch.Generator().manual_seed(0))
    new_images, new_labels = out.images, out.labels
    poisoned = new_labels == 0
    assert int(poisoned.sum()) == 5 and new_images.shape == images.shape
    assert torch.all(new_images[poisoned][:, :, 6:, 6:] == 1.0)
    assert torch.equal(new_images[~poisoned], images[~poisoned])
    assert torch.equal(new_labels[~poisoned], labels[~poisoned])
    added = get_attack("backdoor", poison_fraction=0.4, mode="add").poison(
        images, labels, 10, torch.Generator().manual_seed(0))
    added_images, added_labels = added.images, added.labels
    assert added_images.shape[0] == 14 and torch.equal(added_images[:10], images)
    assert added_labels[10:].tolist() == [0] * 4


def test_backdoor_evaluation_set_is_the_triggered_test_images_of_other_classes():
    images = torch.full((5, 1, 8, 8), 0.25)
    labels = torch.tensor([0, 3, 0, 1, 2])
    evaluation = get_attack("backdoor", target=0, patch_size=2).evaluation_set(images, labels)
    assert evaluation.target == 0 and evaluation.images.shape == (3, 1, 8, 8)   # the three not already 0
    assert torch.all(evaluation.images[:, :, 6:, 6:] == 1.0)
    assert torch.all(evaluation.images[:, :, :6, :] == 0.25)
    assert get_attack("label_flip").evaluation_set(images, labels) is None     # nothing to measure


def test_backdoor_boost_scales_the_update():
    # reference 0, own [1, 2], boost 3 -> [3, 6]; boost 1 sends the own head
    view = make_view(heads([[0.0, 0.0]]), [0], heads([[1.0, 2.0]]), previous=heads([[0.0, 0.0]]))
    assert torch.allclose(get_attack("backdoor", boost=3.0).craft(view)[(10, 0)], torch.tensor([[3.0, 6.0]]))
    assert torch.equal(get_attack("backdoor").craft(view)[(10, 0)], torch.tensor([[1.0, 2.0]]))


# ---------------------------------------------------------------- dissensus


def test_dissensus_cancels_the_gossip_pull():
    # receiver 0 (head [0, 0]) has honest neighbours 1 ([1, 0]) and 2 ([0, 2]) and
    # Byzantine neighbour 10; peer 5 is observed but not a neighbour of 0.
    graph = nx.Graph([(0, 1), (0, 2), (0, 10), (5, 10)])
    observed = heads([[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 2.0]], [[10.0, 10.0]])
    view = make_view(observed, [0, 1, 2, 5], heads([[3.0, 3.0]]), receivers={10: [0, 5, 6]}, graph=graph)
    sent = get_attack("dissensus", epsilon=1.0).craft(view)
    # eps = 1, b = 1: x_0 - ((1, 0) + (0, 2)) = (-1, -2); the gossip mean of 0's
    # neighbourhood, ((0,0) + (1,0) + (0,2) + (-1,-2)) / 4 = (0, 0), leaves 0 in place.
    assert torch.allclose(sent[(10, 0)], torch.tensor([[-1.0, -2.0]]))
    assert torch.equal(sent[(10, 6)], torch.tensor([[3.0, 3.0]]))  # 6 not observed: own head
    # eps = 2, two Byzantine senders to 0: x_0 - 2 * (1, 2) / 2 = (-1, -2)
    view2 = make_view(observed, [0, 1, 2, 5], heads([[3.0, 3.0]], [[3.0, 3.0]]), byzantine_ids=(10, 11),
                      receivers={10: [0], 11: [0]}, graph=graph)
    assert torch.allclose(get_attack("dissensus", epsilon=2.0).craft(view2)[(11, 0)], torch.tensor([[-1.0, -2.0]]))
    # pull="observed" (the form before the neighbour default): every other observed
    # honest peer stands in: pull (11, 12)
    view3 = make_view(observed, [0, 1, 2, 5], heads([[3.0, 3.0]]), receivers={10: [0]})
    assert torch.allclose(get_attack("dissensus", epsilon=1.0, pull="observed").craft(view3)[(10, 0)],
                          torch.tensor([[-11.0, -12.0]]))


# ---------------------------------------------------------------- bristle_evasion


def test_bristle_evasion_keeps_familiar_rows_and_poisons_foreign_rows():
    g = torch.Generator().manual_seed(7)
    receiver = torch.randn(5, 4, generator=g)
    receiver[:, -1] = torch.tensor([1.0, 0.8, -0.5, -0.7, -0.9])  # mean bias -0.06 -> familiar {0, 1}
    assert estimate_familiar(receiver).tolist() == [True, True, False, False, False]
    assert estimate_familiar(receiver, familiar_count=1).tolist() == [True, False, False, False, False]
    view = make_view(receiver.unsqueeze(0), [3], torch.zeros(1, 5, 4), receivers={10: [3, 4]})
    sent = get_attack("bristle_evasion").craft(view)
    crafted = sent[(10, 3)]
    assert torch.equal(crafted[:2], receiver[:2])  # familiar rows kept exactly
    # foreign rows rotate: class 2 <- row 3, 3 <- row 4, 4 <- row 2
    assert torch.equal(crafted[2], receiver[3]) and torch.equal(crafted[4], receiver[2])
    assert torch.equal(sent[(10, 4)], torch.zeros(5, 4))  # 4 not observed: own head
    # familiar predictions (what Bristle's F1 scores see) are unchanged on any input
    x = torch.randn(500, 3, generator=g)
    before = (x @ receiver[:, :-1].T + receiver[:, -1]).argmax(1)
    after = (x @ crafted[:, :-1].T + crafted[:, -1]).argmax(1)
    familiar_pred = before < 2
    assert familiar_pred.any() and torch.equal(before[familiar_pred], after[familiar_pred])
    # and every input predicted as a foreign class now gets another foreign class
    assert (before[~familiar_pred] != after[~familiar_pred]).all()
    negated = get_attack("bristle_evasion", foreign_mode="negate", scale=2.0).craft(view)[(10, 3)]
    assert torch.allclose(negated[2:, :-1], -2.0 * receiver[2:, :-1])
    assert torch.equal(negated[2:, -1], receiver[2:, -1]) and torch.equal(negated[:2], receiver[:2])


def test_bristle_evasion_estimates_familiar_classes_from_row_moves():
    # From a pre-trained start the biases say nothing: the bias rule (mean bias 0.2)
    # picks {0, 3}, but local training moved rows 1 and 2. Row moves ||head - reference||:
    # [1e-3, 0.5, 0.2, 0], mean 0.17525 -> {1, 2}; the 3 largest moves -> {0, 1, 2}.
    reference = torch.tensor([[0.0, 0.9], [0.0, -0.5], [0.0, -0.4], [0.0, 0.8]])
    head = reference + torch.tensor([[1e-3, 0.0], [0.3, 0.4], [0.0, 0.2], [0.0, 0.0]])
    assert estimate_familiar(head).tolist() == [True, False, False, True]
    assert estimate_familiar(head, reference=reference).tolist() == [False, True, True, False]
    top_three = estimate_familiar(head, familiar_count=3, reference=reference)
    assert top_three.tolist() == [True, True, True, False]
    # craft: the reference is the sender's previous head, the count its own class count
    # (2 here, from honest_claimed_classes): rows 1, 2 kept, rows 0 and 3 swapped.
    view = make_view(head.unsqueeze(0), [3], reference.unsqueeze(0), previous=reference.unsqueeze(0),
                     receivers={10: [3]})
    view.honest_claimed_classes = {10: 2}
    sent = get_attack("bristle_evasion").craft(view)[(10, 3)]
    assert torch.equal(sent[1:3], head[1:3])
    assert torch.equal(sent[0], head[3]) and torch.equal(sent[3], head[0])
    # with a claimed count of 1 only the largest move (row 1) is kept
    view.honest_claimed_classes = {10: 1}
    sent = get_attack("bristle_evasion").craft(view)[(10, 3)]
    assert torch.equal(sent[1], head[1]) and not torch.equal(sent[2], head[2])


def test_bristle_evasion_claims_a_class_count():
    assert get_attack("bristle_evasion").claimed_num_classes(3, 4) == 4
    assert get_attack("bristle_evasion", claim_classes=10).claimed_num_classes(3, 4) == 10


# ---------------------------------------------------------------- placement


def test_degree_placement_on_a_star():
    star = nx.star_graph(4)  # centre 0, leaves 1..4 all of degree 1
    assert choose_byzantine(star, 1, "degree") == [0]
    assert choose_byzantine(star, 3, "degree") == [0, 1, 2]  # ties to the lowest id


def test_betweenness_placement_on_a_path():
    path = nx.path_graph(5)  # betweenness 0, 3, 4, 3, 0 (pairs routed through each node)
    assert choose_byzantine(path, 1, "betweenness") == [2]
    assert choose_byzantine(path, 2, "betweenness") == [1, 2]
    assert choose_byzantine(path, 3, "betweenness") == [1, 2, 3]


def test_random_placement_is_seeded_sorted_and_distinct():
    graph = nx.path_graph(30)
    a = choose_byzantine(graph, 6, "random", seed=1)
    assert a == choose_byzantine(graph, 6, "random", seed=1)
    assert a == sorted(set(a)) and len(a) == 6 and all(0 <= i < 30 for i in a)
    draws = {tuple(choose_byzantine(graph, 6, "random", seed=s)) for s in range(5)}
    assert len(draws) > 1
    assert choose_byzantine(graph, 0, "random") == []
    with pytest.raises(ValueError):
        choose_byzantine(graph, 31, "random")
    with pytest.raises(ValueError):
        choose_byzantine(graph, 2, "closeness")
