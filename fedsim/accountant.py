"""Privacy accounting of the Gaussian mechanism that ``dp_gaussian`` runs once a round.

Every round an honest peer releases ``clip(delta) + N(0, (z * clip)^2 I)`` (``z`` the
noise multiplier), one message to all its neighbours. Neighbouring inputs differ by one
*record*, here the peer's whole local training data of the run (add/remove, user-level
DP as in DP-FedAvg, McMahan, Ramage, Talwar, Zhang 2018): without it the peer's update is
zero, with it at most ``clip`` in L2 norm, so the L2 sensitivity is ``clip`` and one
release is the Gaussian mechanism with noise ``z`` times its sensitivity. There is no
sampling amplification (every round releases the whole update, sampling rate 1).

Composition over ``rounds`` releases uses Renyi DP (Mironov 2017, "Renyi differential
privacy", CSF): the Gaussian mechanism is ``(alpha, alpha / (2 z^2))``-RDP, RDP adds up
over releases, and ``(alpha, rho)``-RDP gives ``(epsilon, delta)``-DP with

    epsilon = min_alpha  rho + log((alpha - 1) / alpha) - (log delta + log alpha) / (alpha - 1)

(Balle, Barthe, Gaboardi, Hsu, Sato 2020, "Hypothesis testing interpretations and Renyi
differential privacy", AISTATS, Thm. 21), over Opacus's default orders. The arithmetic is
Opacus's RDP accountant (``opacus.accountants.analysis.rdp``, Meta's DP library), not a
copy of it.
"""
from __future__ import annotations

import math
import warnings

ACCOUNTANT = "Renyi DP (opacus.accountants.analysis.rdp), sampling rate 1"
# Opacus's RDPAccountant.DEFAULT_ALPHAS (opacus/accountants/rdp.py, line 22).
ORDERS = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))


def gaussian_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """``epsilon`` of ``rounds`` adaptive releases of the Gaussian mechanism whose noise
    standard deviation is ``noise_multiplier`` times its L2 sensitivity, at ``delta``.
    ``inf`` without noise (or for a noise so small that no order gives a finite bound);
    ``0`` for no release."""
    if rounds < 0 or not 0 < delta < 1 or noise_multiplier < 0:
        raise ValueError(f"need rounds >= 0, 0 < delta < 1, noise_multiplier >= 0; got rounds={rounds}, "
                         f"delta={delta}, noise_multiplier={noise_multiplier}")
    if rounds == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
    rdp = compute_rdp(q=1.0, noise_multiplier=noise_multiplier, steps=rounds, orders=list(ORDERS))
    with warnings.catch_warnings():
        # For tiny noise the best order is the smallest (1.1): the bound is valid but loose.
        warnings.filterwarnings("ignore", message="Optimal order is the smallest alpha")
        epsilon, _ = get_privacy_spent(orders=list(ORDERS), rdp=rdp, delta=delta)
    return float(epsilon)
