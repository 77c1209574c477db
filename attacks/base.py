"""The Byzantine-attack interface, :class:`fedsim.api.Attack` (re-exported here with the
data it sees and returns), and helpers for attacks that send one head to every receiver."""
from __future__ import annotations

from fedsim.api import Attack, AttackerView, EvaluationSet, PoisonedData

__all__ = ["Attack", "AttackerView", "EvaluationSet", "PoisonedData", "send_to_all", "send_trained"]


def send_to_all(view: AttackerView, per_sender: dict) -> dict:
    """The same head from each sender to every one of its receivers."""
    return {(s, r): per_sender[s] for s in view.byzantine_ids for r in view.receivers.get(s, [])}


def send_trained(view: AttackerView) -> dict:
    """Each Byzantine peer sends the head it trained (on its possibly poisoned data) to
    every receiver, as an honest peer would."""
    return send_to_all(view, {s: view.own_head(s) for s in view.byzantine_ids})
