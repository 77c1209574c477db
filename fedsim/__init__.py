"""fedsim: a decentralized federated learning simulator."""
__version__ = "0.1.0"


def run(scenario, **kwargs):
    """Run a scenario (a path, a dict or a Scenario); returns ``(summary, run_dir)``."""
    from fedsim.runner import run as _run
    return _run(scenario, **kwargs)
