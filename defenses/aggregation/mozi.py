"""Mozi: distance filter, then performance filter, then blend with the own head."""
from __future__ import annotations

from defenses.base import Defense
from defenses.aggregation.loss_filters import (blend_with_own, check_rho_alpha, drop_nonfinite,
                                   require_training_data, two_stage_accepted)
from fedsim.registry import register


@register("defenses", "mozi")
class Mozi(Defense):
    """Mozi (Guo et al. 2021, "Towards Byzantine-resilient Learning in Decentralized
    Systems", arXiv:2002.08569).

    Peer ``i`` with own head ``x_i`` and received heads ``x_j`` (non-finite ones
    dropped first):

    1. distance stage: ``N_s = argmin_{S, |S| = ceil(rho k)} sum_{j in S} ||x_i - x_j||``,
       i.e. the ``ceil(rho k)`` received heads nearest to ``x_i``;
    2. performance stage: ``N_r = {j in N_s : l(x_j; xi_i) <= l(x_i; xi_i)}`` where
       ``l`` is the head's mean loss and ``xi_i`` the peer's own training samples
       (all of them: ``ctx.train_features``, ``ctx.train_labels``);
    3. ``merged = alpha x_i + (1 - alpha) mean_{j in N_r} x_j``.

    Choices: when ``N_r`` is empty the peer keeps its own head (Mozi has no
    fall-back; its successor UBAR, registered as ``ubar``, keeps the best candidate
    instead and evaluates a random mini-batch). ``ceil`` makes ``rho k`` an integer
    (never more than the honest neighbours when a fraction ``rho`` is honest).

    Defaults: ``rho = 0.5`` (the paper sets rho to the share of honest neighbours;
    0.5 assumes at most half are Byzantine), ``alpha = 0.5``.
    """

    name = "mozi"
    needs_context = True

    def __init__(self, rho: float = 0.5, alpha: float = 0.5):
        self.rho, self.alpha = check_rho_alpha(rho, alpha)

    def aggregate(self, own, received, ctx=None):
        features, labels = require_training_data(ctx, "mozi")
        received = drop_nonfinite(received)
        accepted = two_stage_accepted(own, received, features, labels, ctx.loss, self.rho,
                                      keep_best_if_none=False)
        return blend_with_own(own, received[accepted], self.alpha)
