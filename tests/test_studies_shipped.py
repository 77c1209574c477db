"""Every study shipped in scenarios/studies/ loads and validates every cell, so the commands
that regenerate the docs (benchmarks/*.py, `fedsim sweep`) cannot fail on a stale key."""
from pathlib import Path

import pytest
import yaml

from fedsim import config as cfg
from fedsim import study

STUDIES = sorted((Path(__file__).resolve().parents[1] / "scenarios" / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_shipped_study_validates(path):
    raw = yaml.safe_load(path.read_text())
    if "base" in raw:
        sweep = study.load(path)
        assert len(sweep.cells) >= 1 and sweep.seeds
    else:  # a scenario that studies use as their base
        cfg.load(path)


def test_the_ios_code_sign_flip_is_one_of_the_ios_study_cells():
    # The IOS reproduction's fourth column (issue 10): the IOS code's sign flip, by an
    # omniscient attacker that knows the graph.
    sweep = study.load(STUDIES[0].parent / "ios_label_separated.yaml")
    scenarios = [sweep.scenario(cell, 0) for cell in sweep.cells]
    code_form = [s for s in scenarios if s["adversary"]["attack"]["args"].get("source") == "receiver_neighbourhood"]
    assert len(code_form) == 4  # one per defense
    assert all(s["adversary"]["omniscient"] and s["adversary"]["knows_topology"] for s in code_form)
