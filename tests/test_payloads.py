"""No file fedsim reads back runs code: a planted pickle payload never executes.

The payload is an object whose ``__reduce__`` calls ``open(marker, "w")``: unpickling it
with full pickle creates the marker file (checked first, as a positive control, so these
tests can fail). Each file kind fedsim loads with ``torch.load`` gets the payload, in
torch's zip format and as a bare legacy pickle, and the test asserts the marker never
appears and the run, plot or cache behaves as specified: checkpoints fall back or fail
with one ``error:`` line, ``privacy.pt`` is one ``error:`` line, caches are recomputed.
"""
import contextlib
import pickle
import shutil

import numpy as np
import pytest
import torch

from fedsim.cli import main
from fedsim.runner import run
from tests.conftest import tiny_scenario


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path, marker, form: str, wrap: bool = False) -> None:
    """Write a payload to ``path``; ``wrap`` hides it inside a plausible checkpoint dict."""
    obj = Payload(marker)
    if wrap:
        obj = {"round": 4, "peers": obj, "totals": {}, "wall_time_s": 0.0, "scenario": {}}
    if form == "zip":
        torch.save(obj, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(obj, fh)


FORMS = [("zip", False), ("pickle", False), ("zip", True)]


@pytest.mark.parametrize("form,wrap", FORMS)
def test_the_payload_is_live_under_full_unpickling(tmp_path, form, wrap):
    marker = tmp_path / "marker"
    plant(tmp_path / "x.pt", marker, form, wrap)
    with contextlib.suppress(RuntimeError):  # a bare pickle runs, then fails torch's magic-number check
        torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("payload") / "base"
    run(tiny_scenario(**{"rounds": 3, "output.checkpoint_every": 1}), out=out, progress=False)
    return out


@pytest.fixture
def copy(finished, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(finished, target)
    return target


def _one_error(err):
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("form,wrap", FORMS)
def test_checkpoint_payload_never_runs_and_resume_falls_back(copy, tmp_path, capsys, form, wrap):
    marker = tmp_path / "marker"
    plant(copy / "checkpoints" / "round_00003.pt", marker, form, wrap)
    assert main(["run", "--resume", str(copy), "--no-progress"]) == 0
    assert not marker.exists()
    assert "resuming from round_00002.pt" in (copy / "run.log").read_text()


@pytest.mark.parametrize("form,wrap", FORMS)
def test_checkpoint_payloads_everywhere_are_one_error(copy, tmp_path, capsys, form, wrap):
    marker = tmp_path / "marker"
    for path in (copy / "checkpoints").glob("round_*.pt"):
        plant(path, marker, form, wrap)
    assert main(["run", "--resume", str(copy), "--no-progress"]) == 2
    assert "round_00003.pt" in _one_error(capsys.readouterr().err)
    assert not marker.exists()


def test_latest_marker_cannot_reach_a_payload_outside_the_run(copy, tmp_path, capsys):
    marker = tmp_path / "marker"
    plant(tmp_path / "outside.pt", marker, "zip")
    (copy / "checkpoints" / "latest").write_text("../../outside.pt\n")
    assert main(["run", "--resume", str(copy), "--no-progress"]) == 2
    assert "latest" in _one_error(capsys.readouterr().err)
    assert not marker.exists()


@pytest.mark.parametrize("form,wrap", FORMS)
def test_privacy_record_payload_is_one_error_in_plot(copy, tmp_path, capsys, form, wrap):
    marker = tmp_path / "marker"
    plant(copy / "privacy.pt", marker, form, wrap)
    assert main(["plot", str(copy)]) == 2
    assert "privacy.pt" in _one_error(capsys.readouterr().err)
    assert not marker.exists()


# --------------------------------------------------------------------------- caches

def _features_entry(dataset, public_idx):
    from fedsim.models.features import cache_dir, prepare_features
    fs = prepare_features(dataset, public_idx, backbone="cnn", pretrain={"epochs": 0}, seed=7)
    return fs, cache_dir() / "features" / fs.key


@pytest.fixture(scope="module")
def digits():
    from fedsim.data.datasets import load_dataset
    dataset = load_dataset("digits", seed=0)
    return dataset, np.arange(0, 200)


@pytest.mark.parametrize("victim", ["backbone.pt", "features.pt"])
@pytest.mark.parametrize("form,wrap", FORMS[:2])
def test_feature_cache_payload_never_runs_and_is_recomputed(digits, tmp_path, victim, form, wrap):
    from fedsim.models.features import prepare_features
    dataset, public_idx = digits
    first, directory = _features_entry(dataset, public_idx)
    marker = tmp_path / "marker"
    plant(directory / victim, marker, form, wrap)
    again = prepare_features(dataset, public_idx, backbone="cnn", pretrain={"epochs": 0}, seed=7)
    assert not marker.exists()
    assert not again.from_cache
    assert torch.equal(again.train_features, first.train_features)
    third = prepare_features(dataset, public_idx, backbone="cnn", pretrain={"epochs": 0}, seed=7)
    assert third.from_cache  # the entry was rewritten with good files


def test_feature_cache_with_altered_values_fails_its_digest(digits):
    from fedsim.models.features import prepare_features
    dataset, public_idx = digits
    first, directory = _features_entry(dataset, public_idx)
    stored = torch.load(directory / "features.pt", weights_only=True)
    stored["train"][0, 0] += 1.0  # a valid file whose content no longer matches meta.json's digest
    torch.save(stored, directory / "features.pt")
    again = prepare_features(dataset, public_idx, backbone="cnn", pretrain={"epochs": 0}, seed=7)
    assert not again.from_cache
    assert torch.equal(again.train_features, first.train_features)


@pytest.fixture(scope="module")
def small_generator():
    from attacks.inversion.generator import train_generator
    images = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return images, train_generator(images, steps=3, seed=0)


def test_generator_round_trips_through_its_state_dict(small_generator, tmp_path):
    from attacks.inversion.generator import load_generator, save_generator
    _, generator = small_generator
    save_generator(generator, tmp_path / "g.pt")
    loaded = load_generator(tmp_path / "g.pt")
    z = torch.randn(5, generator.latent_dim, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded(z), generator(z))


def test_generator_with_altered_weights_fails_its_digest(small_generator, tmp_path):
    from attacks.inversion.generator import load_generator, save_generator
    _, generator = small_generator
    save_generator(generator, tmp_path / "g.pt")
    stored = torch.load(tmp_path / "g.pt", weights_only=True)
    first = next(iter(stored["state"]))
    stored["state"][first] = stored["state"][first] + 1.0
    torch.save(stored, tmp_path / "g.pt")
    assert load_generator(tmp_path / "g.pt") is None


@pytest.mark.parametrize("form,wrap", FORMS[:2])
def test_generator_cache_payload_never_runs_and_is_rebuilt(small_generator, tmp_path, form, wrap):
    from attacks.inversion.generator import CACHE_FORMAT, load_generator, prepared_generator
    from fedsim.api import ArtifactCache
    images, _ = small_generator
    cache = ArtifactCache(tmp_path / "cache", {"features": "k", "shape": [1, 8, 8]})
    path = cache.path("generators", seed=0, format=CACHE_FORMAT)
    path.parent.mkdir(parents=True)
    marker = tmp_path / "marker"
    plant(path, marker, form, wrap)
    assert load_generator(path) is None
    generator = prepared_generator(images, cache, 0)
    assert not marker.exists()
    rebuilt = load_generator(path)  # the payload was replaced by the trained generator
    z = torch.randn(3, generator.latent_dim, generator=torch.Generator().manual_seed(2))
    assert torch.equal(rebuilt(z), generator(z))
