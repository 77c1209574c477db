"""Sybil churn: Byzantine identities that leave and come back under fresh ids."""
from __future__ import annotations

from attacks.base import Attack
from fedsim.params import Interval, Options
from fedsim.registry import create, register


@register("attacks", "sybil_churn")
class SybilChurn(Attack):
    """Sybil churn: the Byzantine peers are a pool of identities (Douceur, "The Sybil
    attack", IPTPS 2002) that the attacker brings online ``concurrent`` at a time, each
    for one spell of ``spell_s`` simulated seconds and never again: when a spell ends the
    identity leaves and a fresh one joins in its place, so a defense that learns about a
    sender over time (FoolsGold's history, a reputation) keeps meeting strangers. Fresh
    ids exist only where the topology has Byzantine nodes: once the pool is spent the
    attack stops ("where the topology allows", issue 13). What each identity sends is
    the ``attack`` it wraps (default sign_flip).

    Identity ``j`` (the ``j``-th Byzantine id, ascending) is online during
    ``[floor(j / concurrent) * spell_s, (floor(j / concurrent) + 1) * spell_s)``. Runs
    with a ``network:`` section (its clock); without one every identity is always online.

    Parameters
    ----------
    attack : {"sign_flip", "gaussian", "alie", "ipm"}, default "sign_flip"
        The attack whose messages the identities send (with its defaults).
    spell_s : float > 0, default 5.0
        Simulated seconds each identity stays online.
    concurrent : int >= 1, default 1
        Identities online at once.

    References
    ----------
    .. [1] J. R. Douceur, "The Sybil attack", IPTPS 2002.
    .. [2] C. Fung, C. J. M. Yoon, I. Beschastnikh, "The limitations of federated
       learning in Sybil settings" (FoolsGold), RAID 2020.

    Examples
    --------
    >>> SybilChurn(spell_s=2.0, concurrent=2).online_spells([7, 3, 9])
    {3: [(0.0, 2.0)], 7: [(0.0, 2.0)], 9: [(2.0, 4.0)]}
    """

    name = "sybil_churn"
    parameters = {"attack": Options("sign_flip", "gaussian", "alie", "ipm"),
                  "spell_s": Interval(float, 0, None, closed="neither"), "concurrent": Interval(int, 1, None)}

    def __init__(self, attack: str = "sign_flip", spell_s: float = 5.0, concurrent: int = 1):
        self.attack, self.spell_s, self.concurrent = attack, float(spell_s), int(concurrent)
        self._inner = create("attacks", attack)

    def craft(self, view):
        return self._inner.craft(view)

    def online_spells(self, byzantine_ids):
        slots = {peer: j // self.concurrent for j, peer in enumerate(sorted(int(b) for b in byzantine_ids))}
        return {peer: [(slot * self.spell_s, (slot + 1) * self.spell_s)] for peer, slot in slots.items()}
