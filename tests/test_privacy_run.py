"""Curious peers end to end: recording, reconstruction, scoring, plot, sender-side defense."""


import fedsim
from tests.conftest import tiny_scenario

PRIVACY = {"curious": 1, "victims": 2, "rounds": [1, 2],
           "attack": {"name": "inverting_gradients", "args": {"iterations": 20, "restarts": 1}}}


def test_privacy_run_scores_reconstructions(tmp_path):
    sc = tiny_scenario(**{"rounds": 2, "privacy": PRIVACY, "output.plots": True,
                          "training.local_steps": 1, "training.batch_size": 2})
    summary, run_dir = fedsim.run(sc, out=tmp_path / "run", progress=False)
    p = summary["privacy"]
    assert p["attack"] == "inverting_gradients" and p["n_victims"] == 4  # 2 victims x 2 rounds
    for key in ("psnr_mean", "ssim_mean", "label_accuracy", "feature_cosine_mean"):
        assert key in p
    assert 0.0 <= p["label_accuracy"] <= 1.0 and -1.0 <= p["ssim_mean"] <= 1.0
    first, later = [v for v in p["per_victim"] if v["round"] == 1], [v for v in p["per_victim"] if v["round"] == 2]
    # round 1: the common initial head is the victim's true start; round 2: an estimate
    assert all(v["start_head_error"] == 0.0 for v in first)
    assert all(v["start_head_error"] > 0.0 for v in later)
    assert (run_dir / "plots" / "reconstructions.png").stat().st_size > 1000
    victims = {v["victim"] for v in p["per_victim"]}
    assert not victims & set(p["curious_ids"]) and not victims & set(summary["byzantine_ids"])


def test_sender_side_topk_shrinks_the_wire_and_is_reported(tmp_path):
    base = {"rounds": 1, "privacy": dict(PRIVACY, rounds=[1])}
    dense, _ = fedsim.run(tiny_scenario(**base), out=tmp_path / "dense", progress=False)
    sparse_sc = tiny_scenario(**base)
    sparse_sc["privacy"] = dict(sparse_sc["privacy"], defense={"name": "topk", "args": {"fraction": 0.1}})
    sparse, _ = fedsim.run(sparse_sc, out=tmp_path / "sparse", progress=False)
    numel = dense["bytes_sent"] // 24 // 4          # 24 messages of float32 heads
    k = -(-numel // 10)                              # ceil(0.1 numel) entries, 8 bytes each
    assert sparse["bytes_sent"] == 24 * 8 * k
    assert sparse["privacy"]["defense"] == "topk"
    assert sparse["privacy"]["defense_params"]["fraction"] == 0.1
