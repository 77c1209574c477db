"""One parameter vocabulary for every plugin, and the one validator that checks it.

Modelled on scikit-learn's ``_parameter_constraints`` and
``validate_parameter_constraints`` (``sklearn/utils/_param_validation.py``). A plugin
(a defense, an attack, ...) declares its keyword arguments once, as a class attribute
(a function plugin: a function attribute)::

    parameters = {"f": Interval(int, 0, None), "tau": [None, Interval(float, 0, None, closed="neither")]}

A value is valid when it satisfies at least one constraint of its list. ``None`` in a
list allows ``None``. Numbers are finite unless a constraint says otherwise, and a
bool is neither an int nor a float. Defaults come from the plugin's signature and are
not checked here (the common test checks them).

Checks that depend on the run (``f`` against the neighbourhood size, a class id against
the number of classes) or on several arguments at once live in the plugin's optional
``check_run(args, facts)`` hook: ``args`` are the arguments with defaults filled in,
``facts`` a :class:`RunFacts` whose unknown fields are ``None``; it returns
``(argument, requirement)`` pairs, e.g. ``("f", "must be <= 4, the most neighbours a
peer has")``. A pair may name a fact of the run instead (``("n_peers", "must be even for
a dumbbell; got 5")``): its requirement then says what it got.

Every violation is one :class:`ParameterError` in one format::

    defense.args.f: must be an int >= 0; got 1.5

(the key path prefix is given by the caller; ``f: ...`` when called directly).

The validator runs wherever a plugin is built from arguments: ``registry.create`` (so
``get_defense``, ``get_attack`` and the engine) and scenario validation
(``fedsim.config.check_semantics``, with the run's facts). A plugin's ``__init__`` only
converts (``float(x)``); calling a class directly skips validation, as constructing a
scikit-learn estimator does.
"""
from __future__ import annotations

import difflib
import inspect
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

__all__ = ["ParameterError", "Constraint", "Interval", "Options", "Boolean", "String", "Digits",
           "ListOf", "MappingOf", "RunFacts", "at_most_neighbours", "declare", "validate", "check_run", "defaults", "describe",
           "invalid_values", "valid_values"]


class ParameterError(ValueError):
    """A plugin argument that cannot work: ``<key path>: must be ...; got <value>``."""


class Constraint:
    """One kind of allowed value. ``str(constraint)`` reads after "must be"."""

    def is_satisfied_by(self, value: Any) -> bool:
        raise NotImplementedError

    def invalid_values(self) -> list:
        """Values that violate this constraint (for the common test)."""
        raise NotImplementedError

    def valid_values(self) -> list:
        """Values that satisfy it, boundaries first (for the common test)."""
        raise NotImplementedError


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(bound) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


class Interval(Constraint):
    """An ``int`` (``type=int``) or a finite real number (``type=float``, ints accepted)
    between ``low`` and ``high`` (``None``: unbounded on that side); ``closed`` says which
    ends belong to it: ``"both"`` (default), ``"left"``, ``"right"`` or ``"neither"``."""

    def __init__(self, type: type, low=None, high=None, *, closed: str = "both"):
        if type not in (int, float):
            raise TypeError(f"Interval type must be int or float, not {type!r}")
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be both, left, right or neither, not {closed!r}")
        self.type, self.low, self.high, self.closed = type, low, high, closed

    @property
    def _low_closed(self) -> bool:
        return self.closed in ("both", "left")

    @property
    def _high_closed(self) -> bool:
        return self.closed in ("both", "right")

    def is_satisfied_by(self, value) -> bool:
        if not (_is_int(value) if self.type is int else _is_number(value)):
            return False
        if self.low is not None and (value < self.low or (value == self.low and not self._low_closed)):
            return False
        if self.high is not None and (value > self.high or (value == self.high and not self._high_closed)):
            return False
        return True

    def __str__(self) -> str:
        low, high = self.low, self.high
        if self.type is int:
            low = None if low is None else (low if self._low_closed else low + 1)
            high = None if high is None else (high if self._high_closed else high - 1)
            if low is not None and high is not None:
                return f"an int in {low}..{high}"
            if low is not None:
                return f"an int >= {low}"
            return f"an int <= {high}" if high is not None else "an int"
        if low is not None and high is not None:
            left, right = "[" if self._low_closed else "(", "]" if self._high_closed else ")"
            return f"a number in {left}{_fmt(low)}, {_fmt(high)}{right}"
        if low is not None:
            return f"a finite number {'>=' if self._low_closed else '>'} {_fmt(low)}"
        if high is not None:
            return f"a finite number {'<=' if self._high_closed else '<'} {_fmt(high)}"
        return "a finite number"

    def invalid_values(self) -> list:
        out: list = [True, "1", float("nan"), float("inf"), float("-inf")]
        if self.type is int:
            out.append(1.5)
            if self.low is not None:
                out.append(self.low - (0 if not self._low_closed else 1))
            if self.high is not None:
                out.append(self.high + (0 if not self._high_closed else 1))
        else:
            if self.low is not None:
                out += [self.low - 1] + ([] if self._low_closed else [self.low])
            if self.high is not None:
                out += [self.high + 1] + ([] if self._high_closed else [self.high])
        return out

    def valid_values(self) -> list:
        step = 1 if self.type is int else None
        out = []
        if self.low is not None:
            out.append(self.low if self._low_closed else
                       (self.low + 1 if step else math.nextafter(float(self.low), math.inf)))
        if self.high is not None:
            out.append(self.high if self._high_closed else
                       (self.high - 1 if step else math.nextafter(float(self.high), -math.inf)))
        if self.low is None and self.high is None:
            out.append(0)
        if self.type is float:
            out.append(float(out[0]))
        return out


