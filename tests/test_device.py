"""backend.device: cuda moves heads, features, local training and evaluation to the GPU
(the defenses merge on the CPU), with the same metrics as on the CPU (to 1e-5); a clear
error where there is none."""
import json

import pytest
import torch

import fedsim
from fedsim.cli import main
from tests.conftest import tiny_scenario

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where no GPU is available")
def test_cuda_without_a_gpu_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "gpu.yaml"
    path.write_text("name: gpu\nbackend: {device: cuda}\n")
    assert main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "backend" in lines[0] and "cuda" in lines[0]


def _rows(tmp_path, name, **overrides):
    summary, run_dir = fedsim.run(tiny_scenario(**overrides), out=tmp_path / name, progress=False)
    return [{k: v for k, v in json.loads(line).items() if k != "wall_time_s"}
            for line in (run_dir / "metrics.jsonl").open()]


@needs_cuda
@pytest.mark.parametrize("overrides", [
    {},
    {"training.optimizer": "adam", "training.z_loss": 1e-3, "training.migu_quantile": 0.3,
     "defense": {"name": "trimmed_mean", "args": {"f": 1}}, "adversary": {"count": 2, "attack": {"name": "alie"}}},
    {"defense": {"name": "bristle"}, "training.missing_class_scale": 0.5},
], ids=["sgd-mean", "adam-trimmed-alie", "bristle-fedrs"])
def test_cuda_metrics_equal_cpu(tmp_path, overrides):
    cpu = _rows(tmp_path, "cpu", **overrides)
    gpu = _rows(tmp_path, "gpu", **{**overrides, "backend.device": "cuda"})
    assert len(cpu) == len(gpu)
    for a, b in zip(cpu, gpu):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, float):
                assert b[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key
            else:
                assert b[key] == value, key
