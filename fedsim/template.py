"""``fedsim init``: a scenario with every key, its default and a one-line comment, generated
from the schema in fedsim/config.py (each field's ``description``), so it cannot drift."""
from __future__ import annotations

import yaml
from pydantic import BaseModel

from fedsim.config import Scenario

COMMENT_COLUMN = 44


def _model_of(annotation):
    for arg in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, arg is not annotation
    return None, False


def _yaml_value(value) -> str:
    """A value as one line of YAML flow style: mean, 0.05, null, {}, [1]."""
    return yaml.safe_dump([value], default_flow_style=True, width=1 << 16).strip()[1:-1]


def _line(indent: int, text: str, comment: str) -> str:
    text = " " * indent + text
    return f"{text.ljust(COMMENT_COLUMN)}  # {comment}" if comment else text


def _lines(model, indent: int, full: bool) -> list[str]:
    out = []
    for key, field in model.model_fields.items():
        comment = field.description or ""
        inner, optional = _model_of(field.annotation)
        if inner is not None and optional and not full:
            out.append(_line(indent, f"# {key}: ...", f"{comment} (absent by default; fedsim init --full lists its keys)"))
        elif inner is not None:
            out.append(_line(indent, f"{key}:", comment))
            out += _lines(inner, indent + 2, full)
        else:
            out.append(_line(indent, f"{key}: {_yaml_value(field.get_default(call_default_factory=True))}", comment))
    return out


def scenario_template(full: bool = False) -> str:
    """The scenario YAML: every key of :class:`~fedsim.config.Scenario` with its default;
    ``full`` also writes the optional sections (adversary, privacy) with their defaults."""
    head = ["# A fedsim scenario: every key with its default value (generated from fedsim/config.py).",
            "# Run it with `fedsim run FILE`; check it with `fedsim validate FILE`."]
    return "\n".join(head + _lines(Scenario, 0, full)) + "\n"
