"""Byzantine rules and attacks as their authors ran them (issue 16): each test works its
expected numbers out by hand or from the paper's / reference code's formula, written
here independently, and fails on the behaviour before the fix."""
import math
from statistics import NormalDist

import networkx as nx
import numpy as np
import pytest
import torch

from attacks import get_attack
from defenses import get_defense
from defenses.aggregation.foolsgold import foolsgold_weights
from fedsim.api import AttackerView, PeerContext


def heads(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def ctx(**kwargs):
    base = dict(peer_id=0, round=1, rng=torch.Generator().manual_seed(0), loss="linear")
    base.update(kwargs)
    return PeerContext(**base)


# ------------------------------------------------------------------- FoolsGold
def reference_foolsgold(histories: np.ndarray) -> np.ndarray:
    """FoolsGold's weights as DistributedML/FoolsGold computes them (deep-fg/fg/foolsgold.py,
    ML/code/logistic_aggregator.py), written from the paper's Algorithm 1 and that code:
    cosine matrix minus the identity (zero diagonal), pardoning against the row maxima,
    1 - row max clipped to [0, 1], rescaled by the maximum, 1 -> 0.99, logit + 0.5,
    clipped to [0, 1]."""
    unit = histories / np.linalg.norm(histories, axis=1, keepdims=True)
    n = len(histories)
    cs = unit @ unit.T - np.eye(n)
    # The code's diagonal is cos(H_i, H_i) - 1 = 0 up to rounding (+-1e-16, which can
    # divide by a zero maximum when every similarity is negative): exactly 0 here.
    np.fill_diagonal(cs, 0.0)
    maxcs = cs.max(axis=1)
    pardoned = cs.copy()
    for i in range(n):
        for j in range(n):
            if i != j and maxcs[i] < maxcs[j]:
                pardoned[i, j] = cs[i, j] * maxcs[i] / maxcs[j]
    wv = np.clip(1 - pardoned.max(axis=1), 0, 1)
    wv = wv / wv.max()
    wv[wv == 1] = 0.99
    with np.errstate(divide="ignore"):
        wv = np.log(wv / (1 - wv)) + 0.5
    wv[np.isinf(wv) & (wv > 0)] = 1
    return np.clip(wv, 0, 1)


def test_foolsgold_anti_aligned_sender_keeps_weight_one():
    # H0 = (1, 0), H1 = (1, 1), H2 = (-1, 0): cos01 = 0.7071, cos02 = -1, cos12 = -0.7071.
    # v = (0.7071, 0.7071, max(0, -0.7071) = 0). Sender 2 is pardoned to cs = 0 against
    # both, so alpha_2 = 1 -> weight 1; alpha_0 = alpha_1 = 1 - 0.7071 = 0.2929, logit
    # ln(0.2929 / 0.7071) + 0.5 = -0.381 -> 0. (Before the fix: v_2 = -0.7071 flipped the
    # sign of its similarities, cs_20 = +1, and sender 2 got weight 0, the others 1.)
    weights = foolsgold_weights(torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]], dtype=torch.float64))
    assert weights.tolist() == [0.0, 0.0, 1.0]


def test_foolsgold_equals_the_reference_on_200_random_history_sets():
    generator = np.random.default_rng(16)
    for _ in range(200):
        n, d = int(generator.integers(3, 9)), int(generator.integers(2, 6))
        histories = generator.normal(size=(n, d))
        expected = reference_foolsgold(histories)
        got = foolsgold_weights(torch.tensor(histories), kappa=1.0).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-9)


