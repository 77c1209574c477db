"""Gradient inversion: analytic feature recovery, label inference, the l1-ball projection,
the differentiable replay, DLG, the generator and the attacks' contracts."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from torch import nn

import attacks  # noqa: F401  (registers the inversions)
from attacks.inversion.analytic import recover_features
from attacks.inversion.base import dummy_delta, replay_local_training
from attacks.inversion.generator import Generator, train_generator
from attacks.inversion.gifd import project_l1_ball
from attacks.inversion.labels import infer_labels, labels_per_step
from attacks.inversion.matching import cosine_distance, total_variation
from fedsim.api import Reconstruction, VictimUpdate
from fedsim.privacy_metrics import label_multiset_accuracy, match_images, score_reconstruction
from fedsim.models.backbones import build_backbone
from fedsim.registry import create, names


# ----------------------------------------------------------------------- references

def reference_training(start_head, features, labels, lr, optimizer="sgd", loss="linear", weight_decay=0.0):
    """The victim's loop written independently: autograd on the textbook loss and
    torch.optim (whose Adam/SGD with weight_decay add wd * H to the gradient, as the engine)."""
    head = start_head.clone().requires_grad_(True)
    opt_cls = torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam
    opt = opt_cls([head], lr=lr, weight_decay=weight_decay)
    for step in range(features.shape[0]):
        opt.zero_grad()
        logits = features[step] @ head[:, :-1].T + head[:, -1]
        if loss == "linear":
            value = F.cross_entropy(logits, labels[step])
        else:   # Agarap's L2-SVM per sample: C = 0.5, weight penalty 0.5 ||W||^2 / B
            t = 2.0 * F.one_hot(labels[step], head.shape[0]) - 1.0
            value = 0.5 * torch.clamp(1 - t * logits, min=0).pow(2).sum(dim=1).mean() \
                + 0.5 * head[:, :-1].pow(2).sum() / len(labels[step])
        value.backward()
        opt.step()
    return head.detach()


def tiny_conv_backbone(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 12), nn.ReLU())
    return net.eval()


def make_update(features, labels, lr=0.1, optimizer="sgd", loss="linear", image_shape=None, seed=0, n_classes=5):
    g = torch.Generator().manual_seed(seed)
    start = torch.randn(n_classes, features.shape[-1] + 1, generator=g) * 0.05
    end = reference_training(start, features, labels, lr, optimizer, loss)
    steps, batch = labels.shape
    return VictimUpdate(start, end, steps, batch, lr, optimizer, loss, n_classes,
                        image_shape or (features.shape[-1],))


# ------------------------------------------------------------------------- analytic

@pytest.mark.parametrize("loss,steps", [("linear", 1), ("linear", 4), ("l2svm", 1)])
def test_analytic_recovers_one_samples_features(steps, loss):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(16, generator=g, dtype=torch.float64) + 0.1
    start = torch.randn(6, 17, generator=g, dtype=torch.float64) * 0.1
    features = x.expand(steps, 1, 16)        # the same sample every step
    labels = torch.full((steps, 1), 3)
    end = reference_training(start, features, labels, lr=0.3, loss=loss)
    if loss == "l2svm":
        # The L2-SVM's weight penalty (W / B, bias exempt) shrinks the weights by (1 - lr / B)
        # in the step: an attacker who knows it removes that from the start head. Over several
        # steps the shrinkage weighs the steps' rank-one terms unequally in W but not in b,
        # so the recovery is exact for one step only.
        start = torch.cat([start[:, :-1] * (1 - 0.3 / 1), start[:, -1:]], dim=1)
    recovered = recover_features(start, end)
    assert (recovered - x).norm() / x.norm() < 1e-5


def test_analytic_with_weight_decay_and_float32():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(10, generator=g) + 0.1
    start = torch.randn(4, 11, generator=g) * 0.1
    end = reference_training(start, x.expand(3, 1, 10), torch.zeros(3, 1, dtype=torch.long), lr=0.5,
                             weight_decay=0.01)
    recovered = recover_features(start, end, lr=0.5, weight_decay=0.01, local_steps=3)
    assert (recovered - x).norm() / x.norm() < 1e-5
    # Ignoring the decay leaves a (here large, since H0 is not small) error: the correction matters.
    assert (recover_features(start, end) - x).norm() / x.norm() > 1e-3


def test_analytic_rejects_an_unchanged_bias():
    head = torch.randn(3, 5)
    with pytest.raises(ValueError, match="bias did not change"):
        recover_features(head, head.clone())


# --------------------------------------------------------------------------- replay

@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("loss", ["linear", "l2svm"])
def test_replay_equals_the_training_loop(optimizer, loss):
    g = torch.Generator().manual_seed(3)
    features = torch.rand(4, 5, 7, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 6, (4, 5), generator=g)
    start = torch.randn(6, 8, generator=g, dtype=torch.float64) * 0.1
    expected = reference_training(start, features, labels, 0.05, optimizer, loss, weight_decay=1e-3)
    replayed = replay_local_training(start, features, labels, 0.05, optimizer, loss, weight_decay=1e-3)
    assert torch.allclose(replayed, expected, rtol=1e-10, atol=1e-12)
    # One-hot soft labels are the hard labels.
    soft = F.one_hot(labels, 6).double()
    assert torch.allclose(replay_local_training(start, features, soft, 0.05, optimizer, loss, weight_decay=1e-3),
                          expected, rtol=1e-10, atol=1e-12)


def test_soft_label_gradient_is_the_expected_loss_gradient():
    # For soft labels p the replayed step must be the gradient of sum_y p_y loss(z, y).
    g = torch.Generator().manual_seed(4)
    features = torch.rand(1, 3, 4, generator=g, dtype=torch.float64)
    probs = torch.softmax(torch.randn(1, 3, 5, generator=g, dtype=torch.float64), -1)
    start = torch.randn(5, 5, generator=g, dtype=torch.float64)
    for loss_name in ("linear", "l2svm"):
        head = start.clone().requires_grad_(True)
        logits = features[0] @ head[:, :-1].T + head[:, -1]
        if loss_name == "linear":
            per_label = -torch.log_softmax(logits, -1)                       # [B, y]
        else:   # C = 0.5 and the weight penalty 0.5 ||W||^2 / B of Agarap's L2-SVM
            per_label = torch.stack([0.5 * torch.clamp(1 - (2.0 * F.one_hot(torch.full((3,), y), 5) - 1) * logits,
                                                       min=0).pow(2).sum(-1) for y in range(5)], dim=-1)
            per_label = per_label + 0.5 * head[:, :-1].pow(2).sum() / 3
        (probs[0] * per_label).sum(-1).mean().backward()
        replayed = replay_local_training(start, features, probs, 1.0, "sgd", loss_name)
        assert torch.allclose(start - replayed, head.grad, atol=1e-12)


def test_replay_is_differentiable_in_features_and_labels():
    g = torch.Generator().manual_seed(5)
    features = torch.rand(2, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    label_logits = torch.randn(2, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    start = torch.randn(4, 4, generator=g, dtype=torch.float64)
    for optimizer in ("sgd", "adam"):
        assert torch.autograd.gradcheck(
            lambda f, y: replay_local_training(start, f, torch.softmax(y, -1), 0.1, optimizer, "linear"),
            (features, label_logits))


# --------------------------------------------------------------------------- labels

# Not l2svm + adam: Adam's first step moves every bias by about -lr sign(g), and with the
# one-vs-rest hinge a class held by 1 of 4 samples has a positive bias gradient (-2(1 - z)
# from its sample, +2(1 + z) from each other one), so that update carries no label signal.
@pytest.mark.parametrize("loss,optimizer", [("linear", "sgd"), ("l2svm", "sgd"), ("linear", "adam")])
def test_labels_of_a_batch_of_distinct_labels(loss, optimizer):
    g = torch.Generator().manual_seed(6)
    features = torch.rand(1, 4, 9, generator=g)
    labels = torch.tensor([[7, 2, 9, 4]])
    update = make_update(features, labels, loss=loss, optimizer=optimizer, n_classes=10)
    assert infer_labels(update).tolist() == [2, 4, 7, 9]


def test_label_counts_over_several_steps():
    # 3 steps x 4 samples with repeated classes; near-uniform start head, small lr:
    # n_c = N/C - B G_c (softmax at uniform predictions) is close to the true counts.
    g = torch.Generator().manual_seed(7)
    features = torch.rand(3, 4, 6, generator=g) * 0.2
    labels = torch.tensor([[0, 0, 1, 3], [0, 1, 1, 4], [3, 3, 3, 0]])
    update = make_update(features, labels, lr=0.01, n_classes=6)
    assert infer_labels(update).tolist() == sorted(labels.flatten().tolist())


def test_labels_per_step_deals_round_robin():
    assert labels_per_step(torch.tensor([0, 1, 2, 3, 4, 5]), 2, 3).tolist() == [[0, 2, 4], [1, 3, 5]]


# ------------------------------------------------------------------------ l1 ball

def test_l1_projection_leaves_points_inside_unchanged():
    center = torch.tensor([1.0, -2.0, 0.5])
    x = center + torch.tensor([0.2, -0.3, 0.1])       # ||x - c||_1 = 0.6
    assert torch.equal(project_l1_ball(x, center, 0.6), x)
    assert torch.equal(project_l1_ball(x, center, 5.0), x)


def test_l1_projection_matches_a_grid_search_in_2d():
    # Brute force: the closest point of a 0.002-spaced grid inside the ball.
    axis = torch.arange(-1.5, 1.5 + 1e-9, 0.002, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    for point, radius in [((2.0, 0.5), 1.0), ((0.3, -1.7), 1.2), ((-0.9, -0.8), 0.5), ((3.0, 3.0), 1.0)]:
        x = torch.tensor(point, dtype=torch.float64)
        center = torch.tensor([0.1, -0.2], dtype=torch.float64)
        inside = grid[(grid - center).abs().sum(1) <= radius + 1e-12]
        brute = inside[((inside - x) ** 2).sum(1).argmin()]
        projected = project_l1_ball(x, center, radius)
        assert (projected - center).abs().sum() <= radius + 1e-9
        assert torch.allclose(projected, brute, atol=0.003)


def test_l1_projection_matches_scipy_minimize_and_batches():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(4, 6)) * 2
    centers = rng.normal(size=(4, 6))
    radii = np.array([0.5, 1.0, 2.0, 0.0])
    batched = project_l1_ball(torch.tensor(xs), torch.tensor(centers), torch.tensor(radii), batch_dims=1)
    for x, c, r, got in zip(xs, centers, radii, batched.numpy()):
        # min ||y - x||^2 s.t. ||y - c||_1 <= r, as a smooth LP-like problem over y = c + p - q, p, q >= 0.
        n = len(x)
        objective = lambda pq: np.sum((c + pq[:n] - pq[n:] - x) ** 2)
        res = minimize(objective, np.zeros(2 * n), method="SLSQP", bounds=[(0, None)] * (2 * n),
                       constraints=[{"type": "ineq", "fun": lambda pq: r - pq.sum()}],
                       options={"ftol": 1e-14, "maxiter": 500})
        expected = c + res.x[:n] - res.x[n:]
        assert np.allclose(got, expected, atol=1e-5)
        single = project_l1_ball(torch.tensor(x), torch.tensor(c), float(r)).numpy()
        assert np.allclose(single, got)
    # Radius 0 is the center itself.
    assert torch.allclose(batched[3], torch.tensor(centers[3]))


def test_l1_projection_validates():
    with pytest.raises(ValueError, match="same shape"):
        project_l1_ball(torch.zeros(3), torch.zeros(4), 1.0)
    with pytest.raises(ValueError, match="radius"):
        project_l1_ball(torch.ones(3), torch.zeros(3), -1.0)


# --------------------------------------------------------------------------- DLG

def test_dlg_recovers_one_sample_through_an_identity_backbone():
    g = torch.Generator().manual_seed(8)
    x = torch.rand(1, 1, 6, generator=g)
    update = make_update(x, torch.tensor([[2]]), lr=0.5, n_classes=4)
    backbone = build_backbone("identity", (6,))
    result = create("inversions", "dlg").reconstruct(update, backbone, rng=torch.Generator().manual_seed(1))
    assert result.images.shape == (1, 1, 6) and result.labels.tolist() == [[2]]
    assert (result.features - x).norm() / x.norm() < 1e-3


# ------------------------------------------------------------------- matching, TV

def test_cosine_distance_and_total_variation_by_hand():
    assert float(cosine_distance(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]))) == pytest.approx(1.0)
    assert float(cosine_distance(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0]))) == pytest.approx(0.0, abs=1e-6)
    image = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # |1-0| and |1-1| across (mean 0.5), |1-0| and |1-1| down (mean 0.5).
    assert float(total_variation(image, 2)) == pytest.approx(1.0)
    assert float(total_variation(torch.rand(3, 5), 1)) == 0.0


# ------------------------------------------------------------------------ generator

@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (8, 8)])
def test_generator_blocks_compose_to_the_forward(shape):
    torch.manual_seed(0)
    gen = Generator(shape, latent_dim=5, width=4).eval()
    z = torch.randn(3, 5)
    out = gen(z)
    assert out.shape == (3, *shape) and out.min() >= 0 and out.max() <= 1
    h = z
    for k in range(len(gen.blocks) + 1):
        assert torch.allclose(gen.forward_from(h, k), out)
        if k < len(gen.blocks):
            h = gen.blocks[k](h)


def test_generator_rejects_unsupported_shapes():
    with pytest.raises(ValueError, match="divisible by 4"):
        Generator((1, 10, 10))
    with pytest.raises(ValueError, match="single-channel"):
        Generator((3, 8, 8))


def test_train_generator_is_deterministic_and_leaves_global_rng_alone():
    images = torch.rand(40, 1, 8, 8)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = train_generator(images, latent_dim=4, epochs=2, seed=5, batch_size=16, width=4)
    after = torch.rand(1)
    b = train_generator(images, latent_dim=4, epochs=2, seed=5, batch_size=16, width=4)
    assert torch.equal(before, after)
    z = torch.randn(2, 4)
    assert torch.equal(a(z), b(z)) and not a.training


# -------------------------------------------------------------------------- score

def test_hungarian_pairing_matches_brute_force():
    g = torch.Generator().manual_seed(9)
    rec, true = torch.rand(5, 1, 3, 3, generator=g), torch.rand(5, 1, 3, 3, generator=g)
    rows, cols = match_images(rec, true)
    cost = ((rec.flatten(1)[:, None] - true.flatten(1)[None]) ** 2).mean(-1)
    best = min(itertools.permutations(range(5)), key=lambda p: sum(float(cost[i, p[i]]) for i in range(5)))
    assert list(rows) == list(range(5)) and list(cols) == list(best)


def test_label_multiset_accuracy_by_hand():
    # true {0, 0, 1, 2}, predicted {0, 1, 1, 2}: min counts 1 + 1 + 1 = 3 of 4.
    assert label_multiset_accuracy(torch.tensor([0, 1, 1, 2]), torch.tensor([2, 0, 1, 0])) == 0.75


def test_score_reconstruction_of_the_truth_is_perfect():
    g = torch.Generator().manual_seed(10)
    images, labels, feats = torch.rand(2, 3, 1, 8, 8, generator=g), torch.tensor([[1, 2, 3], [4, 5, 6]]), \
        torch.rand(2, 3, 5, generator=g)
    shuffled = torch.tensor([4, 0, 5, 1, 3, 2])
    rec = Reconstruction(images.reshape(6, 1, 8, 8)[shuffled].reshape(2, 3, 1, 8, 8),
                         labels.reshape(6)[shuffled].reshape(2, 3), feats.reshape(6, 5)[shuffled].reshape(2, 3, 5))
    scores = score_reconstruction(rec, images, labels, feats)
    assert scores["label_accuracy"] == 1.0 and scores["ssim_mean"] == pytest.approx(1.0)
    assert scores["feature_cosine_mean"] == pytest.approx(1.0) and scores["psnr_mean"] > 60


# ------------------------------------------------------------------------ attacks

def conv_update(steps=1, batch=2, seed=11):
    g = torch.Generator().manual_seed(seed)
    backbone = tiny_conv_backbone()
    images = torch.rand(steps, batch, 1, 8, 8, generator=g)
    labels = torch.randint(0, 5, (steps, batch), generator=g)
    with torch.no_grad():
        feats = backbone(images.reshape(-1, 1, 8, 8)).reshape(steps, batch, -1)
    return make_update(feats, labels, lr=0.5, image_shape=(1, 8, 8)), backbone, images


def test_registered_inversions():
    assert {"dlg", "inverting_gradients", "gan_latent", "gifd"} <= set(names("inversions"))


def test_inverting_gradients_lowers_the_matching_loss_and_keeps_images_boxed():
    update, backbone, _ = conv_update()
    attack = create("inversions", "inverting_gradients", iterations=60, restarts=1)
    result = attack.reconstruct(update, backbone, rng=torch.Generator().manual_seed(0))
    assert result.images.shape == (1, 2, 1, 8, 8) and result.features.shape == (1, 2, 12)
    assert result.images.min() >= 0 and result.images.max() <= 1
    start = torch.rand(1, 2, 1, 8, 8, generator=torch.Generator().manual_seed(0))   # its first draw

    def distance(images):
        with torch.no_grad():
            feats = backbone(images.reshape(-1, 1, 8, 8)).reshape(1, 2, -1)
        return float(cosine_distance(dummy_delta(update, feats, result.labels), update.observed_delta))

    assert distance(result.images) < 0.5 * distance(start)
    assert all(p.requires_grad for p in backbone.parameters())   # restored after the attack


@pytest.mark.parametrize("name", ["gan_latent", "gifd"])
def test_generative_attacks_prepare_their_generator_from_the_cache(name, tmp_path):
    from attacks.inversion.generator import CACHE_FORMAT, save_generator
    from fedsim.api import ArtifactCache
    public = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    cache = ArtifactCache(tmp_path, {"features": "abc", "shape": [1, 8, 8]})
    torch.manual_seed(0)
    stored = Generator((1, 8, 8), latent_dim=4, width=4).eval()
    save_generator(stored, cache.path("generators", seed=3, format=CACHE_FORMAT))
    prepared = create("inversions", name).prepare(public, cache, 3)   # found: loaded, not trained
    assert prepared.latent_dim == 4
    for key, value in stored.state_dict().items():
        assert torch.equal(prepared.state_dict()[key], value)
    assert cache.path("generators", seed=4, format=CACHE_FORMAT) != cache.path("generators", seed=3,
                                                                                 format=CACHE_FORMAT)


@pytest.mark.parametrize("name", ["dlg", "inverting_gradients"])
def test_attacks_without_a_prior_prepare_nothing(name):
    assert create("inversions", name).prepare(torch.rand(6, 1, 8, 8), None, 0) is None


@pytest.mark.parametrize("name", ["gan_latent", "gifd"])
def test_generative_attacks_need_a_generator_and_return_its_images(name):
    update, backbone, _ = conv_update(steps=2, batch=2)
    attack = create("inversions", name, **({"iterations": 20} if name == "gan_latent" else
                                            {"latent_iterations": 20, "stage_iterations": 5}))
    with pytest.raises(ValueError, match="generator"):
        attack.reconstruct(update, backbone)
    torch.manual_seed(0)
    generator = Generator((1, 8, 8), latent_dim=4, width=4).eval()
    result = attack.reconstruct(update, backbone, generator=generator, rng=torch.Generator().manual_seed(0))
    assert result.images.shape == (2, 2, 1, 8, 8) and result.labels.shape == (2, 2)
    assert result.images.min() >= 0 and result.images.max() <= 1
    with pytest.raises(ValueError, match="shape"):
        attack.reconstruct(update, backbone, generator=Generator((1, 28, 28), latent_dim=4, width=4))


def test_gifd_stages_never_do_worse_than_the_latent_search():
    # The best stage is chosen by matching loss and stage 0 is gan_latent's search with the
    # same draws, so GIFD's matching loss is at most gan_latent's.
    update, backbone, _ = conv_update(steps=1, batch=2, seed=12)
    torch.manual_seed(1)
    generator = Generator((1, 8, 8), latent_dim=4, width=4).eval()
    common = dict(lr=0.05, restarts=1, latent_weight=0.0)
    latent = create("inversions", "gan_latent", iterations=30, **common)
    gifd = create("inversions", "gifd", latent_iterations=30, stage_iterations=20, radius_fraction=0.5, **common)

    def distance(result):
        return float(cosine_distance(dummy_delta(update, result.features, result.labels), update.observed_delta))

    d_latent = distance(latent.reconstruct(update, backbone, generator, torch.Generator().manual_seed(0)))
    d_gifd = distance(gifd.reconstruct(update, backbone, generator, torch.Generator().manual_seed(0)))
    assert d_gifd <= d_latent + 1e-6


def test_victim_update_validates():
    head = torch.zeros(3, 5)
    ok = dict(start_head=head, end_head=head, local_steps=1, batch_size=1, lr=0.1, optimizer="sgd",
              loss="linear", n_classes=3, image_shape=(4,))
    VictimUpdate(**ok)
    for key, bad in [("end_head", torch.zeros(3, 4)), ("local_steps", 0), ("lr", 0.0), ("optimizer", "rmsprop"),
                     ("loss", "hinge"), ("n_classes", 4), ("image_shape", ())]:
        with pytest.raises(ValueError, match=key if key != "end_head" else "shape"):
            VictimUpdate(**{**ok, key: bad})


@pytest.mark.parametrize("image_shape", [(1, 8, 8), (8, 8), (64,)])
def test_score_reconstruction_by_hand(image_shape):
    # Four flat images at 0.2, 0.4, 0.6, 0.8; the reconstruction adds 0.1 to each (MSE 0.01 ->
    # PSNR 10 log10(1 / 0.01) = 20 dB), in reversed order, with one label wrong (3 of 4).
    levels = torch.tensor([0.2, 0.4, 0.6, 0.8])
    true = levels.view(4, *([1] * len(image_shape))).expand(4, *image_shape).reshape(2, 2, *image_shape)
    rec_images = (true.reshape(4, *image_shape).flip(0) + 0.1).reshape(2, 2, *image_shape)
    true_labels = torch.tensor([[0, 1], [2, 3]])
    rec_labels = torch.tensor([[3, 2], [1, 1]])      # reversed would be [3, 2, 1, 0]
    feats = torch.eye(4).reshape(2, 2, 4)
    rec = Reconstruction(rec_images, rec_labels, feats.reshape(4, 4).flip(0).reshape(2, 2, 4))
    scores = score_reconstruction(rec, true, true_labels, feats)
    assert scores["pairs"] == [[0, 3], [1, 2], [2, 1], [3, 0]]
    assert scores["psnr_mean"] == pytest.approx(20.0, abs=1e-4)
    assert scores["label_accuracy"] == 0.75 and scores["label_multiset_accuracy"] == 0.75
    assert scores["feature_cosine_mean"] == pytest.approx(1.0)
    assert 0.0 < scores["ssim_mean"] <= 1.0
