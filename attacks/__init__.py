"""Byzantine attacks (``attacks.byzantine``) and gradient inversion (``attacks.inversion``).

``get_attack(name, **args)`` builds a Byzantine attack by its registered name.
"""
from __future__ import annotations

import importlib
import pkgutil

from fedsim.registry import create, names

from attacks.base import Attack  # noqa: F401


def _import_all() -> None:
    for sub in ("byzantine", "inversion"):
        package = importlib.import_module(f"{__name__}.{sub}")
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")


_import_all()


def get_attack(name: str, **args) -> Attack:
    return create("attacks", name, **args)


def list_attacks() -> list[str]:
    return names("attacks")
