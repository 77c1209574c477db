"""The ``network:`` section: invalid values end in one ``error:`` line (exit 2); absent, the
resolved scenario is today's plus ``network: null``; churn traces and draws."""
import numpy as np
import pytest

from fedsim import config
from fedsim.cli import main
from fedsim.network.churn import Presence, exponential_toggles, read_trace, trace_toggles
from fedsim.network.draws import draw
from fedsim.runner import changed_keys

BASE = """
name: t
rounds: 10
data: {dataset: digits}
topology: {kind: random_regular, n_peers: 10, args: {degree: 4}}
"""

CASES = [
    (["network.links.latency.mean=-1"], ["network.links.latency.mean", "greater than or equal to 0"]),
    (["network.links.loss=1.5"], ["network.links.loss", "less than or equal to 1"]),
    (["network.links.loss=-0.1"], ["network.links.loss", "greater than or equal to 0"]),
    (["network.participation=1.2"], ["network.participation"]),
    (["network.tick=0"], ["network.tick", "greater than 0"]),
    (["network.mode=asink"], ["network.mode", "sync", "async"]),
    (["network.compute.kind=weibull"], ["network.compute.kind", "pareto"]),
    (["network.compute.alpha=1"], ["network.compute.alpha"]),
    (["network.links.bandwidth=0"], ["network.links.bandwidth"]),
    (["network.compute_per_peer=[1, 2]"], ["network.compute_per_peer", "one time per peer (10)"]),
    (["network.mode=async", "network.compute.mean=0"], ["network.compute.mean", "> 0"]),
    (["network.churn.down_mean=0"], ["network.churn.down_mean"]),
    (["network.churn.attackers.up_mean=5"], ["network.churn.attackers", "adversary"]),
    (["network.churn.trace=/nonexistent/trace.csv"], ["network.churn.trace", "no such file"]),
    (["network.tock=1"], ["network", "tock", "did you mean tick"]),
]


def _validate(tmp_path, capsys, overrides, extra=""):
    path = tmp_path / "s.yaml"
    path.write_text(BASE + extra)
    code = main(["validate", str(path)] + [a for o in overrides for a in ("--set", o)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("overrides,needles", CASES, ids=[str(i) for i in range(len(CASES))])
def test_invalid_network_values(tmp_path, capsys, overrides, needles):
    code, err = _validate(tmp_path, capsys, overrides)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("text,needle", [
    ("peer,start,end\n0,0,5\n12,1,2\n", "unknown peer 12"),
    ("0,5,3\n", "0 <= start < end"),
    ("0,0,5\n0,4,8\n", "overlap"),
    ("0,0,5\n1,zero,5\n", "line 2: expected peer,start,end"),
])
def test_bad_trace(tmp_path, capsys, text, needle):
    trace = tmp_path / "trace.csv"
    trace.write_text(text)
    code, err = _validate(tmp_path, capsys, [f"network.churn.trace={trace}"])
    assert code == 2 and err.count("\n") == 1 and "network.churn.trace" in err and needle in err


def test_valid_network_section(tmp_path, capsys):
    code, err = _validate(tmp_path, capsys, [], "network: {mode: async, tick: 0.5, links: {loss: 0.1}}\n")
    assert code == 0, err


def test_absent_section_resolves_to_null_and_old_checkpoints_resume():
    s = config.from_dict({})
    assert s.network is None and s.to_dict()["network"] is None
    before = {k: v for k, v in s.to_dict().items() if k != "network"}  # a checkpoint from before the key
    assert changed_keys(before, s.to_dict()) == []
    assert changed_keys(before, config.from_dict({"network": {}}).to_dict()) != []


def test_trace_toggles_and_presence():
    spells = read_trace("peer,start,end\n1,2,4\n1,6,7  # back\n", 3)
    assert spells == {1: [(2.0, 4.0), (6.0, 7.0)]}
    presence = Presence(trace_toggles(spells, 3))
    times = [0, 1.9, 2, 3.9, 4, 5, 6, 6.5, 7, 100]
    got = [bool(presence.online([1], t)[0]) for t in times]
    assert got == [False, False, True, True, False, False, True, True, False, False]
    assert presence.online([0, 2], 50.0).tolist() == [True, True]  # unlisted: always online
    assert presence.next_online([1, 1, 1, 0], [0.5, 3.0, 4.5, 9.0]).tolist() == [2.0, 3.0, 6.0, 9.0]
    assert presence.next_online([1], 7.5).tolist() == [np.inf]


def test_exponential_spells_have_the_configured_means():
    toggles = exponential_toggles(3, np.arange(2000), 5.0, 10.0, 2.0, horizon=200.0)
    starts, ends = toggles[:, 0::2], toggles[:, 1::2]
    assert (toggles[:, 0] == 5.0).all()  # everyone joins at join_at
    started = np.isfinite(starts)  # every spell that starts before the horizon is drawn whole
    up = ends[started] - starts[started]
    # off spells that begin before 100 s (one ending past 200 s has probability e^-50)
    begun = ends[:, :-1] < 100
    down = starts[:, 1:][begun] - ends[:, :-1][begun]
    # means of ~ 30,000 exponential draws: standard error ~ 0.6 % of the mean
    assert abs(up.mean() / 10.0 - 1) < 0.03 and abs(down.mean() / 2.0 - 1) < 0.03
    again = exponential_toggles(3, np.array([7, 1999]), 5.0, 10.0, 2.0, horizon=200.0)
    width = again.shape[1]
    np.testing.assert_array_equal(again[:, :width], toggles[[7, 1999], :width])  # keyed per peer


@pytest.mark.parametrize("kind,extra", [("constant", {}), ("lognormal", {"sigma": 0.8}), ("pareto", {"alpha": 3.0})])
def test_distributions_have_the_configured_mean(kind, extra):
    dist = config.Distribution(kind=kind, mean=2.0, **extra)
    values = draw(dist, 0, np.arange(200_000), "compute")
    assert (values > 0).all()
    assert abs(values.mean() / 2.0 - 1) < 0.02
    if kind == "pareto":  # x_m = mean (alpha - 1) / alpha is the smallest value
        assert values.min() >= 2.0 * 2 / 3 and values.min() < 2.0 * 2 / 3 * 1.001
    if kind == "lognormal":  # log-space standard deviation is sigma
        assert abs(np.log(values).std() - 0.8) < 0.01


def test_attackers_follow_their_own_churn():
    s = config.from_dict({"topology": {"kind": "ring", "n_peers": 6}, "adversary": {"ids": [4, 5]},
                          "network": {"churn": {"up_mean": 1000.0, "down_mean": 1.0,
                                                "attackers": {"join_at": 10.0, "up_mean": 2.0}}}})
    presence = Presence.of(s, [4, 5], horizon=50.0)
    assert presence.online(range(6), 5.0).tolist() == [True] * 4 + [False, False]  # attackers join late
    assert presence.online([4, 5], 10.0).all()
    spells = presence.toggles[4:]
    assert (spells[:, 0] == 10.0).all() and np.isfinite(spells[:, 2]).all()  # they leave and rejoin
    honest = Presence.of(s.model_copy(update={"adversary": None}), [], horizon=50.0)
    np.testing.assert_array_equal(presence.toggles[:4, :2], honest.toggles[:4, :2])  # keyed per peer
