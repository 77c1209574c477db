"""The one worked input of every algorithm's docstring example (the doctests run in
``tests/test_docstrings.py``).

A peer holds a head for ``C = 2`` classes over ``D = 2`` features (``[C, D+1]``, row
``c`` = class ``c``'s two weights and its bias). Its own head is the identity, which
classifies the toy data perfectly: class 0 lies along the first feature, class 1
along the second. It received six heads: four honest neighbours within 0.1 per entry
of its own, and two Byzantine copies of one outlier (sign flipped and scaled, so it
predicts the wrong class everywhere). Every head starts the round from zero
(``previous_head``), so a head is also its update.

>>> own, received = example_heads()
>>> own
tensor([[1., 0., 0.],
        [0., 1., 0.]])
>>> received.shape
torch.Size([6, 2, 3])
>>> received[4]
tensor([[-5.,  5.,  5.],
        [ 5., -5.,  5.]])
"""
from __future__ import annotations

import torch

from fedsim.api import AttackerView, PeerContext, VictimUpdate

__all__ = ["example_heads", "example_data", "example_context", "example_view", "example_update", "rounded"]


def example_heads() -> tuple[torch.Tensor, torch.Tensor]:
    """``(own [2, 3], received [6, 2, 3])``: rows 0-3 of ``received`` are honest, rows 4
    and 5 are the same outlier."""
    own = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    honest = torch.tensor([[[1.1, 0.0, 0.1], [0.0, 0.9, 0.0]],
                           [[0.9, 0.1, 0.0], [0.1, 1.1, -0.1]],
                           [[1.0, -0.1, 0.0], [0.0, 1.0, 0.1]],
                           [[1.0, 0.0, -0.1], [-0.1, 1.0, 0.0]]])
    outlier = torch.tensor([[-5.0, 5.0, 5.0], [5.0, -5.0, 5.0]])
    return own, torch.cat([honest, outlier.expand(2, -1, -1)])


def rounded(values: torch.Tensor, decimals: int = 2) -> torch.Tensor:
    """``values`` rounded to ``decimals`` places, without negative zeros (what the
    examples print, so that rounding noise does not show).

    >>> rounded(torch.tensor([0.123456, -1e-9]))
    tensor([0.1200, 0.0000])
    """
    return values.round(decimals=decimals) + 0.0


def example_data() -> tuple[torch.Tensor, torch.Tensor]:
    """``(features [4, 2], labels [4])``: two samples of each class."""
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.2, 0.8]])
    return features, torch.tensor([0, 1, 0, 1])


def example_context(round_: int = 1) -> PeerContext:
    """What peer 0 knows when it merges :func:`example_heads`: the toy data as its
    training and local test set, both classes familiar, senders 1-6 each claiming two
    classes, every head started from zero, a generator seeded with 0."""
    features, labels = example_data()
    own, _ = example_heads()
    return PeerContext(peer_id=0, round=round_, test_features=features, test_labels=labels,
                       classes=torch.tensor([0, 1]), n_classes=2, rng=torch.Generator().manual_seed(0),
                       loss="linear", train_features=features, train_labels=labels,
                       previous_head=torch.zeros_like(own), sender_ids=torch.arange(1, 7),
                       claimed_num_classes=torch.full((6,), 2), state={})


def example_view() -> AttackerView:
    """The same round seen by an omniscient attacker that controls peers 5 and 6, which
    both send to peer 0: it observes the five honest heads (peer 0's own and the four
    honest rows of :func:`example_heads`, ids 0-4); its own peers trained honestly
    (their heads are honest rows 0 and 1) from zero; generator seeded with 0."""
    own, received = example_heads()
    honest = torch.cat([own.unsqueeze(0), received[:4]])
    return AttackerView(round=1, byzantine_ids=[5, 6], receivers={5: [0], 6: [0]}, observed=honest,
                        observed_ids=[0, 1, 2, 3, 4], own_heads=received[:2].clone(),
                        rng=torch.Generator().manual_seed(0), n_peers=7, n_classes=2,
                        previous_heads=torch.zeros(2, 2, 3), honest_claimed_classes={5: 2, 6: 2})


def example_update() -> VictimUpdate:
    """What a curious neighbour observes of one SGD step (``lr = 1``, softmax loss) that
    its victim took from a zero head on one private sample, ``[0.9, 0.1]`` of class 0
    (the third sample of :func:`example_data`). The "backbone" is the identity, so an
    image is its feature vector (``image_shape = (2,)``)."""
    features, labels = example_data()
    start = torch.zeros(2, 3)
    x1 = torch.cat([features[2], torch.ones(1)])          # [x, 1]: weights and bias
    gradient = torch.outer(torch.softmax(start @ x1, 0) - torch.eye(2)[labels[2]], x1)
    return VictimUpdate(start_head=start, end_head=start - gradient, local_steps=1, batch_size=1, lr=1.0,
                        optimizer="sgd", loss="linear", n_classes=2, image_shape=(2,))
