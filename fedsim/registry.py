"""Name -> implementation, for every pluggable kind.

``fedsim`` never imports ``attacks`` or ``defenses`` at module level: they register
themselves when imported, and :func:`load_plugins` imports them the first time a
name is looked up. A user package can add names the same way (``register``).
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any, Callable, Optional

from fedsim.params import RunFacts, check_declaration, defaults, describe as describe_constraints, validate

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

# Kinds whose plugins take arguments from the scenario: each declares ``parameters``
# (see fedsim.params), checked against its signature when it registers. The names
# given are the arguments the engine passes itself, not the scenario.
DECLARED_KINDS = {
    "defenses": (),
    "attacks": (),
    "inversions": (),
    "privacy_defenses": (),
    "topologies": ("n_peers", "seed"),
    "datasets": ("root", "seed", "test_fraction"),
    "backbones": ("input_shape",),
    "heads": (),
}

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
        if kind in DECLARED_KINDS:
            check_declaration(obj, DECLARED_KINDS[kind])
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


def validate_args(kind: str, name: str, args: dict, prefix: str = "",
                  facts: Optional[RunFacts] = None) -> None:
    """Check ``args`` for ``name`` of ``kind`` against its declared parameters (and, with
    ``facts``, against the run); raise :class:`~fedsim.params.ParameterError`."""
    plugin = lookup(kind, name)
    if kind in DECLARED_KINDS:
        validate(plugin, args, name=name, prefix=prefix, facts=facts)


def create(kind: str, name: str, *supplied: Any, **kwargs: Any) -> Any:
    """Instantiate ``name`` of ``kind`` with keyword arguments, validated first.
    ``supplied`` positional arguments and the kind's reserved keywords (e.g. a
    topology's ``n_peers`` and ``seed``) come from the engine and are not validated."""
    reserved = DECLARED_KINDS.get(kind, ())
    validate_args(kind, name, {k: v for k, v in kwargs.items() if k not in reserved})
    return lookup(kind, name)(*supplied, **kwargs)


def describe(kind: str, name: str) -> dict:
    """What ``fedsim list -v`` prints of one plugin: its module, its paper (a declared
    ``paper`` attribute, else the first paragraph of its docstring) and, for each declared
    parameter, its default (``inspect.Parameter.empty`` when required) and what it must
    be (``parameters`` is None for kinds whose
    arguments the scenario schema checks, e.g. partitions)."""
    plugin = lookup(kind, name)
    doc = inspect.getdoc(plugin) or ""
    paper = getattr(plugin, "paper", None) or " ".join(doc.split("\n\n", 1)[0].split())
    declared = getattr(plugin, "parameters", None)
    rows = None
    if declared is not None:
        found = defaults(plugin)
        rows = [(arg, found.get(arg, inspect.Parameter.empty), describe_constraints(c))
                for arg, c in declared.items()]
    return {"name": name, "module": plugin.__module__, "paper": paper, "parameters": rows}
