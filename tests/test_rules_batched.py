"""The robust rules' batched forms (issue 14.2) against their per-peer forms, computed
here peer by peer: bit for bit on float32 heads (what runs use), and to 1e-12 on
float64 heads where a batched sum adds in another order; the sorting network against
torch.sort and the 0-1 principle."""
import itertools

import pytest
import torch

from defenses import get_defense
from defenses.aggregation.coordinate import sort_padded, sorting_network
from defenses.aggregation.geometric_median import geometric_median_objective
from fedsim.api import PeerContext

PEERS, DEGREE, C, P = 40, 8, 3, 7


def group(dtype, seed=0):
    """40 peers of degree 8 with holes in the masks, a peer with no message, one with a
    single message, a NaN and an inf message; padding holds NaN."""
    g = torch.Generator().manual_seed(seed)
    own = torch.randn(PEERS, C, P, generator=g, dtype=dtype)
    received = own.unsqueeze(1) + 0.5 * torch.randn(PEERS, DEGREE, C, P, generator=g, dtype=dtype)
    received[11, 4] = own[11] + 40.0                    # a far outlier
    mask = torch.rand(PEERS, DEGREE, generator=g) > 0.2
    mask[7] = False
    mask[8, 1:] = False
    mask[3, 1] = mask[5, 2] = True
    received[3, 1, 0, 0] = float("nan")
    received[5, 2, 1, 1] = float("inf")
    received[~mask] = float("nan")
    return own, received, mask


def per_peer(rule, own, received, mask):
    return torch.stack([rule.aggregate(own[i], received[i][mask[i]]) for i in range(own.shape[0])])


CASES = [("median", {}), ("trimmed_mean", {"f": 2}), ("trimmed_mean", {"beta": 0.3}),
         ("trimmed_mean", {"f": 0.25}), ("bridge", {"b": 2}), ("krum", {"f": 2}), ("krum", {"f": 0.3}),
         ("krum", {"f": 1, "average_with_own": True}), ("multi_krum", {"f": 2}),
         ("multi_krum", {"f": 1, "m": 3}), ("bulyan", {"f": 1}), ("bulyan", {"f": 2}), ("bulyan", {"f": 0}),
         ("bulyan", {"f": 0.2}), ("geometric_median", {}),
         ("centered_clipping", {"tau": 0.3, "iterations": 3}), ("clipped_gossip", {"f": 2})]


@pytest.mark.parametrize("name,args", CASES)
def test_float32_group_is_bit_for_bit_the_per_peer_form(name, args):
    own, received, mask = group(torch.float32)
    rule = get_defense(name, **args)
    batched = rule.aggregate_group(own, received, mask)
    expected = per_peer(rule, own, received, mask)
    assert torch.equal(batched, expected), (batched - expected).abs().max()


@pytest.mark.parametrize("name,args", CASES)
def test_float64_group_matches_the_per_peer_form_to_1e_12(name, args):
    own, received, mask = group(torch.float64, seed=1)
    rule = get_defense(name, **args)
    torch.testing.assert_close(rule.aggregate_group(own, received, mask),
                               per_peer(rule, own, received, mask), rtol=1e-12, atol=1e-12)


def test_krum_group_choice_is_the_lowest_score_with_ties_to_the_own_head():
    # Every candidate equal: all scores tie (0) and Krum keeps the own head; a copy that
    # differs only in dtype rounding would show up as a different row.
    own = torch.randn(5, C, P, generator=torch.Generator().manual_seed(4))
    received = own.unsqueeze(1).repeat(1, 6, 1, 1)
    received[:, 3] += 1.0                                # one candidate off the cluster
    merged = get_defense("krum", f=1).aggregate_group(own, received, torch.ones(5, 6, dtype=torch.bool))
    assert torch.equal(merged, own)