class Options(Constraint):
    """One of the given values (compared with their type: ``1`` is not ``True``)."""

    def __init__(self, *options):
        self.options = options

    def is_satisfied_by(self, value) -> bool:
        return any(type(value) is type(o) and value == o for o in self.options)

    def __str__(self) -> str:
        if len(self.options) == 1:
            return repr(self.options[0])
        return "one of " + ", ".join(repr(o) for o in self.options)

    def invalid_values(self) -> list:
        return ["not-an-option", 1]

    def valid_values(self) -> list:
        return list(self.options)


class Boolean(Constraint):
    """``true`` or ``false`` (a bool, not 0 or 1)."""

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, bool)

    def __str__(self) -> str:
        return "true or false"

    def invalid_values(self) -> list:
        return [1, "yes"]

    def valid_values(self) -> list:
        return [True, False]


class String(Constraint):
    """Any non-empty string (a path, a name)."""

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, str) and value != ""

    def __str__(self) -> str:
        return "a non-empty string"

    def invalid_values(self) -> list:
        return ["", 1]

    def valid_values(self) -> list:
        return ["x"]


class Digits(Constraint):
    """A string of decimal digits (an int written as text, e.g. a JSON key)."""

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, str) and value.isascii() and value.isdigit()

    def __str__(self) -> str:
        return "a string of digits"

    def invalid_values(self) -> list:
        return ["-1", "x"]

    def valid_values(self) -> list:
        return ["0"]


def _as_list(constraints) -> list:
    return list(constraints) if isinstance(constraints, (list, tuple)) else [constraints]


def _satisfies(constraints, value) -> bool:
    return any(value is None if c is None else c.is_satisfied_by(value) for c in _as_list(constraints))


def describe(constraints) -> str:
    """``"null or an int >= 1"``: what a value must be, read after "must be"."""
    return " or ".join("null" if c is None else str(c) for c in _as_list(constraints))


class ListOf(Constraint):
    """A list (or tuple) of at least ``min_length`` items, each satisfying ``items``."""

    def __init__(self, items, min_length: int = 0):
        self.items, self.min_length = items, min_length

    def is_satisfied_by(self, value) -> bool:
        return (isinstance(value, (list, tuple)) and len(value) >= self.min_length
                and all(_satisfies(self.items, v) for v in value))

    def __str__(self) -> str:
        size = f"{self.min_length} or more " if self.min_length else ""
        return f"a list of {size}items that are each {describe(self.items)}"

    def invalid_values(self) -> list:
        bad = [v for c in _as_list(self.items) if c is not None for v in c.invalid_values()
               if not _satisfies(self.items, v)]
        out = ["x", [bad[0]] * max(1, self.min_length)]
        if self.min_length:
            out.append([])
        return out

    def valid_values(self) -> list:
        good = [v for c in _as_list(self.items) if c is not None for v in c.valid_values()]
        return [good[:1] * max(1, self.min_length)]


class MappingOf(Constraint):
    """A mapping whose keys satisfy ``keys`` and whose values satisfy ``values``."""

    def __init__(self, keys, values):
        self.keys, self.values = keys, values

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, dict) and all(_satisfies(self.keys, k) and _satisfies(self.values, v)
                                               for k, v in value.items())

    def __str__(self) -> str:
        return f"a mapping from {describe(self.keys)} to {describe(self.values)}"

    def invalid_values(self) -> list:
        good_key = [v for c in _as_list(self.keys) if c is not None for v in c.valid_values()][0]
        bad_value = [v for c in _as_list(self.values) if c is not None for v in c.invalid_values()
                     if not _satisfies(self.values, v) and isinstance(v, (int, float, str))][0]
        return [[1, 2], {good_key: bad_value}]

    def valid_values(self) -> list:
        key = [v for c in _as_list(self.keys) if c is not None for v in c.valid_values()][0]
        value = [v for c in _as_list(self.values) if c is not None for v in c.valid_values()][0]
        return [{}, {key: value}]


