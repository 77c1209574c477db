"""The adaptive attacker's replay of the sender's privacy defense (PrivacyDefense.replay):
a deterministic function of the dummy update, the expectation over the sender's secret draws."""
import torch

from defenses.privacy.transforms import DPGaussian, NoPrivacy, StochasticQuantization, TopK
from fedsim import rng
from fedsim.api import PrivacyDefense


def adaptive_transform(defense, seed, victim, round_):
    """As fedsim.privacy.PrivacyRecorder.finish calls it."""
    return defense.replay(rng.generator(seed, victim, round_, "adaptive"))


def test_dp_gaussian_is_replayed_as_its_clipping_without_noise():
    transform = adaptive_transform(DPGaussian(clip=0.5, noise_multiplier=1.0), 0, 3, 1)
    delta = torch.tensor([[1.2, 0.0], [0.0, -1.6]], dtype=torch.float64)   # ||delta|| = sqrt(1.44 + 2.56) = 2
    expected = torch.tensor([[0.3, 0.0], [0.0, -0.4]], dtype=torch.float64)  # delta * 0.5 / 2
    assert torch.allclose(transform(delta), expected, atol=1e-15)
    assert torch.equal(transform(delta), transform(delta))                # no fresh noise between calls
    small = torch.tensor([[0.3, 0.0], [0.0, 0.4]], dtype=torch.float64)      # norm 0.5 <= clip: unchanged
    assert torch.allclose(transform(small), small, atol=1e-15)
    leaf = delta.clone().requires_grad_(True)
    transform(leaf).sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


def test_quantization_is_unbiased_so_the_replay_is_the_identity():
    assert adaptive_transform(StochasticQuantization(bits=2), 0, 3, 1) is None
    assert adaptive_transform(NoPrivacy(), 0, 3, 1) is None


def test_topk_is_replayed_as_it_is():
    transform = adaptive_transform(TopK(k=2), 0, 3, 1)
    delta = torch.tensor([[0.1, -0.9, 0.3], [0.5, 0.0, -0.2]])
    assert torch.equal(transform(delta), torch.tensor([[0.0, -0.9, 0.0], [0.5, 0.0, 0.0]]))


class _NoisyIdentity(PrivacyDefense):
    """A defense without its own replay: delta plus a unit normal draw."""

    name = "noisy_identity_for_test"

    def apply(self, delta, rng):
        return delta + torch.randn(delta.shape, generator=rng, dtype=delta.dtype)


def test_an_unknown_defense_is_replayed_with_one_fixed_draw():
    defense = _NoisyIdentity()
    transform = adaptive_transform(defense, 0, 3, 1)
    delta = torch.zeros(2, 3)
    first, second = transform(delta), transform(delta)
    assert torch.equal(first, second)                       # the same draw at every call
    assert first.abs().sum() > 0                            # ... and it is a draw, not nothing
    other_victim = adaptive_transform(defense, 0, 4, 1)(delta)
    assert not torch.equal(first, other_victim)             # keyed by the victim
    # The draw is the one apply makes with the generator replay was given, at every call.
    expected = defense.apply(delta, rng.generator(0, 3, 1, "adaptive"))
    assert torch.equal(first, expected)
