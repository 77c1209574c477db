"""Aggregation rules (Bristle and robust baselines) and sender-side privacy defenses.

``get_defense(name, **args)`` builds a rule by its registered name; the keyword
arguments are a scenario's ``defense.args``.
"""
from __future__ import annotations

import importlib
import pkgutil

from fedsim.registry import create, names

from defenses.base import Defense  # noqa: F401


def _import_all() -> None:
    # Every module of this package registers its names on import.
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


_import_all()


def get_defense(name: str, **args) -> Defense:
    return create("defenses", name, **args)


def list_defenses() -> list[str]:
    return names("defenses")