def test_geometric_median_group_reaches_the_same_objective_when_iterating_long():
    # With many iterations and no early stop a peer may stop one iteration apart from its
    # per-peer run (the objective is flat at the optimum): the objective values agree.
    own, received, mask = group(torch.float64, seed=2)
    rule = get_defense("geometric_median", max_iter=40, tol=0.0)
    batched = rule.aggregate_group(own, received, mask)
    for i in range(PEERS):
        rows = torch.cat([own[i:i + 1], received[i][mask[i]]])
        rows = rows[torch.isfinite(rows.flatten(1)).all(dim=1)].flatten(1)
        weights = torch.full((rows.shape[0],), 1.0 / rows.shape[0], dtype=torch.float64)
        here = geometric_median_objective(batched[i].flatten(), rows, weights)
        there = geometric_median_objective(rule.aggregate(own[i], received[i][mask[i]]).flatten(), rows, weights)
        assert float(here) == pytest.approx(float(there), rel=1e-12), i


@pytest.mark.parametrize("m", range(1, 13))
def test_sorting_network_sorts_every_zero_one_input(m):
    # The 0-1 principle (Knuth, TAOCP 5.3.4): a comparator network sorts every input iff
    # it sorts every 0-1 input.
    network = sorting_network(m)
    assert all(a < b < m for a, b in network)
    for bits in itertools.product((0, 1), repeat=m):
        values = list(bits)
        for a, b in network:
            if values[a] > values[b]:
                values[a], values[b] = values[b], values[a]
        assert values == sorted(bits), bits


@pytest.mark.parametrize("m,comparators", [(2, 1), (4, 5), (8, 19), (16, 63), (32, 191)])
def test_sorting_network_has_batchers_comparator_count(m, comparators):
    # (p^2 - p + 4) 2^(p-2) - 1 comparators for 2^p inputs (Batcher 1968; Knuth, TAOCP vol. 3, 5.3.4).
    p = m.bit_length() - 1
    assert (p * p - p + 4) * 2 ** (p - 2) - 1 == comparators
    assert len(sorting_network(m)) == comparators


@pytest.mark.parametrize("m", [1, 2, 5, 9, 17, 33])
def test_sort_padded_gives_torch_sort_values(m):
    g = torch.Generator().manual_seed(m)
    values = torch.randn(6, m, 11, generator=g)
    values[:, :, 0] = 0.5                                 # ties
    valid = torch.rand(6, m, generator=g) > 0.3
    first = torch.randn(6, 11, generator=g)
    for with_nan in (False, True):
        if with_nan:
            first[2, 3] = float("nan")                    # a diverged own head: torch.sort's order
        expected = torch.cat([first.unsqueeze(1), torch.where(valid.unsqueeze(-1), values,
                                                              torch.tensor(float("inf")))], 1).sort(dim=1).values
        got = torch.stack(sort_padded(values, valid, first=first), dim=1)
        assert torch.equal(got.nan_to_num(nan=9.0), expected.nan_to_num(nan=9.0))


def contexts(mask, seed=0):
    """Per peer: its degree, its senders' degrees and how many of them are Byzantine."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for row in mask:
        k = int(row.sum())
        out.append(PeerContext(peer_id=0, round=1, degree=int(torch.randint(3, 12, (), generator=g)),
                               sender_degrees=torch.randint(3, 12, (k,), generator=g),
                               byzantine_neighbours=int(torch.randint(0, 3, (), generator=g))))
    return out


@pytest.mark.parametrize("args", [{"weights": "metropolis_hastings"}, {"f": "auto"},
                                  {"f": "auto", "weights": "metropolis_hastings"},
                                  {"tau": 0.4, "weights": "metropolis_hastings"}])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clipped_gossip_with_contexts_matches_the_per_peer_form(args, dtype):
    own, received, mask = group(dtype, seed=3)
    ctxs = contexts(mask)
    rule = get_defense("clipped_gossip", **args)
    batched = rule.aggregate_group(own, received, mask, ctxs)
    expected = torch.stack([rule.aggregate(own[i], received[i][mask[i]], ctxs[i]) for i in range(PEERS)])
    # float64: the weighted sum is a batched matrix product (another order of additions)
    tolerance = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1.2e-7, "atol": 1e-7}
    torch.testing.assert_close(batched, expected, **tolerance)
