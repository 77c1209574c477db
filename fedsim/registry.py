"""Name -> implementation, for every pluggable kind.

``fedsim`` never imports ``attacks`` or ``defenses`` at module level: they register
themselves when imported, and :func:`load_plugins` imports them the first time a
name is looked up. A user package can add names the same way (``register``).
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable

KINDS = (
    "datasets",
    "partitions",
    "backbones",
    "heads",
    "topologies",
    "attacks",
    "defenses",
    "inversions",
    "privacy_defenses",
)

# Packages that register names into the registry when imported.
PLUGIN_PACKAGES = ("fedsim.data", "fedsim.models", "fedsim.topology", "attacks", "defenses")

_REGISTRY: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
_plugins_loaded = False


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the closest valid names."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        super().__init__(f"unknown {kind[:-1] if kind.endswith('s') else kind} {name!r}{hint}; "
                         f"allowed: {', '.join(valid)}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


def register(kind: str, name: str) -> Callable[[Any], Any]:
    """Decorator: ``@register("defenses", "median")`` on a class or factory."""
    if kind not in _REGISTRY:
        raise ValueError(f"unknown registry kind {kind!r}; allowed: {', '.join(KINDS)}")

    def deco(obj: Any) -> Any:
        _REGISTRY[kind][name] = obj
        return obj

    return deco


def load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for package in PLUGIN_PACKAGES:
        importlib.import_module(package)


def names(kind: str) -> list[str]:
    load_plugins()
    if kind not in _REGISTRY:
        raise UnknownNameError("kinds", kind, list(KINDS))
    return sorted(_REGISTRY[kind])


def lookup(kind: str, name: str) -> Any:
    """The registered class or factory (not instantiated)."""
    load_plugins()
    table = _REGISTRY[kind]
    if name not in table:
        raise UnknownNameError(kind, name, sorted(table))
    return table[name]


def create(kind: str, name: str, **kwargs: Any) -> Any:
    """Instantiate ``name`` of ``kind`` with keyword arguments."""
    return lookup(kind, name)(**kwargs)