# ------------------------------------------------------------------- BALANCE
def test_balance_default_gamma_accepts_a_neighbour_at_the_head_scale():
    # own = [[3, 0], [0, 4]], ||own|| = 5. A neighbour at distance 4 (ratio 0.8, typical
    # of honest heads on 2-class shards, see the docstring) is accepted at the default
    # gamma (threshold gamma * 5 >= 4) and was rejected at the paper's 0.3 (threshold
    # 1.5): merged = 0.5 own + 0.5 x = own + [[2, 0], [0, 0]].
    own = heads([3.0, 0.0], [0.0, 4.0])
    neighbour = own + heads([4.0, 0.0], [0.0, 0.0])
    merged = get_defense("balance").aggregate(own, neighbour.unsqueeze(0), None)
    assert torch.allclose(merged, heads([5.0, 0.0], [0.0, 4.0]))
    assert torch.equal(get_defense("balance", gamma=0.3).aggregate(own, neighbour.unsqueeze(0), None), own)


# ------------------------------------------------------------------- per-peer f
# Scalar heads [1, 1]: values 0, 1, 2, 10, 20 received by a peer whose own head is 0.
OWN1 = heads([0.0])
RECEIVED5 = torch.tensor([1.0, 2.0, 10.0, 20.0, 3.0]).view(5, 1, 1)


def test_ios_auto_removes_the_peers_true_byzantine_count():
    # Uniform weights. Round 1: mean of {0, 1, 2, 10, 20, 3} = 6, farthest 20 -> out.
    # Round 2: mean of {0, 1, 2, 10, 3} = 3.2, farthest 10 -> out. Result mean {0,1,2,3} = 1.5.
    # With the default f = 1 only 20 goes: mean {0, 1, 2, 10, 3} = 3.2.
    rule = get_defense("ios", f="auto")
    assert rule.needs_context
    assert torch.allclose(rule.aggregate(OWN1, RECEIVED5, ctx(byzantine_neighbours=2)), heads([1.5]))
    assert torch.allclose(get_defense("ios").aggregate(OWN1, RECEIVED5, None), heads([3.2]))


def test_ios_fraction_of_received():
    # f = 0.25 of k = 5 received -> floor(1.25) = 1 removed: 3.2 as above; f = 0.4 -> 2: 1.5.
    assert torch.allclose(get_defense("ios", f=0.25).aggregate(OWN1, RECEIVED5, None), heads([3.2]))
    assert torch.allclose(get_defense("ios", f=0.4).aggregate(OWN1, RECEIVED5, None), heads([1.5]))


def test_ios_metropolis_hastings_weights():
    # Peer of degree 2 receives x = 3 (sender degree 1) and x = 30 (sender degree 3):
    # w = 1 / (1 + max(2, 1)) = 1/3, 1 / (1 + 3) = 1/4, w_ii = 1 - 7/12 = 5/12.
    # f = 1: centre = (5/12 * 0 + 1/3 * 3 + 1/4 * 30) / 1 = 8.5; 30 is farthest and goes;
    # result (1/3 * 3) / (5/12 + 1/3) = 1 / (3/4) = 4/3.
    rule = get_defense("ios", f=1, weights="metropolis_hastings")
    received = torch.tensor([3.0, 30.0]).view(2, 1, 1)
    out = rule.aggregate(OWN1, received, ctx(degree=2, sender_degrees=torch.tensor([1, 3])))
    assert torch.allclose(out, heads([4.0 / 3.0]))


def test_mean_metropolis_hastings_weights():
    # Same weights: 5/12 * 6 + 1/3 * 3 + 1/4 * 30 = 2.5 + 1 + 7.5 = 11.
    rule = get_defense("mean", weights="metropolis_hastings")
    received = torch.tensor([3.0, 30.0]).view(2, 1, 1)
    out = rule.aggregate(heads([6.0]), received, ctx(degree=2, sender_degrees=torch.tensor([1, 3])))
    assert torch.allclose(out, heads([11.0]))


