"""Every algorithm's docstring follows one skeleton (networkx / ByzFL style: summary and
paper, formula, Parameters, Notes, References, Examples) and every example in the
algorithm packages and the functional layer runs and prints what it says (doctest)."""
from __future__ import annotations

import doctest
import importlib
import inspect
import io
import pkgutil

import pytest

import attacks
import defenses
from fedsim.registry import lookup, names

KINDS = ("defenses", "privacy_defenses", "attacks", "inversions")


def documented_modules() -> list[str]:
    found = ["fedsim.functional", "fedsim.examples", "defenses", "attacks"]
    for package in (defenses, attacks):
        found += [info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    return sorted(found)


@pytest.mark.parametrize("module_name", documented_modules())
def test_the_examples_run(module_name):
    module = importlib.import_module(module_name)
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(module, module_name):
        runner.run(test, out=report.write)
    assert runner.failures == 0, report.getvalue()


def sections(doc: str) -> list[str]:
    """Titles of the numpydoc sections of ``doc`` (a line underlined with dashes)."""
    lines = doc.splitlines()
    return [lines[i].strip() for i in range(len(lines) - 1)
            if lines[i].strip() and set(lines[i + 1].strip()) == {"-"}
            and len(lines[i + 1].strip()) == len(lines[i].strip())]


PLUGINS = [(kind, name) for kind in KINDS for name in names(kind)]


def test_the_skeleton_check_sees_every_kind():
    assert {kind for kind, _ in PLUGINS} == set(KINDS)
    assert sections("Title.\n\nParameters\n----------\nf : int\n\nExamples\n--------\n>>> 1\n1\n") == \
        ["Parameters", "Examples"]


@pytest.mark.parametrize("kind,name", PLUGINS)
def test_every_algorithm_has_the_skeleton(kind, name):
    plugin = lookup(kind, name)
    doc = inspect.getdoc(plugin) or ""
    found = sections(doc)
    assert {"References", "Examples"} <= set(found), f"{name}: sections {found}"
    order = [s for s in ("Parameters", "Notes", "References", "Examples") if s in found]
    assert found[-len(order):] == order or found == order, f"{name}: sections out of order {found}"
    examples = doc.split("Examples\n--------", 1)[1]
    assert ">>> " in examples, f"{name}: the Examples section shows no code"
    arguments = [p for p in inspect.signature(plugin.__init__).parameters if p not in ("self", "args", "kwargs")]
    if arguments:
        assert "Parameters" in found, f"{name}: no Parameters section"
        block = doc.split("Parameters\n----------", 1)[1].split("\n\n")[0:]
        text = "\n".join(block)
        for argument in arguments:
            assert f"\n{argument} : " in "\n" + text, f"{name}: parameter {argument!r} undocumented"
