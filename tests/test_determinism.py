"""The same scenario gives identical numbers whatever torch's intra-op thread count.

Each run gets its own feature cache, so pre-training the backbone and computing the
features run under the thread count too; the scenario has curious peers, so the
inversion attack's scores are covered as well. See README "Determinism" for what is
guaranteed across backends and group layouts.
"""
import json

import torch

from fedsim.runner import run
from tests.conftest import tiny_scenario


def _run_with_threads(threads, tmp_path, monkeypatch):
    monkeypatch.setenv("FEDSIM_CACHE", str(tmp_path / f"cache-{threads}"))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        privacy = {"curious": 1, "victims": 2, "rounds": [2], "attack": {"name": "dlg", "args": {"iterations": 5}}}
        summary, run_dir = run(tiny_scenario(**{"rounds": 3, "privacy": privacy, "training.batch_size": 64,
                                                "model.pretrain": {"epochs": 2}}),
                               out=tmp_path / f"run-{threads}", progress=False)
    finally:
        torch.set_num_threads(before)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("wall_time_s")
    return rows, summary["privacy"]["per_victim"], summary["features_from_cache"]


def test_one_and_two_threads_give_identical_metrics_and_privacy_scores(tmp_path, monkeypatch):
    rows_1, privacy_1, cached_1 = _run_with_threads(1, tmp_path, monkeypatch)
    rows_2, privacy_2, cached_2 = _run_with_threads(2, tmp_path, monkeypatch)
    assert not cached_1 and not cached_2  # both pre-trained and featurised under their own thread count
    assert rows_1 == rows_2
    assert privacy_1 == privacy_2