def test_trimmed_mean_auto_trims_per_peer_and_the_batched_form_agrees():
    # Candidates {0, 1, 2, 10, 20, 3} sorted 0 1 2 3 10 20. auto with 2 Byzantine
    # neighbours: trim 2 per side -> mean(2, 3) = 2.5; the default f = 1 gives
    # mean(1, 2, 3, 10) = 4.
    rule = get_defense("trimmed_mean", f="auto")
    assert torch.allclose(rule.aggregate(OWN1, RECEIVED5, ctx(byzantine_neighbours=2)), heads([2.5]))
    assert torch.allclose(get_defense("trimmed_mean").aggregate(OWN1, RECEIVED5, None), heads([4.0]))
    # Batched: peer 0 as above, peer 1 (own 0, received 1, 2, 3 and padding) with 0
    # Byzantine neighbours: mean(0, 1, 2, 3) = 1.5.
    own = torch.zeros(2, 1, 1)
    received = torch.stack([RECEIVED5, torch.tensor([1.0, 2.0, 3.0, 99.0, 99.0]).view(5, 1, 1)])
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    ctxs = [ctx(byzantine_neighbours=2), ctx(byzantine_neighbours=0)]
    assert torch.allclose(rule.aggregate_group(own, received, mask, ctxs).flatten(), torch.tensor([2.5, 1.5]))


def test_trimmed_mean_auto_without_byzantine_neighbours_is_the_mean():
    # Issue 16's no-attack check: f = auto = 0 trims nothing, so the rule is the mean
    # rule, per peer and batched (heads of 3 classes x 5, 6 received).
    g = torch.Generator().manual_seed(1)
    own, received = torch.randn(3, 5, generator=g), torch.randn(6, 3, 5, generator=g)
    rule, mean = get_defense("trimmed_mean", f="auto"), get_defense("mean")
    expected = mean.aggregate(own, received)
    assert torch.allclose(rule.aggregate(own, received, ctx(byzantine_neighbours=0)), expected, atol=1e-6)
    batched = rule.aggregate_group(own[None], received[None], torch.ones(1, 6, dtype=torch.bool),
                                   [ctx(byzantine_neighbours=0)])
    assert torch.allclose(batched[0], expected, atol=1e-6)


def test_bridge_and_krum_auto():
    # BRIDGE b = auto = 2 over neighbours 1 2 3 10 20: keep 3, (0 + 3) / 2 = 1.5.
    assert torch.allclose(get_defense("bridge", b="auto").aggregate(OWN1, RECEIVED5, ctx(byzantine_neighbours=2)),
                          heads([1.5]))
    # Multi-Krum, n = 6 candidates {0, 1, 2, 10, 20, 3}. Krum needs n >= 2f + 3, so the
    # scores use f = 1: the n - 3 = 3 nearest squared distances: 0: 1 + 4 + 9 = 14,
    # 1: 1 + 1 + 4 = 6, 2: 1 + 1 + 4 = 6, 3: 1 + 4 + 9 = 14, 10: 49 + 64 + 81, 20: more.
    # auto = 2 averages the m = n - 2 = 4 best {1, 2, 0, 3}: 1.5; the default f = 1 the
    # 5 best, 10 included: 16 / 5 = 3.2.
    multi_krum = get_defense("multi_krum", f="auto")
    assert torch.allclose(multi_krum.aggregate(OWN1, RECEIVED5, ctx(byzantine_neighbours=2)), heads([1.5]))
    assert torch.allclose(get_defense("multi_krum").aggregate(OWN1, RECEIVED5, None), heads([3.2]))


def test_clipped_gossip_auto_and_metropolis_hastings():
    # Distances from own 0: 1 2 10 20 3. f = auto = 2: tau = 3rd largest = 3; clipped
    # 1 2 3 3 3 -> 0 + 12 / 6 = 2. With f = 1: tau = 10, clipped 1 2 10 10 3 -> 26 / 6.
    rule = get_defense("clipped_gossip", f="auto")
    assert torch.allclose(rule.aggregate(OWN1, RECEIVED5, ctx(byzantine_neighbours=2)), heads([2.0]))
    assert torch.allclose(get_defense("clipped_gossip").aggregate(OWN1, RECEIVED5, None), heads([26.0 / 6.0]))
    # MH weights with tau = 5: received 3 (deg 1), 30 (deg 3) at a peer of degree 2:
    # 0 + 1/3 * 3 + 1/4 * 5 = 2.25.
    rule = get_defense("clipped_gossip", tau=5.0, weights="metropolis_hastings")
    out = rule.aggregate(OWN1, torch.tensor([3.0, 30.0]).view(2, 1, 1),
                         ctx(degree=2, sender_degrees=torch.tensor([1, 3])))
    assert torch.allclose(out, heads([2.25]))


