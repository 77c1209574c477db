"""The simulated network: per-peer compute times, links (latency, bandwidth, loss) and
churn (peers going offline and back), as pure functions of the scenario seed.

Every draw is keyed (``fedsim.rng``): a peer's compute time by ``(seed, peer,
"compute")``, a link's latency by ``(seed, sender * N + receiver, "latency")``, a
message's loss by ``(seed, link, the sender's update count, "loss")`` and a peer's
online spells by ``(seed, peer, spell index, "churn_up" / "churn_down")``. So the
network a run sees depends on nothing but the seed and the scenario: not on the
backend, on how peers are grouped, or on the order in which events are processed.

Modules: :mod:`~fedsim.network.draws` (named distributions), :mod:`~fedsim.network.churn`
(online spells), :mod:`~fedsim.network.links` (transfer times and losses),
:mod:`~fedsim.network.validate` (the checks of a scenario's ``network:`` section).
"""
