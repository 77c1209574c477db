"""The information-plane estimator (fedsim/infoplane.py) on cases whose mutual
information is known by hand, and `fedsim infoplane` on a run that saved its heads."""
import json
import math
import shutil

import numpy as np
import pytest
import torch

from fedsim.cli import main
from fedsim.infoplane import bin_values, head_outputs, information_plane, run_information_plane
from tests.conftest import tiny_scenario


def h2(p: float) -> float:
    """Binary entropy in bits."""
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def test_bins_follow_the_authors_digitize():
    # 30 edges over [0, 1], step 1/29: [k/29, (k+1)/29) is bin k, the top edge is bin 29.
    assert bin_values([0.0, 0.01, 0.5, 0.51, 0.99, 1.0]).tolist() == [0, 0, 14, 14, 28, 29]
    assert bin_values([-0.5, 0.0, 0.5], n_bins=3, low=-1.0, high=1.0).tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\]"):
        bin_values([1.2])
    with pytest.raises(ValueError, match="n_bins"):
        bin_values([0.5], n_bins=1)


def one_hot(labels, k, on=0.9):
    t = np.full((len(labels), k), (1 - on) / (k - 1))
    t[np.arange(len(labels)), labels] = on
    return t


def test_a_copy_of_the_label_carries_all_of_h_y():
    # T = (a softmax-like) one-hot of Y, Y uniform over 4 classes: I(T;Y) = H(Y) = 2 bits, and
    # T has 4 equally likely values: I(X;T) = H(T) = 2 bits.
    labels = np.repeat(np.arange(4), 5)
    assert information_plane(one_hot(labels, 4), labels) == pytest.approx((2.0, 2.0))


def test_binary_symmetric_channel():
    # Y uniform on {0, 1}; T = Y's code with 10 of 100 samples flipped (5 per class):
    # I(T;Y) = 1 - h(0.1); T is uniform too: I(X;T) = H(T) = 1.
    labels = np.repeat([0, 1], 50)
    shown = labels.copy()
    shown[:5], shown[50:55] = 1, 0
    i_xt, i_ty = information_plane(one_hot(shown, 2, on=0.8), labels)
    assert i_ty == pytest.approx(1 - h2(0.1)) and i_xt == pytest.approx(1.0)
    assert i_ty == pytest.approx(0.531004, abs=1e-6)


def test_unbalanced_case_by_hand():
    # 8 samples, Y = 0 0 0 0 1 1 1 1, T = a a a b | b b b a: H(T) = 1, H(T|Y) = h(1/4),
    # I(T;Y) = 1 - 0.811278 = 0.188722.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    t = np.array([[0.2], [0.2], [0.2], [0.7], [0.7], [0.7], [0.7], [0.2]])
    assert information_plane(t, labels) == pytest.approx((1.0, 1 - h2(0.25)))
    assert information_plane(t, labels)[1] == pytest.approx(0.188722, abs=1e-6)


def test_values_in_one_bin_are_one_value_and_independent_t_has_no_label_information():
    labels = np.array([0, 1, 0, 1])
    assert information_plane(np.array([[0.50], [0.51], [0.505], [0.5]]), labels) == (0.0, 0.0)
    # T takes 0.1 and 0.9 once in each class: independent of Y, H(T) = 1.
    assert information_plane(np.array([[0.1], [0.1], [0.9], [0.9]]), labels) == pytest.approx((1.0, 0.0))


def test_repeated_inputs_make_h_t_given_x_count():
    # X = 0 0 1 1 (distinct rows of `inputs`), T = a b c c: H(T) = 1.5, H(T|X) = 1/2 * 1 + 1/2 * 0,
    # I(X;T) = 1.0; Y = X: H(T|Y) = 0.5 too, I(T;Y) = 1.0.
    inputs = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    t = np.array([[0.1], [0.5], [0.9], [0.9]])
    assert information_plane(t, [0, 0, 1, 1], inputs=inputs) == pytest.approx((1.0, 1.0))


def test_shape_errors():
    with pytest.raises(ValueError, match="one label per row"):
        information_plane(np.zeros((3, 2)), [0, 1])


def test_head_outputs_are_the_softmax_of_the_logits():
    heads = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.5]]])        # [1, C=2, D+1=3]
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # logits: sample 0 -> (1, 0.5), sample 1 -> (0, 2.5)
    expected = torch.softmax(torch.tensor([[1.0, 0.5], [0.0, 2.5]]), dim=-1)
    assert torch.allclose(head_outputs(heads, features)[0], expected)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    from fedsim.runner import run
    out = tmp_path_factory.mktemp("infoplane") / "run"
    run(tiny_scenario(rounds=2, **{"output.save_heads": 3, "output.checkpoint_every": 1,
                                   "adversary": {"count": 2, "attack": {"name": "gaussian"}}}),
        out=out, progress=False)
    return out