# ------------------------------------------------------------------- attacks
def view(graph=None, observed_ids=(1, 2, 3), observed=None, byzantine=(0,), receivers=None, own=None,
         previous=None):
    observed = observed if observed is not None else torch.tensor([1.0, 2.0, 6.0]).view(3, 1, 1)
    own = own if own is not None else torch.full((len(byzantine), 1, 1), 4.0)
    return AttackerView(round=1, byzantine_ids=list(byzantine),
                        receivers=receivers or {b: list(observed_ids) for b in byzantine},
                        observed=observed, observed_ids=list(observed_ids), own_heads=own,
                        rng=torch.Generator().manual_seed(0), n_peers=4, n_classes=1,
                        previous_heads=previous, graph=graph)


def test_sign_flip_and_ipm_on_models_by_default():
    v = view(previous=torch.full((1, 1, 1), 3.0))
    # model level: -own = -4; update level: 3 - (4 - 3) = 2.
    assert get_attack("sign_flip").craft(v)[(0, 1)].item() == -4.0
    assert get_attack("sign_flip", level="update").craft(v)[(0, 1)].item() == 2.0
    # IPM model level: -0.1 * mean(1, 2, 6) = -0.3; update level: 3 - 0.1 * (3 - 3) = 3.
    assert get_attack("ipm").craft(v)[(0, 1)].item() == pytest.approx(-0.3)
    assert get_attack("ipm", level="update").craft(v)[(0, 1)].item() == pytest.approx(3.0)


def test_sign_flip_of_the_receivers_neighbourhood_as_the_ios_code():
    # IOS D_sign_flipping: -scale * mean(receiver + its honest neighbours). Graph: 1 has
    # neighbours 0 (Byzantine), 2 and 3; 2 has neighbours 0 and 1. Observed heads
    # 1 -> 1.0, 2 -> 2.0, 3 -> 6.0. Receiver 1: -(1 + 2 + 6) / 3 = -3; receiver 2:
    # -(2 + 1) / 2 = -1.5; scale 2 doubles both. Update level (reference 3):
    # 3 - (3 - 3) = 3 for receiver 1, 3 - (1.5 - 3) = 4.5 for receiver 2. The own form
    # sends -4 to both.
    graph = nx.Graph([(0, 1), (0, 2), (1, 2), (1, 3)])
    v = view(graph=graph, receivers={0: [1, 2]}, previous=torch.full((1, 1, 1), 3.0))
    sent = get_attack("sign_flip", source="receiver_neighbourhood").craft(v)
    assert (sent[(0, 1)].item(), sent[(0, 2)].item()) == (-3.0, -1.5)
    doubled = get_attack("sign_flip", source="receiver_neighbourhood", scale=2.0).craft(v)
    assert (doubled[(0, 1)].item(), doubled[(0, 2)].item()) == (-6.0, -3.0)
    update = get_attack("sign_flip", source="receiver_neighbourhood", level="update").craft(v)
    assert (update[(0, 1)].item(), update[(0, 2)].item()) == (3.0, 4.5)
    own = get_attack("sign_flip").craft(v)
    assert (own[(0, 1)].item(), own[(0, 2)].item()) == (-4.0, -4.0)


