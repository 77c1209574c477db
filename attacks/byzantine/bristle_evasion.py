"""An adaptive attack aimed at Bristle's class-wise integration (this project's design)."""
from __future__ import annotations

from typing import Optional

import torch

from attacks.base import Attack
from fedsim import functional as F
from fedsim.params import Interval, Options
from fedsim.registry import register

FOREIGN_MODES = ("permute", "negate")


def estimate_familiar(head: torch.Tensor, familiar_count: Optional[int] = None,
                      reference: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Boolean ``[C]``: the classes the owner of ``head [C, D+1]`` seems to hold.

    The score of class ``c`` is, with a ``reference`` head (what the owner's head
    looked like before its local training; the attack passes its own head at the
    start of the round), the row's move ``||head_c - reference_c||``: local training
    moves the rows of held classes only (FedRS's restricted softmax leaves the others
    untouched; plain softmax moves them far less). Without a reference it is the
    bias: training on a class raises its bias (softmax: ``dL/db_c = mean(p_c - [y =
    c])`` is negative only for classes in the batch; the L2-SVM pushes absent
    classes' logits to -1); that rule only works from a uniform initial head, since
    from a pre-trained head (``head_init: public``) the biases mostly reflect that
    head.

    The held classes are the ``familiar_count`` highest scores, or without a count
    those above the mean score. Ties go to the lower class id. At least one class is
    always familiar.
    """
    if reference is not None:
        score = F.distances_to(reference, head)
    else:
        score = head[:, -1].double()
    n_classes = score.shape[0]
    mask = torch.zeros(n_classes, dtype=torch.bool)
    if familiar_count is not None:
        k = min(max(int(familiar_count), 1), n_classes)
        order = sorted(range(n_classes), key=lambda c: (-float(score[c]), c))
        mask[order[:k]] = True
        return mask
    mask = score > score.mean()
    if not mask.any():
        mask[int(torch.argmax(score))] = True
    return mask


def evade_head(receiver_head: torch.Tensor, familiar: torch.Tensor, foreign_mode: str = "permute",
               scale: float = 1.0, noise_std: float = 0.0,
               rng: Optional[torch.Generator] = None) -> torch.Tensor:
    """The crafted head for one receiver: its familiar rows copied exactly, its foreign
    rows poisoned.

    ``permute``: foreign rows (weights and bias together) rotate one place among the
    foreign classes (class ``f_k`` gets the row of ``f_{k+1}``), so on any input the
    foreign logits are the same numbers under other names: every prediction of a
    familiar class is unchanged (familiar F1 exactly equal to the receiver's own), and
    every input of a foreign class the receiver's head recognised is now given another
    foreign label. With one foreign class nothing can rotate and ``negate`` is used.
    ``negate``: foreign weights become ``-scale * w`` (biases kept). ``noise_std`` adds
    Gaussian noise to the foreign rows only.
    """
    if foreign_mode not in FOREIGN_MODES:
        raise ValueError(f"foreign_mode must be one of {', '.join(FOREIGN_MODES)}, not {foreign_mode!r}")
    out = receiver_head.clone()
    foreign = torch.nonzero(~familiar).flatten()
    if foreign.numel() == 0:
        return out
    if foreign_mode == "permute" and foreign.numel() >= 2:
        out[foreign] = receiver_head[torch.roll(foreign, -1)]
    else:
        out[foreign, :-1] = -scale * receiver_head[foreign, :-1]
    if noise_std > 0:
        noise = torch.randn(foreign.numel(), out.shape[1], generator=rng, dtype=out.dtype)
        out[foreign] += noise_std * noise
    return out


@register("attacks", "bristle_evasion")
class BristleEvasion(Attack):
    """Bristle evasion: copy the receiver's familiar rows exactly, poison its foreign rows.
    An adaptive attack on Bristle (Verbraeken, de Vos, Pouwelse 2021, arXiv:2110.11006);
    this project's own design, not from a paper.

    Bristle (as a receiver ``r``) (a) keeps only the received heads nearest to its own
    (the prioritizer's near third), (b) scores each sender per familiar class by the F1
    of the sender's head on ``r``'s local test set of the classes ``r`` holds, and
    (c) integrates the classes ``r`` does not hold (foreign classes) weighted by the
    sender's summed familiar score. The attack exploits that foreign rows are trusted
    because of familiar ones. For every receiver ``r`` whose head it observed, each
    Byzantine sender sends a head that

    1. starts from ``r``'s own head, so its distance to ``r`` is only what step 3
       changes (in the near third as long as ``r``'s foreign rows are small next to how
       much honest neighbours differ);
    2. keeps ``r``'s familiar rows exactly, so the familiar scores equal ``r``'s own
       (with ``foreign_mode="permute"`` the familiar predictions, hence F1, are
       provably unchanged, see :func:`evade_head`);
    3. poisons the foreign rows: ``permute`` rotates whole foreign rows among foreign
       classes so every foreign class inherits another one's detector; ``negate`` flips
       foreign weights (times ``scale``).

    Parameters
    ----------
    foreign_mode : {"permute", "negate"}, default "permute"
        How the foreign rows are poisoned (with one foreign class, ``negate``).
    scale : float > 0, default 1.0
        Factor of the negated foreign weights.
    familiar_count : int >= 1, default None
        How many classes the receiver is taken to hold; ``None``: as many as the sender
        holds (``view.honest_claimed_classes``), else those above the mean move.
    claim_classes : int >= 1, default None
        How many classes every Byzantine peer claims to hold (Bristle's phi), e.g. a
        large count to weigh more; ``None`` claims the truth.
    noise_std : float >= 0, default 0.0
        Gaussian noise added to the foreign rows, so messages to different receivers
        are never exact copies.

    Notes
    -----
    ``r``'s familiar classes are estimated from its head (see :func:`estimate_familiar`):
    the rows that moved most from the sender's own head at the start of the round;
    where the view has no previous heads, by the bias rule. (The bias rule alone fails
    from a pre-trained head: in ``scenarios/byzantine_grid.yaml`` it marked 7 of 10
    classes familiar, only 2.8 of a receiver's 4 among them, so the attack rotated rows
    the receiver holds and Bristle's F1 check caught it.) Receivers whose head was not
    observed get the sender's own honestly trained head.

    References
    ----------
    .. [1] J. Verbraeken, M. de Vos, J. Pouwelse, "Bristle: decentralized federated
       learning in Byzantine, non-i.i.d. environments", arXiv:2110.11006, 2021 (the
       defense attacked).

    Examples
    --------
    >>> from fedsim.examples import example_view, rounded
    >>> view = example_view()  # peers 5 and 6 attack peer 0; they observe the 5 honest heads
    >>> BristleEvasion(familiar_count=1).craft(view)[(5, 0)]  # class 1 foreign: negated
    tensor([[ 1.,  0.,  0.],
            [-0., -1.,  0.]])
    """

    name = "bristle_evasion"
    parameters = {"foreign_mode": Options(*FOREIGN_MODES), "scale": Interval(float, 0, None, closed="neither"),
                  "familiar_count": [None, Interval(int, 1, None)], "claim_classes": [None, Interval(int, 1, None)],
                  "noise_std": Interval(float, 0, None)}

    def __init__(self, foreign_mode: str = "permute", scale: float = 1.0, familiar_count: Optional[int] = None,
                 claim_classes: Optional[int] = None, noise_std: float = 0.0):
        self.foreign_mode, self.scale, self.familiar_count = foreign_mode, float(scale), familiar_count
        self.claim_classes, self.noise_std = claim_classes, float(noise_std)

    @staticmethod
    def check_run(args, facts):
        count = args["familiar_count"]
        if facts.n_classes is not None and count is not None and count > facts.n_classes:
            return [("familiar_count", f"must be at most {facts.n_classes}, the dataset's number of classes")]
        return []

    def claimed_num_classes(self, sender, true_count):
        return self.claim_classes if self.claim_classes is not None else true_count

    def estimate_args(self, view, sender) -> tuple:
        """``(familiar_count, reference)`` for :func:`estimate_familiar`."""
        if view.previous_heads is None:
            return self.familiar_count, None
        count = self.familiar_count
        if count is None:
            count = view.honest_claimed_classes.get(sender)
        return count, view.previous_heads[view.byzantine_ids.index(sender)]

    def craft(self, view):
        out = {}
        for s in view.byzantine_ids:
            for r in view.receivers.get(s, []):
                head = view.observed_by(r)
                if head is None:
                    out[(s, r)] = view.own_head(s)
                    continue
                familiar = estimate_familiar(head, *self.estimate_args(view, s))
                out[(s, r)] = evade_head(head, familiar, self.foreign_mode, self.scale,
                                         self.noise_std, view.rng)
        return out
