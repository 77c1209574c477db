"""The cluster sizing rule of the README ("about as many actors as the cluster has cores;
each actor runs its peers' tensor operations with total CPUs / actors threads") checked on
a two-node ``ray.cluster_utils.Cluster``. Where the actors land is not asserted: the
round-robin placement is a soft node affinity, and on these small raylets Ray was seen to
put 4 actors 2 + 2, 3 + 1 and 4 + 0 (README "Running on Ray")."""
import time
import pytest
import torch

from tests.conftest import tiny_scenario, two_node_cluster

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]


def actor_threads(actor) -> int:
    return ray.get(actor.__ray_call__.remote(lambda host: torch.get_num_threads()))


def test_actors_get_the_clusters_cpus_shared_out():
    from fedsim.config import from_dict
    from fedsim.engine.ray_backend import RayBackend
    from fedsim.topology import Schedule
    from fedsim.world import build_world
    if ray.is_initialized():
        ray.shutdown()
    cluster = two_node_cluster(cpus_per_node=2)             # 4 CPUs in all
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        deadline = time.time() + 60   # both raylets' CPUs known to the scheduler (the backend places by them)
        while ray.available_resources().get("CPU", 0) < 4 and time.time() < deadline:
            time.sleep(0.2)
        # 8 peers: 4 per actor -> 2 actors of 4 / 2 = 2 threads; 2 per actor -> 4 actors of 1.
        for peers_per_actor, actors, threads in [(4, 2, 2), (2, 4, 1)]:
            s = from_dict(tiny_scenario(backend={"name": "ray", "peers_per_actor": peers_per_actor,
                                                 "address": cluster.address}))
            backend = RayBackend(build_world(s, Schedule(s.topology.kind, 8, 0, s.topology.args)))
            try:
                assert len(backend.actors) == actors
                assert [actor_threads(a) for a in backend.actors] == [threads] * actors
            finally:
                backend.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
