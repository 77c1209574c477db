"""The layering: fedsim depends on nothing outside itself, and every plugin fills in
fedsim.api's interface for its kind."""
import ast
import functools
import inspect
from pathlib import Path

import pytest

from fedsim import api
from fedsim.registry import lookup, names

FEDSIM = Path(api.__file__).resolve().parent
FORBIDDEN = ("attacks", "defenses")

# registry kind -> the interface its plugins implement
INTERFACES = {"defenses": api.Defense, "attacks": api.Attack, "privacy_defenses": api.PrivacyDefense,
              "inversions": api.InversionAttack}


def imported_modules(tree: ast.AST):
    """``(line, module)`` of every import anywhere in ``tree`` (module level, inside
    functions, under ``if``), and of ``importlib.import_module("...")`` /
    ``__import__("...")`` calls with a literal name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value


def forbidden_imports(source: str, filename: str) -> list[str]:
    return [f"{filename}:{line}: imports {module}"
            for line, module in imported_modules(ast.parse(source, filename))
            if module.split(".")[0] in FORBIDDEN]


def test_the_checker_finds_every_kind_of_import():
    source = ("import attacks\n"
              "from defenses.base import Defense\n"
              "def f():\n"
              "    from attacks.inversion import generator\n"
              "    import defenses.privacy.transforms as t\n"
              "if True:\n"
              "    importlib.import_module('attacks.byzantine')\n"
              "import fedsim.api, attackslike\n"
              "from . import defenses\n")
    assert [p.split(": ")[1] for p in forbidden_imports(source, "x.py")] == [
        "imports attacks", "imports defenses.base", "imports attacks.inversion", "imports defenses.privacy.transforms",
        "imports attacks.byzantine"]


def test_nothing_under_fedsim_imports_attacks_or_defenses():
    files = sorted(FEDSIM.rglob("*.py"))
    assert len(files) > 20   # the walk sees the package
    problems = [p for path in files for p in forbidden_imports(path.read_text(), str(path.relative_to(FEDSIM)))]
    assert problems == []


@pytest.mark.parametrize("kind", sorted(INTERFACES))
def test_every_registered_plugin_implements_its_interface(kind):
    registered = names(kind)
    assert registered
    for name in registered:
        plugin = lookup(kind, name)
        assert inspect.isclass(plugin) and issubclass(plugin, INTERFACES[kind]), (kind, name)
        assert not inspect.isabstract(plugin), (kind, name, plugin.__abstractmethods__)


def test_the_interfaces_cannot_be_instantiated_without_their_required_method():
    for interface in INTERFACES.values():
        with pytest.raises(TypeError, match="abstract"):
            interface()


def test_both_backends_offer_what_the_backend_protocol_declares():
    from fedsim.engine.local import LocalBackend
    from fedsim.engine.ray_backend import RayBackend
    declared = {n for n, v in vars(api.Backend).items() if inspect.isfunction(v) and not n.startswith("_")}
    declared |= set(api.Backend.__annotations__)
    assert {"round", "evaluate", "consensus_distance", "heads", "state_dict", "load_state_dict", "close",
            "sent_heads", "name"} <= declared
    for backend in (LocalBackend, RayBackend):
        missing = sorted(n for n in declared if not hasattr(backend, n))
        assert missing == [], (backend.__name__, missing)


def test_each_plugin_is_built_once_per_run_in_one_process(monkeypatch, tmp_path):
    """build_world builds the plugins (the attack may poison data there) and the host uses
    the same instances: one attack and one defense per run, where there were three attacks."""
    import fedsim
    from tests.conftest import tiny_scenario

    built: dict[str, int] = {}
    for kind, name in (("attacks", "gaussian"), ("defenses", "median")):
        cls = lookup(kind, name)
        original = cls.__init__

        @functools.wraps(original)  # the validator reads defaults from the signature
        def counting(self, *args, _original=original, _name=name, **kwargs):
            built[_name] = built.get(_name, 0) + 1
            _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counting)
    scenario = tiny_scenario(**{"rounds": 2, "defense.name": "median",
                                "adversary": {"count": 2, "attack": {"name": "gaussian"}}})
    fedsim.run(scenario, out=tmp_path / "run", progress=False)
    assert built == {"gaussian": 1, "median": 1}