@dataclass(frozen=True)
class RunFacts:
    """What a scenario says about the run, for checks relative to it (``None``: unknown).

    ``min_neighbours``/``max_neighbours``: the fewest and most neighbours a peer has
    (received heads per round, before any is dropped); ``n_byzantine``: Byzantine peers.
    """

    n_peers: Optional[int] = None
    n_byzantine: Optional[int] = None
    min_neighbours: Optional[int] = None
    max_neighbours: Optional[int] = None
    n_classes: Optional[int] = None

    @property
    def most_neighbours(self) -> Optional[int]:
        """The most neighbours a peer can have: ``max_neighbours``, else ``n_peers - 1``."""
        if self.max_neighbours is not None:
            return self.max_neighbours
        return None if self.n_peers is None else self.n_peers - 1


def at_most_neighbours(args: dict, facts: RunFacts, *names: str) -> list:
    """``check_run`` problems for count arguments (``f``, ...) above the most neighbours a
    peer has: a rule cannot meet more Byzantine neighbours than it has neighbours."""
    limit = facts.most_neighbours
    if limit is None:
        return []
    return [(name, f"must be at most {limit}, the most neighbours a peer has in this topology")
            for name in names if args.get(name) is not None and args[name] > limit]


def declare(parameters: dict, check_run: Optional[Callable] = None, **hooks: Callable) -> Callable:
    """Decorator for a function plugin (a topology builder, a dataset loader, a
    backbone): its ``parameters``, optional ``check_run`` and the kind's other hooks (a
    dataset's ``class_count(args)``) as function attributes, as a class plugin has them
    as class attributes. Put it below ``@register`` so that the declaration exists when
    the plugin registers."""
    def deco(fn: Callable) -> Callable:
        fn.parameters = parameters
        if check_run is not None:
            fn.check_run = check_run
        for name, hook in hooks.items():
            setattr(fn, name, hook)
        return fn
    return deco


def defaults(plugin: Callable) -> dict:
    """The keyword defaults of ``plugin``'s declared parameters, from its signature."""
    signature = inspect.signature(plugin)
    return {name: signature.parameters[name].default for name in plugin.parameters
            if name in signature.parameters
            and signature.parameters[name].default is not inspect.Parameter.empty}


def _path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def validate(plugin: Callable, args: dict, *, name: str, prefix: str = "",
             facts: Optional[RunFacts] = None) -> None:
    """Check ``args`` against ``plugin.parameters`` and ``plugin.check_run``; raise the
    first problem as a :class:`ParameterError`. ``name`` is the plugin's registered name
    (for unknown arguments), ``prefix`` the key path of ``args`` in the scenario."""
    declared = plugin.parameters
    for arg, value in args.items():
        if arg not in declared:
            allowed = list(declared)
            close = difflib.get_close_matches(str(arg), allowed, n=2)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ParameterError(f"{_path(prefix, arg)}: unknown argument of {name}{hint}; "
                                 f"allowed: {', '.join(allowed) or 'none'}")
        if not _satisfies(declared[arg], value):
            raise ParameterError(f"{_path(prefix, arg)}: must be {describe(declared[arg])}; got {value!r}")
    missing = [arg for arg in declared if arg not in args and arg not in defaults(plugin)]
    if missing:
        raise ParameterError(f"{_path(prefix, missing[0])}: must be given ({describe(declared[missing[0]])})")
    problems = check_run(plugin, args, facts or RunFacts())
    if problems:
        arg, requirement = problems[0]
        if arg not in declared:   # a fact of the run, not an argument: the requirement says what it is
            raise ParameterError(f"{prefix + ': ' if prefix else ''}{arg} {requirement}")
        value = args.get(arg, defaults(plugin).get(arg))
        raise ParameterError(f"{_path(prefix, arg)}: {requirement}; got {value!r}")


def check_run(plugin: Callable, args: dict, facts: RunFacts) -> list:
    """``plugin.check_run(args with defaults, facts)``: ``[(argument, requirement)]``."""
    hook = getattr(plugin, "check_run", None)
    if hook is None:
        return []
    return list(hook({**defaults(plugin), **args}, facts))


def check_declaration(plugin: Callable, reserved: Iterable[str] = ()) -> None:
    """A plugin's ``parameters`` name exactly its keyword arguments other than ``reserved``
    (those the engine passes, e.g. a topology's ``n_peers``); a programming error if not."""
    declared = getattr(plugin, "parameters", None)
    if not isinstance(declared, dict):
        raise TypeError(f"{plugin!r} declares no parameters dict")
    signature = inspect.signature(plugin)
    takes = [n for n, p in signature.parameters.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in reserved and n != "self"]
    if sorted(takes) != sorted(declared):
        raise TypeError(f"{plugin!r}: parameters {sorted(declared)} do not match its arguments {sorted(takes)}")


def invalid_values(constraints) -> list:
    """Values that no constraint of the list accepts (for the common test)."""
    out = []
    for c in _as_list(constraints):
        candidates = [None] if c is None else c.invalid_values()
        out += [v for v in candidates if not _satisfies(constraints, v) and v not in out]
    if None not in _as_list(constraints):
        out.append(None)
    return [v for v in out if not _satisfies(constraints, v)]


def valid_values(constraints) -> list:
    """Values, boundaries first, that some constraint accepts (for the common test)."""
    return [v for c in _as_list(constraints) for v in ([None] if c is None else c.valid_values())]