def test_dissensus_pulls_only_the_neighbourhood_without_the_graph():
    # Path graph 1 - 0 - 2 and 3 - 4 - 5 ... the attacker (0) sends to 1 and 2 and
    # observed 1, 2 and 3 (3 through another Byzantine peer 4). For receiver 1 the
    # stand-in neighbourhood is 0's other honest neighbour, 2: x = 1 - 1.5 * (2 - 1) / 1
    # = -0.5. The "observed" form also pulls 3 (value 6): 1 - 1.5 * (1 + 5) = -8.
    v = view(byzantine=(0, 4), receivers={0: [1, 2], 4: [3]},
             own=torch.tensor([4.0, 4.0]).view(2, 1, 1))
    assert get_attack("dissensus").craft(v)[(0, 1)].item() == pytest.approx(-0.5)
    assert get_attack("dissensus", pull="observed").craft(v)[(0, 1)].item() == pytest.approx(-8.0)
    # With the graph (1 linked to 0 and 3): neighbours of 1 are {3}: 1 - 1.5 * 5 = -6.5.
    graph = nx.Graph([(0, 1), (0, 2), (4, 3), (1, 3)])
    v_graph = view(graph=graph, byzantine=(0, 4), receivers={0: [1, 2], 4: [3, 1]},
                   own=torch.tensor([4.0, 4.0]).view(2, 1, 1))
    # b_1 = 2 Byzantine senders (0 and 4): 1 - 1.5 * 5 / 2 = -2.75.
    assert get_attack("dissensus").craft(v_graph)[(0, 1)].item() == pytest.approx(-2.75)


def test_alie_per_receiver_z_and_override():
    # Graph: receiver 1 has neighbours 0 (Byzantine), 2, 3: degree 3, b = 1:
    # s = floor(4 / 2) - 1 = 1, z = Phi^-1(2 / 3) = 0.4307. Population: 1 (own, 1.0),
    # 2 (2.0), 3 (6.0): mean 3, sample std sqrt(((4 + 1 + 9) / 2)) = sqrt(7).
    graph = nx.Graph([(0, 1), (1, 2), (1, 3)])
    v = view(graph=graph, receivers={0: [1]})
    z = NormalDist().inv_cdf(2 / 3)
    assert get_attack("alie").craft(v)[(0, 1)].item() == pytest.approx(3 - z * math.sqrt(7), rel=1e-6)
    assert get_attack("alie", z=10.0).craft(v)[(0, 1)].item() == pytest.approx(3 - 10 * math.sqrt(7), rel=1e-6)
    # global: the paper's z_max for n = 4, f = 1: s = 3 - 1 = 2, Phi^-1(2 / 4) = 0 -> mean 3.
    assert get_attack("alie", z_mode="global").craft(v)[(0, 1)].item() == pytest.approx(3.0)


def test_mimic_takes_the_signed_projection():
    # Heads on a line: -3, 1, 2 (mean 0). z = +1 (largest entry positive). Signed
    # argmax picks 2 (projection 2); |.| picked -3.
    v = view(observed=torch.tensor([-3.0, 1.0, 2.0]).view(3, 1, 1))
    assert get_attack("mimic", target="variance").craft(v)[(0, 1)].item() == 2.0
    assert get_attack("mimic", target="variance", absolute=True).craft(v)[(0, 1)].item() == -3.0


def test_backdoor_auto_boost_replaces_each_receivers_average():
    # Receiver 1 of degree 3 (graph) with b = 1 Byzantine sender: gamma = (3 + 1) / 1 = 4;
    # sent = 3 + 4 * (4 - 3) = 7.
    graph = nx.Graph([(0, 1), (1, 2), (1, 3)])
    v = view(graph=graph, receivers={0: [1]}, previous=torch.full((1, 1, 1), 3.0))
    assert get_attack("backdoor", boost="auto").craft(v)[(0, 1)].item() == pytest.approx(7.0)


# ------------------------------------------------------------------- Mozi / UBAR
# C = 2, D = 1; own data x = +1 -> label 0, x = -1 -> label 1. A head [[w, 0], [-w, 0]]
# has cross-entropy log(1 + exp(-2w)) on both samples.
X = torch.tensor([[1.0], [-1.0]])
Y = torch.tensor([0, 1])


