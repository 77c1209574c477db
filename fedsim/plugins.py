"""The plugin instances of a run, built once per process from the scenario.

``build_world`` builds them (the attack poisons data there) and the world carries them:
the local backend's host and the privacy recorder use the same instances, and a Ray
actor gets its own copy when it unpickles the world, so every process builds (or
receives) each plugin exactly once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from fedsim.config import Scenario
from fedsim.registry import create


@dataclass
class Plugins:
    """The head, the defense, the fallback mean, the attack and the privacy transform."""

    head: Any                   # the head's loss and gradient (``heads`` registry)
    defense: Any                # the honest peers' aggregation rule
    fallback: Any               # what Byzantine peers merge with (they are not defended): mean
    attack: Optional[Any]       # the Byzantine attack, None without an adversary
    privacy: Optional[Any]      # the sender-side privacy transform, None for ``none``

    @classmethod
    def build(cls, s: Scenario) -> "Plugins":
        adv = s.adversary
        pdef = s.privacy.defense if s.privacy is not None else None
        return cls(
            head=create("heads", s.model.head, **s.model.head_args),
            defense=create("defenses", s.defense.name, **s.defense.args),
            fallback=create("defenses", "mean"),
            attack=create("attacks", adv.attack.name, **adv.attack.args) if adv is not None else None,
            privacy=create("privacy_defenses", pdef.name, **pdef.args) if pdef and pdef.name != "none" else None,
        )

    @classmethod
    def of(cls, world) -> "Plugins":
        """The world's plugins (a world made by ``build_world`` carries them); built from
        its scenario for a world assembled by hand."""
        return world.plugins if world.plugins is not None else cls.build(world.scenario)
