"""Defenses: aggregation rules (``defenses.aggregation``) and sender-side privacy
transforms (``defenses.privacy``).

``get_defense(name, **args)`` builds an aggregation rule by its registered name; the
keyword arguments are a scenario's ``defense.args``. Where each name lives:

==================  ==========================================
name                module
==================  ==========================================
mean                defenses/aggregation/mean.py
bristle             defenses/aggregation/bristle.py
median              defenses/aggregation/coordinate.py
trimmed_mean        defenses/aggregation/coordinate.py
bridge              defenses/aggregation/coordinate.py
krum                defenses/aggregation/krum.py
multi_krum          defenses/aggregation/krum.py
bulyan              defenses/aggregation/krum.py
geometric_median    defenses/aggregation/geometric_median.py
centered_clipping   defenses/aggregation/clipping.py
clipped_gossip      defenses/aggregation/clipping.py
mozi                defenses/aggregation/mozi.py
ubar                defenses/aggregation/ubar.py
balance             defenses/aggregation/balance.py
ios                 defenses/aggregation/ios.py
fltrust             defenses/aggregation/fltrust.py
foolsgold           defenses/aggregation/foolsgold.py
none, dp_gaussian,  defenses/privacy/transforms.py
topk, quantize      (privacy_defenses: sender-side transforms)
adaptive_quantize   defenses/privacy/adaptive.py
==================  ==========================================
"""
from __future__ import annotations

import importlib
import pkgutil

from fedsim.registry import create, names

from defenses.base import Defense  # noqa: F401


def _import_all() -> None:
    # Every module of the two subpackages registers its names on import.
    for sub in ("aggregation", "privacy"):
        package = importlib.import_module(f"{__name__}.{sub}")
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")


_import_all()


def get_defense(name: str, **args) -> Defense:
    return create("defenses", name, **args)


def list_defenses() -> list[str]:
    return names("defenses")
