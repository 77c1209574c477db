"""The Byzantine-attack interface."""
from __future__ import annotations

import torch

from fedsim.engine.messages import AttackerView


class Attack:
    """A Byzantine attack: crafts what each Byzantine sender tells each receiver.

    ``craft(view)`` returns ``{(sender, receiver): head [C, D+1]}`` for every pair in
    ``view.receivers``; a missing pair means that sender sends nothing to that
    receiver. Data-poisoning attacks set ``poisons_data`` and override
    :meth:`poison`; the engine then trains the Byzantine peers on the poisoned
    data and, by default, they send the heads they trained.
    """

    name = "attack"
    poisons_data = False

    def craft(self, view: AttackerView) -> dict:
        return send_to_all(view, {s: view.own_head(s) for s in view.byzantine_ids})

    def poison(self, images: torch.Tensor, labels: torch.Tensor,
               n_classes: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Change a Byzantine peer's training data (images ``[m, ...]``, labels ``[m]``)."""
        return images, labels

    def claimed_num_classes(self, sender: int, true_count: int) -> int:
        """How many classes ``sender`` says it holds (Bristle's phi); honest by default."""
        return true_count

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def send_to_all(view: AttackerView, per_sender: dict) -> dict:
    """The same head from each sender to every one of its receivers."""
    return {(s, r): per_sender[s] for s in view.byzantine_ids for r in view.receivers.get(s, [])}
