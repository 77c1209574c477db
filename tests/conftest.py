import os
from pathlib import Path

import pytest
import torch

# Tests share the 2 cores with each other (pytest -n 2); one thread each is fastest.
torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory):
    """Every test run uses its own feature cache unless FEDSIM_CACHE is set."""
    if "FEDSIM_CACHE" not in os.environ:
        os.environ["FEDSIM_CACHE"] = str(tmp_path_factory.mktemp("fedsim-cache"))
    yield


def tiny_scenario(**overrides) -> dict:
    """A digits scenario small enough for a test: 8 peers, 4 rounds, identity-free cnn."""
    scenario = {
        "name": "tiny", "seed": 0, "rounds": 4,
        "data": {"dataset": "digits", "test_per_class": 3, "partition": {"kind": "dirichlet", "alpha": 1.0}},
        "model": {"backbone": "cnn"},
        "training": {"local_steps": 5, "batch_size": 16, "lr": 0.1},
        "topology": {"kind": "random_regular", "n_peers": 8, "args": {"degree": 3}},
        "output": {"plots": False, "checkpoint_every": 2},
    }
    for key, value in overrides.items():
        node = scenario
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return scenario


def two_node_cluster(cpus_per_node: int = 1):
    """A ``ray.cluster_utils.Cluster`` of two nodes of ``cpus_per_node`` CPUs, both registered.

    On a loaded 2-core machine a raylet can miss Ray's default health checks (about 15 s)
    and be declared dead mid-test, leaving one node; the checks here allow 3 minutes.
    """
    from ray.cluster_utils import Cluster
    config = {"health_check_failure_threshold": 60, "health_check_period_ms": 3000}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus_per_node, "_system_config": config})
    cluster.add_node(num_cpus=cpus_per_node)
    cluster.wait_for_nodes()
    return cluster