def test_a_run_saves_sampled_honest_heads_every_evaluated_round(saved_run):
    from fedsim.results import RunDir
    run_dir = RunDir(saved_run)
    saved = run_dir.read_heads()
    summary = json.loads((saved_run / "summary.json").read_text())
    assert [entry["round"] for entry in saved] == [1, 2]
    ids = saved[0]["peer_ids"]
    assert len(ids) == 3 and ids == sorted(ids) and not set(ids) & set(summary["byzantine_ids"])
    assert saved[1]["peer_ids"] == ids
    # the last round's heads are the checkpoint's heads of those peers
    state = run_dir.latest_checkpoint()["peers"]
    rows = [list(state["ids"]).index(i) for i in ids]
    assert torch.equal(saved[1]["heads"], state["heads"][rows])


def test_infoplane_command_writes_rows_equal_to_the_estimator(saved_run, capsys):
    assert main(["infoplane", str(saved_run), "--no-plot"]) == 0
    assert "I(X;T)" in capsys.readouterr().out
    rows = [json.loads(line) for line in (saved_run / "infoplane.jsonl").read_text().splitlines()]
    assert [(r["round"]) for r in rows] == [1, 1, 1, 2, 2, 2]
    # recompute one row by hand from the world the run used
    from fedsim import config as cfg
    from fedsim.results import RunDir
    from fedsim.topology import Schedule
    from fedsim.world import build_world
    s = cfg.from_dict(RunDir(saved_run).read_config(), "config")
    world = build_world(s, Schedule(s.topology.kind, s.topology.n_peers, s.seed, s.topology.args, 0), keep_images=False)
    entry = RunDir(saved_run).read_heads()[1]
    t = torch.softmax(torch.cat([world.test_features, torch.ones(len(world.test_labels), 1)], 1)
                      @ entry["heads"][0].T, dim=-1).numpy()
    expected = information_plane(t, world.test_labels.numpy(), inputs=world.test_features.numpy())
    assert (rows[3]["I_XT"], rows[3]["I_TY"]) == pytest.approx(expected)
    n = len(world.test_labels)
    assert all(0 <= r["I_TY"] <= r["H_Y"] + 1e-9 and r["I_TY"] <= r["I_XT"] + 1e-9 <= math.log2(n) + 1e-9
               for r in rows)


def test_infoplane_draws_its_figure(saved_run):
    run_information_plane(saved_run)
    assert (saved_run / "plots" / "infoplane.png").stat().st_size > 0


def test_user_errors_are_one_line(tmp_path, saved_run, capsys):
    assert main(["infoplane", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error:")
    from fedsim.runner import run
    run(tiny_scenario(rounds=1), out=tmp_path / "plain", progress=False)
    assert main(["infoplane", str(tmp_path / "plain")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "save_heads" in err and err.count("\n") == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.yaml").write_text((saved_run / "config.yaml").read_text())
    (bad / "heads").mkdir()
    (bad / "heads" / "round_00001.pt").write_bytes(b"not a tensor file")
    assert main(["infoplane", str(bad)]) == 2
    assert "cannot read the saved heads" in capsys.readouterr().err
    assert main(["infoplane", str(saved_run), "--bins", "1"]) == 2


def test_save_heads_zero_writes_nothing(tmp_path):
    from fedsim.runner import run
    run(tiny_scenario(rounds=1), out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "heads").exists()


def test_a_planted_pickle_in_heads_never_runs(tmp_path, saved_run, capsys):
    from tests.test_payloads import plant
    bad = tmp_path / "planted"
    shutil.copytree(saved_run, bad)
    marker = tmp_path / "marker"
    plant(bad / "heads" / "round_00001.pt", marker, "zip")
    assert main(["infoplane", str(bad), "--no-plot"]) == 2
    assert not marker.exists()
    err = capsys.readouterr().err
    assert err.startswith("error:") and "round_00001.pt" in err and err.count("\n") == 1


def test_save_heads_must_be_a_count(tmp_path, capsys):
    import yaml
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_scenario()))
    assert main(["validate", str(path), "--set", "output.save_heads=-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "output.save_heads" in err


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_the_ray_backend_saves_the_same_heads(tmp_path):
    pytest.importorskip("ray")
    import ray
    from fedsim.results import RunDir
    from fedsim.runner import run
    scenario = tiny_scenario(rounds=2, **{"output.save_heads": 3})
    run(scenario, out=tmp_path / "local", progress=False)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run(dict(scenario, backend={"name": "ray", "peers_per_actor": 3}), out=tmp_path / "ray", progress=False)
    finally:
        if started:
            ray.shutdown()
    local, remote = RunDir(tmp_path / "local").read_heads(), RunDir(tmp_path / "ray").read_heads()
    assert [e["peer_ids"] for e in local] == [e["peer_ids"] for e in remote]
    for a, b in zip(local, remote):   # a head may differ in its last float32 bit (docs/architecture.md)
        assert torch.allclose(a["heads"], b["heads"], rtol=1e-5, atol=1e-7)