def w_head(w):
    return heads([w, 0.0], [-w, 0.0])


def ce(w):
    return math.log1p(math.exp(-2 * w))


def test_mozi_floor_nearest_fallback_and_previous_head():
    # Trained own head w = 1.0 (loss 0.1269), previous head w = 0.5 (loss 0.3133).
    # Received w = 0.9 (distance 0.141, loss 0.1530), 0.4 (0.849, 0.3711), 3.0 (2.83, 0.0025).
    own, previous = w_head(1.0), w_head(0.5)
    received = torch.stack([w_head(0.9), w_head(0.4), w_head(3.0)])
    c = ctx(train_features=X, train_labels=Y, previous_head=previous)
    # rho = 0.5, k = 3: floor(1.5) = 1 candidate, the nearest (0.9); its loss 0.1530 <=
    # previous 0.3133 -> accepted: 0.5 * 1 + 0.5 * 0.9 = 0.95. Against the trained head
    # (loss 0.1269) it fails, and the paper's Mozi kept its own head.
    assert torch.allclose(get_defense("mozi").aggregate(own, received, c), w_head(0.95))
    old = get_defense("mozi", batch_size=None, selection="ceil", if_none="own", loss_reference="trained")
    # ceil(1.5) = 2 candidates 0.9, 0.4, neither beats 0.1269: own.
    assert torch.equal(old.aggregate(own, received, c), own)
    # Nearest fallback: against a previous head w = 2.0 (loss 0.0181) the candidate 0.9
    # fails; the public code then keeps the nearest received head (0.9): 0.95.
    c2 = ctx(train_features=X, train_labels=Y, previous_head=w_head(2.0))
    assert torch.allclose(get_defense("mozi").aggregate(own, received, c2), w_head(0.95))


def test_ubar_compares_losses_with_the_previous_head():
    # rho = 1: candidates 0.9, 0.4, 3.0 (all). Previous head w = 0.5 (0.3133): 0.9 and
    # 3.0 pass -> mean 1.95, merged 0.5 * 1 + 0.5 * 1.95 = 1.475. Against the trained
    # head (0.1269) only 3.0 passes: 2.0.
    own = w_head(1.0)
    received = torch.stack([w_head(0.9), w_head(0.4), w_head(3.0)])
    c = ctx(train_features=X, train_labels=Y, previous_head=w_head(0.5))
    assert torch.allclose(get_defense("ubar", rho=1.0, batch_size=None).aggregate(own, received, c),
                          w_head(1.475))
    trained = get_defense("ubar", rho=1.0, batch_size=None, loss_reference="trained")
    assert torch.allclose(trained.aggregate(own, received, c), w_head(2.0))
    assert ce(0.9) < ce(0.5) < ce(0.4)


# ------------------------------------------------------------------- reproduction settings
def test_dumbbell_is_two_cliques_and_one_bridge():
    from fedsim.topology import dumbbell
    graph = dumbbell(8)
    # Cliques {0..3} and {4..7}: 2 * C(4, 2) = 12 edges, plus the bridge (0, 7).
    assert graph.number_of_edges() == 13 and graph.has_edge(0, 7)
    assert sorted(d for _, d in graph.degree()) == [3] * 6 + [4, 4]
    assert not graph.has_edge(1, 4)


def test_label_groups_gives_each_block_its_own_classes():
    from fedsim.data.partition import label_groups
    labels = np.repeat(np.arange(6), 10)           # 6 classes, 10 samples each
    parts = label_groups(labels, n_peers=4, seed=0, classes_per_peer=3)
    held = [sorted(set(labels[p].tolist())) for p in parts]
    assert held == [[0, 1, 2], [0, 1, 2], [3, 4, 5], [3, 4, 5]]
    assert sorted(np.concatenate(parts).tolist()) == list(range(60))
    assert [len(p) for p in parts] == [15, 15, 15, 15]
