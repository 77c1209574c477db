"""dp_gaussian's privacy accounting: epsilon per round and over a run, checked against the
RDP formula worked out here and against the exact epsilon of the composed Gaussian
mechanism (a second method: T releases of noise z are one Gaussian mechanism of noise
z / sqrt(T), Dong, Roth, Su 2022, "Gaussian differential privacy", Cor. 3.3)."""
import math

import numpy as np
import pytest
from scipy.stats import norm

import fedsim
from defenses.privacy.transforms import DPGaussian
from fedsim.accountant import ORDERS, gaussian_epsilon
from tests.conftest import tiny_scenario


def rdp_epsilon_by_hand(z: float, rounds: int, delta: float) -> float:
    """min over the orders of T a / (2 z^2) + log((a-1)/a) - (log delta + log a) / (a - 1)."""
    a = np.array(ORDERS)
    return float(np.min(rounds * a / (2 * z * z) + np.log((a - 1) / a) - (np.log(delta) + np.log(a)) / (a - 1)))


def exact_gaussian_epsilon(z: float, rounds: int, delta: float) -> float:
    """The smallest epsilon with delta(epsilon) <= delta for mu-GDP, mu = sqrt(T) / z (Balle &
    Wang 2018, Thm. 8): delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2); bisection."""
    mu = math.sqrt(rounds) / z
    spent = lambda eps: norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2)  # noqa: E731
    lo, hi = 0.0, 500.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if spent(mid) > delta else (lo, mid)
    return hi


@pytest.mark.parametrize("z, rounds, delta", [(1.0, 1, 1e-5), (1.0, 10, 1e-5), (2.0, 30, 1e-6), (0.5, 3, 1e-3)])
def test_epsilon_is_the_rdp_bound_worked_out_by_hand(z, rounds, delta):
    assert gaussian_epsilon(z, rounds, delta) == pytest.approx(rdp_epsilon_by_hand(z, rounds, delta), rel=1e-9)


@pytest.mark.parametrize("z, rounds", [(1.0, 1), (1.0, 10), (2.0, 30), (4.0, 100)])
def test_epsilon_bounds_the_exact_gaussian_epsilon_and_is_close_to_it(z, rounds):
    exact = exact_gaussian_epsilon(z, rounds, 1e-5)
    bound = gaussian_epsilon(z, rounds, 1e-5)
    assert exact <= bound <= 1.35 * exact  # RDP is a valid, slightly loose bound


def test_epsilon_grows_with_rounds_shrinks_with_noise_and_has_its_edge_cases():
    assert gaussian_epsilon(1.0, 10, 1e-5) > gaussian_epsilon(1.0, 1, 1e-5)
    assert gaussian_epsilon(2.0, 10, 1e-5) < gaussian_epsilon(1.0, 10, 1e-5)
    assert gaussian_epsilon(1.0, 10, 1e-3) < gaussian_epsilon(1.0, 10, 1e-5)
    assert gaussian_epsilon(0.0, 3, 1e-5) == math.inf and gaussian_epsilon(1.0, 0, 1e-5) == 0.0
    with pytest.raises(ValueError):
        gaussian_epsilon(1.0, 3, 0.0)


def test_dp_gaussian_reports_its_accounting():
    report = DPGaussian(clip=0.5, noise_multiplier=1.0, delta=1e-6).accounting(20)
    assert report["delta"] == 1e-6 and report["sensitivity"] == 0.5 and report["rounds"] == 20
    assert report["per_round"] == pytest.approx(rdp_epsilon_by_hand(1.0, 1, 1e-6))
    assert report["run"] == pytest.approx(rdp_epsilon_by_hand(1.0, 20, 1e-6))
    assert DPGaussian(noise_multiplier=0.0).accounting(5)["run"] is None  # no noise: no finite bound


def test_every_dp_run_summary_has_epsilon(tmp_path):
    sc = tiny_scenario(**{"rounds": 3, "privacy": {
        "curious": 1, "victims": 1, "rounds": [1], "attack": {"name": "inverting_gradients",
                                                              "args": {"iterations": 2, "restarts": 1}},
        "defense": {"name": "dp_gaussian", "args": {"clip": 1.0, "noise_multiplier": 2.0, "delta": 1e-4}}}})
    summary, run_dir = fedsim.run(sc, out=tmp_path / "run", progress=False)
    eps = summary["privacy"]["epsilon"]
    assert eps["run"] == pytest.approx(rdp_epsilon_by_hand(2.0, 3, 1e-4))
    assert eps["per_round"] == pytest.approx(rdp_epsilon_by_hand(2.0, 1, 1e-4))
    assert summary["privacy"]["defense_params"]["delta"] == 1e-4
    plain = tiny_scenario(**{"rounds": 1, "privacy": dict(sc["privacy"], defense={"name": "none", "args": {}})})
    assert "epsilon" not in fedsim.run(plain, out=tmp_path / "plain", progress=False)[0]["privacy"]
