"""The checks of a scenario's ``network:`` section that its schema cannot express
(``fedsim.config`` runs them; each failure is one ``error:`` line naming the key)."""
from __future__ import annotations

from fedsim.network.churn import TraceError, read_trace

MAX_TRACE_BYTES = 64 << 20


def read_trace_text(path: str) -> str:
    """The text of a churn trace file (``config.UnreadableFile`` if it cannot be read)."""
    from fedsim.config import read_text_file
    return read_text_file(path, MAX_TRACE_BYTES, "churn trace")


def problems(s) -> list[tuple[str, str]]:
    """``(key path, message)`` for each thing wrong with ``s.network`` beyond its schema."""
    from fedsim.config import UnreadableFile
    net, n = s.network, s.topology.n_peers
    found = []
    if net.compute_per_peer is not None:
        if len(net.compute_per_peer) != n:
            found.append(("network.compute_per_peer", f"must list one time per peer ({n}); "
                          f"got {len(net.compute_per_peer)}"))
        elif any(not (x > 0) for x in net.compute_per_peer):
            found.append(("network.compute_per_peer", "every time must be > 0"))
    elif net.mode == "async" and net.compute.mean <= 0:
        found.append(("network.compute.mean", "must be > 0 in async mode (a step takes time)"))
    if net.mode == "async" and net.eval_every_s < net.tick:
        found.append(("network.eval_every_s", f"must be >= network.tick ({net.tick:g})"))
    churn = net.churn
    if churn is not None:
        if churn.attackers is not None and s.adversary is None:
            found.append(("network.churn.attackers", "needs an adversary: section"))
        if churn.trace is not None:
            try:
                read_trace(read_trace_text(churn.trace), n)
            except UnreadableFile as exc:
                found.append(("network.churn.trace", str(exc)))
            except TraceError as exc:
                found.append(("network.churn.trace", f"{churn.trace}: {exc}"))
    return found
