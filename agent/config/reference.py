"""The config reference (docs/config-reference.md), generated from the models themselves,
so the docs cannot drift from what the loader accepts. ``python -m agent.config.reference``."""

from __future__ import annotations

import enum
import sys
import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from agent.config.model import SiteConfig

__all__ = ["models", "render", "undocumented"]


def _inner_models(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in get_args(annotation):
        found.extend(_inner_models(arg))
    return found


def models(root: type[BaseModel] = SiteConfig) -> list[type[BaseModel]]:
    """Every model reachable from ``root``, in reading order."""
    seen: list[type[BaseModel]] = []
    todo = [root]
    while todo:
        model = todo.pop(0)
        if model in seen:
            continue
        seen.append(model)
        for field in model.model_fields.values():
            todo.extend(m for m in _inner_models(field.annotation) if m not in seen)
    return seen


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation) if a is not type(None))
    if origin is typing.Literal:
        return " / ".join(str(a) for a in get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(get_args(annotation)[0])
    if origin is dict:
        return f"mapping of {_type_name(get_args(annotation)[1])}"
    if origin is list:
        return f"list of {_type_name(get_args(annotation)[0])}"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " / ".join(str(m.value) for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if annotation is float:
        return "number"
    if annotation is int:
        return "whole number"
    if annotation is str:
        return "text"
    if annotation is bool:
        return "true / false"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        return "empty"
    value = field.default
    if value is None or value is PydanticUndefined:
        return "—"
    if isinstance(value, BaseModel):
        return "defaults"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    return f"`{value}`"


def undocumented() -> list[str]:
    """Fields without a description (a test keeps this empty)."""
    return [
        f"{model.__name__}.{name}"
        for model in models()
        for name, field in model.model_fields.items()
        if not field.description
    ]


def render() -> str:
    lines = [
        "# Site config reference",
        "",
        "Generated from the config models by `python -m agent.config.reference`; do not edit.",
        "Durations are written `250ms`, `5s`, `1m`, `2h` or as a number of seconds.",
        "",
    ]
    for model in models():
        lines += [f"## {model.__name__}", "", (model.__doc__ or "").strip().splitlines()[0], ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            key = field.alias or name
            description = (field.description or "").replace("\n", " ").replace("|", "\\|")
            type_name = _type_name(field.annotation).replace("|", "\\|")
            lines.append(f"| `{key}` | {type_name} | {_default(field)} | {description} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
