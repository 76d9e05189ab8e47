"""The config reference (docs/config-reference.md) and the JSON schema (`edge-agent schema`),
generated from the models themselves, so the docs cannot drift from what the loader accepts.
``python -m agent.config.reference``.

A field's description is the docstring under it in its model's class, read here from the source
(the rule of pydantic's ``use_attribute_docstrings``, which the models leave off so that a start
does not parse every model's source), or a ``Field(description=...)`` where one is given.
"""

from __future__ import annotations

import ast
import enum
import functools
import inspect
import itertools
import sys
import textwrap
import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import PydanticUndefined, core_schema

from agent.config.model import SiteConfig

__all__ = ["description", "json_schema", "models", "render", "undocumented"]


@functools.cache
def _attribute_docstrings(cls: type) -> dict[str, str]:
    """The docstrings under the annotated attributes of ``cls``'s own body."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source (a class made at run time)
        return {}
    body = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)).body
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def description(model: type[BaseModel], name: str) -> str | None:
    """The description of ``model``'s field ``name``: its ``Field(description=...)``, else the
    docstring under it in the class that declares it (a subclass that declares a field again
    describes it again)."""
    field = model.model_fields[name]
    if field.description is not None:
        return field.description
    for cls in model.__mro__:
        if name in inspect.get_annotations(cls):
            return _attribute_docstrings(cls).get(name)
    return None


class _Described(GenerateJsonSchema):
    """pydantic's JSON schema with each property's description from `description`."""

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        model = schema["cls"]
        properties = json_schema.get("properties", {})
        for name, field in model.model_fields.items():
            key = field.alias if self.by_alias and field.alias else name
            text = description(model, name)
            if key in properties and text and "description" not in properties[key]:
                # as pydantic does: no description beside a $ref that only repeats its own
                described = {**properties[key], "description": text}
                properties[key] = self.handle_ref_overrides(described)
        return json_schema


def json_schema() -> dict[str, Any]:
    """The site config's JSON schema (draft 2020-12), for editors that check YAML as typed."""
    schema = SiteConfig.model_json_schema(by_alias=True, schema_generator=_Described)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Building Edge Agent site config"
    return schema


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
        for name in model.model_fields
        if not description(model, name)
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
            text = (description(model, name) or "").replace("\n", " ").replace("|", "\\|")
            type_name = _type_name(field.annotation).replace("|", "\\|")
            lines.append(f"| `{key}` | {type_name} | {_default(field)} | {text} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
