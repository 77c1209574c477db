"""Every registered defense: finite output under NaN/inf messages, and batched forms that
agree with the per-peer reference form on padded groups."""
import pytest
import torch

from defenses import get_defense
from defenses.base import Defense
from fedsim.api import PeerContext
from fedsim.registry import names

C, D = 3, 4                      # heads [3, 5]
NAN_ROW, INF_ROW = 1, 4          # which of the 6 received heads are poisoned


def tiny_context(senders, own):
    """A peer holding classes 0 and 1 with a tiny train and test set (D = 4 features)."""
    g = torch.Generator().manual_seed(1)
    train_x = torch.randn(12, D, generator=g)
    train_y = torch.tensor([0, 1] * 6)
    test_x = torch.randn(6, D, generator=g)
    test_y = torch.tensor([0, 0, 0, 1, 1, 1])
    return PeerContext(
        peer_id=0, round=3, test_features=test_x, test_labels=test_y,
        classes=torch.tensor([0, 1]), n_classes=C, rng=torch.Generator().manual_seed(7),
        loss="linear", train_features=train_x, train_labels=train_y,
        previous_head=own - 0.05, sender_ids=torch.as_tensor(senders),
        claimed_num_classes=torch.full((len(senders),), 2), state={})


def received_heads():
    """``own [3, 5]`` and 6 received heads near it: row 1 holds a NaN, row 4 a +inf."""
    g = torch.Generator().manual_seed(0)
    own = torch.randn(C, D + 1, generator=g)
    received = own + 0.3 * torch.randn(6, C, D + 1, generator=g)
    received[NAN_ROW, 0, 2] = float("nan")
    received[INF_ROW, 2, 4] = float("inf")
    return own, received


DEFENSES = [name for name in names("defenses") if name != "mean"]


@pytest.mark.parametrize("name", DEFENSES)
def test_result_is_finite_with_nan_and_inf_messages(name):
    own, received = received_heads()
    rule = get_defense(name)
    merged = rule.aggregate(own, received, tiny_context(list(range(1, 7)), own))
    assert merged.shape == own.shape
    assert merged.dtype == own.dtype
    assert torch.isfinite(merged).all(), f"{name} returned non-finite values"


@pytest.mark.parametrize("name", DEFENSES)
def test_non_finite_messages_count_for_nothing(name):
    # Every rule drops (or zero-weights) a head holding NaN or inf, so the result must
    # be the one it gives when those two heads never arrived. (Second method: the same
    # rule on the 4 finite heads, with the matching sender ids.)
    own, received = received_heads()
    keep = [i for i in range(6) if i not in (NAN_ROW, INF_ROW)]
    senders = list(range(1, 7))
    with_bad = get_defense(name).aggregate(own, received, tiny_context(senders, own))
    without = get_defense(name).aggregate(own, received[keep],
                                          tiny_context([senders[i] for i in keep], own))
    torch.testing.assert_close(with_bad, without, rtol=1e-5, atol=1e-6)


def test_every_defense_is_covered():
    # A newly registered rule is picked up by the parametrisation above; this guards
    # against the registry silently coming back empty.
    assert {"bristle", "krum", "median", "mozi", "balance"} <= set(DEFENSES)


# ------------------------------------------------------------- batched vs per peer

def overrides_group(name):
    return type(get_defense(name)).aggregate_group is not Defense.aggregate_group


BATCHED = [name for name in names("defenses") if overrides_group(name)]
# Non-default arguments too, so that trimming / clipping counts other than 1 are covered.
BATCHED_CASES = [(name, {}) for name in BATCHED] + [
    (name, args) for name, args in [("trimmed_mean", {"f": 2}), ("trimmed_mean", {"beta": 0.3}),
                                    ("bridge", {"b": 2}), ("clipped_gossip", {"f": 3}),
                                    ("clipped_gossip", {"tau": 0.2}),
                                    ("centered_clipping", {"tau": 0.3, "iterations": 3})]
    if name in BATCHED]


def padded_group(padding: float):
    """4 peers, up to 6 slots each; masks: all real, 3 scattered real rows, none real,
    5 real of which two hold NaN / inf. Padding rows hold ``padding`` garbage."""
    g = torch.Generator().manual_seed(3)
    own = torch.randn(4, C, D + 1, generator=g)
    received = own.unsqueeze(1) + 0.5 * torch.randn(4, 6, C, D + 1, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1],
                         [0, 1, 0, 1, 1, 0],
                         [0, 0, 0, 0, 0, 0],
                         [1, 1, 0, 1, 1, 1]], dtype=torch.bool)
    received[3, 1, 0, 0] = float("nan")
    received[3, 4, 1, 3] = float("inf")
    received[~mask] = padding
    return own, received, mask


@pytest.mark.parametrize("name,args", BATCHED_CASES)
@pytest.mark.parametrize("padding", [1e4, float("nan")])
def test_batched_form_matches_per_peer_form(name, args, padding):
    own, received, mask = padded_group(padding)
    rule = get_defense(name, **args)
    ctxs = [tiny_context(list(range(int(m.sum()))), own[i]) for i, m in enumerate(mask)] \
        if rule.needs_context else None
    batched = rule.aggregate_group(own, received, mask, ctxs)
    assert batched.shape == own.shape
    for i in range(own.shape[0]):
        ctx = ctxs[i] if ctxs is not None else None
        expected = rule.aggregate(own[i], received[i][mask[i]], ctx)
        torch.testing.assert_close(batched[i], expected, rtol=1e-5, atol=1e-6, equal_nan=(name == "mean"),
                                   msg=lambda m: f"{name}{args} peer {i}: {m}")
    if name != "mean":
        assert torch.isfinite(batched).all()


def test_peer_with_no_messages_keeps_its_head_in_batched_forms():
    # Peer 2 of the padded group received nothing: every batched rule returns its own head.
    own, received, mask = padded_group(1e4)
    for name in BATCHED:
        rule = get_defense(name)
        ctxs = [tiny_context(list(range(int(m.sum()))), own[i]) for i, m in enumerate(mask)] \
            if rule.needs_context else None
        merged = rule.aggregate_group(own, received, mask, ctxs)
        torch.testing.assert_close(merged[2], own[2], msg=lambda m: f"{name}: {m}")
