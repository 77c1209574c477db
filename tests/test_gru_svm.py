"""GRU-SVM (Agarap 2017): the l2svm head's objective 0.5||W||^2 + C sum max(0, 1 - t z)^2
(per mini-batch, divided by its size) against hand-worked numbers and autograd, the gru
backbone against the GRU recurrence written out (Cho et al. 2014, PyTorch's gate
layout), the sequences view of the image datasets, and scenarios/gru_svm.yaml end to end."""
from pathlib import Path

import pytest
import torch
import yaml

from fedsim.cli import main
from fedsim.data.datasets import load_dataset
from fedsim.models.backbones import build_backbone
from fedsim.models.heads import L2SVMHead, get_head, head_logits

ROOT = Path(__file__).resolve().parent.parent


def test_l2svm_objective_by_hand():
    # Head W = [[1, 0], [0, 2]], b = [0.5, -1]; one sample x = [1, 1], y = 1, B = 1.
    # z = W x + b = [1.5, 1]; t = [-1, +1]; hinges max(0, 1 + 1.5) = 2.5, max(0, 1 - 1) = 0.
    # C = 0.5: data term 0.5 * 2.5^2 = 3.125; penalty 0.5 * (1 + 4) = 2.5 (bias exempt).
    head = torch.tensor([[1.0, 0.0, 0.5], [0.0, 2.0, -1.0]], dtype=torch.float64)
    x, y = torch.tensor([[1.0, 1.0]], dtype=torch.float64), torch.tensor([1])
    loss, grad = L2SVMHead().loss_and_grad(head, x, y)
    assert loss.item() == pytest.approx(3.125 + 2.5)
    # dz_0 = -2 C t_0 * 2.5 = 2.5, dz_1 = 0; grad = dz^T [x, 1] + [W, 0]
    assert torch.allclose(grad, torch.tensor([[2.5 + 1.0, 2.5, 2.5], [0.0, 2.0, 0.0]], dtype=torch.float64))
    # Prediction by the largest margin, not by sign: class 0 (1.5 > 1).
    assert L2SVMHead().predict(head_logits(head, x)).tolist() == [0]


@pytest.mark.parametrize("C", [0.5, 2.0])
def test_l2svm_gradient_equals_autograd(C):
    g = torch.Generator().manual_seed(7)
    heads = torch.randn(3, 5, 9, generator=g, dtype=torch.float64)     # 3 stacked heads, 5 classes, D = 8
    x = torch.randn(3, 16, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (3, 16), generator=g)
    loss, grad = get_head("l2svm", C=C).loss_and_grad(heads, x, y)
    leaf = heads.clone().requires_grad_(True)
    z = head_logits(leaf, x)
    t = 2.0 * torch.nn.functional.one_hot(y, 5) - 1.0
    reference = C * (1 - t * z).clamp(min=0).pow(2).sum(-1).mean(-1) + 0.5 * leaf[..., :-1].pow(2).sum((-2, -1)) / 16
    reference.sum().backward()
    assert torch.allclose(loss, reference.detach(), atol=1e-6)
    assert torch.allclose(grad, leaf.grad, atol=1e-6)


def test_gru_features_are_the_last_state_of_the_recurrence():
    torch.manual_seed(0)
    net = build_backbone("gru", (5, 3), hidden=4).eval()
    x = torch.randn(2, 5, 3)
    gru = net.gru
    W_i, W_h, b_i, b_h = gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0
    h = torch.zeros(2, 4)
    with torch.no_grad():
        for step in range(5):
            gi, gh = x[:, step] @ W_i.T + b_i, h @ W_h.T + b_h
            r = torch.sigmoid(gi[:, :4] + gh[:, :4])
            u = torch.sigmoid(gi[:, 4:8] + gh[:, 4:8])
            n = torch.tanh(gi[:, 8:] + r * gh[:, 8:])
            h = (1 - u) * n + u * h
        assert net.feature_dim == 4 and torch.allclose(net(x), h, atol=1e-6)
    with pytest.raises(ValueError, match="view: sequences"):
        build_backbone("gru", (1, 8, 8))


def test_sequences_view_is_the_rows_of_each_image():
    images = load_dataset("digits", seed=0)
    rows = load_dataset("digits", seed=0, view="sequences")
    assert rows.image_shape == (8, 8) and images.image_shape == (1, 8, 8)
    assert torch.equal(rows.train_images, images.train_images[:, 0]) and torch.equal(rows.test_labels, images.test_labels)
    assert torch.equal(rows.train_images[5, 3], images.train_images[5, 0, 3])   # step 3 = pixel row 3


def test_scenario_runs_end_to_end_offline(tmp_path):
    scenario = yaml.safe_load((ROOT / "scenarios" / "gru_svm.yaml").read_text())
    assert (scenario["model"]["backbone"], scenario["model"]["head"]) == ("gru", "l2svm")
    path = tmp_path / "gru_svm.yaml"
    path.write_text(yaml.safe_dump(scenario))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--no-progress", "--set", "rounds=2",
                 "--set", "model.pretrain.epochs=2", "--set", "topology.n_peers=6"]) == 0
    assert (out / "metrics.jsonl").read_text().count("accuracy_mean") == 2
