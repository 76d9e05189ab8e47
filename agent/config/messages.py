"""Plain sentences for config problems: pydantic's validation errors and YAML's syntax errors.

A technician reads these on a gateway's console, so each names what is wrong and what to write
instead, in the words of the config file (its keys, not the models' attribute names).
"""

from __future__ import annotations

import enum
import re
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from agent.core.suggest import did_you_mean

if TYPE_CHECKING:
    from ruamel.yaml.error import MarkedYAMLError

__all__ = ["Sentence", "describe", "file_sentence", "validation_sentence", "yaml_sentence"]

Loc = tuple[str | int, ...]

# What the patterns of our models allow, in words (the regex itself means nothing on site).
_PATTERNS = {
    r"^[a-z0-9][a-z0-9_-]*$": (
        "may use only lowercase letters a-z, digits, _ and -, and must start with a letter or digit"
    ),
    r"^[a-z0-9][a-z0-9_]*$": (
        "may use only lowercase letters a-z, digits and _, and must start with a letter or digit"
    ),
    r"^[^#+/][^#+]*$": "must not contain # or + and must not start with /",
}

# The names of the things a discriminated union chooses between, by the section holding them.
_KIND_NOUNS = {"buses": "bus kind", "devices": "protocol"}


@dataclass(frozen=True)
class Sentence:
    """A translated validation error: where to point, and what to say."""

    loc: Loc  # the YAML path of the issue (union tags removed)
    message: str
    at_key: bool = False  # point at the key itself (an unknown or badly named key)
    missing: str | None = None  # the required key a "missing" error names
    meant: str | None = None  # the key an unknown key was probably meant to be


def describe(value: Any) -> str:
    """A value as a technician would name it: "the number 5", "the text 'abc'", "a list"."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the value {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    kinds: dict[type, str] = {list: "a list", tuple: "a list", dict: "a mapping"}
    return kinds.get(type(value), f"a {type(value).__name__} value")


# --- the models' shape, walked along a pydantic location ---------------------------------------


def _unwrap(annotation: Any) -> Any:
    """The type under ``Annotated[...]`` and ``X | None``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _union_models(annotation: Any) -> list[type[BaseModel]]:
    if get_origin(annotation) in (Union, types.UnionType):
        # Members may be tagged (``Annotated[Model, Tag("modbus")]``: the devices' union).
        members = [_unwrap(a) for a in get_args(annotation)]
        return [m for m in members if _is_model(m)]
    return []


def _field(model: type[BaseModel], key: str | int) -> Any:
    for name, info in model.model_fields.items():
        if (info.alias or name) == key:
            return info.annotation
    return None


def _choices(annotation: Any) -> list[Any] | None:
    """The allowed values of a Literal or Enum type, in the order they are declared."""
    annotation = _unwrap(annotation)
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [member.value for member in annotation]
    return None


def _kind_tags(annotation: Any, discriminator: str) -> list[str]:
    tags: list[str] = []
    for model in _union_models(_unwrap(annotation)):
        tags.extend(str(c) for c in _choices(_field(model, discriminator)) or [])
    return tags


@dataclass(frozen=True)
class _Step:
    """Where a pydantic location leads in the models."""

    annotation: Any  # None when the location leaves the models (an unknown key)
    yaml_loc: Loc  # the location without the union tags pydantic inserts


def _walk(root: type[BaseModel], loc: Loc) -> _Step:
    annotation: Any = root
    yaml_loc: list[str | int] = []
    for part in loc:
        current = _unwrap(annotation)
        members = _union_models(current)
        if members:
            # A discriminated union: pydantic names the chosen member by its tag.
            chosen = [
                m
                for m in members
                if any(part in (_choices(i.annotation) or []) for i in m.model_fields.values())
            ]
            annotation = chosen[0] if chosen else None
            continue
        yaml_loc.append(part)
        if _is_model(current):
            annotation = _field(current, part)
        elif get_origin(current) is dict:
            annotation = get_args(current)[1]
        elif get_origin(current) is list:
            annotation = get_args(current)[0]
        else:
            annotation = None
    return _Step(annotation, tuple(yaml_loc))


def _model_keys(root: type[BaseModel], loc: Loc) -> tuple[list[str], dict[str, str]]:
    """The keys a mapping at ``loc`` accepts, and attribute names that are written otherwise."""
    target = _unwrap(_walk(root, loc).annotation)
    # Without its union tag a location ends on the union itself: offer every member's keys.
    models = [target] if _is_model(target) else _union_models(target)
    keys: list[str] = []
    renamed: dict[str, str] = {}
    for model in models:
        for name, info in model.model_fields.items():
            if (info.alias or name) not in keys:
                keys.append(info.alias or name)
            if info.alias:
                renamed[name] = info.alias
    return keys, renamed


# --- pydantic errors -----------------------------------------------------------------------------


def _quoted_choices(choices: list[Any]) -> str:
    return ", ".join(str(c) for c in choices)


def _choice_hint(value: Any, choices: list[Any]) -> str:
    text = str(value)
    same_case = [c for c in choices if str(c).lower() == text.lower()]
    if same_case:
        return f" (did you mean {str(same_case[0])!r}?)"
    return did_you_mean(text, [str(c) for c in choices])


def _not_one_of(value: Any, choices: list[Any], raw: str | None) -> str:
    listed = _quoted_choices(choices)
    if value is None:
        return f"has no value; write one of: {listed}"
    if not isinstance(value, str) and str(value) in [c for c in choices if isinstance(c, str)]:
        # `protocol: 5` is the number 5, not the text '5' the model expects.
        return f"{raw or value} is read as a number here; write it in quotes: '{raw or value}'"
    shown = repr(value) if isinstance(value, str) else str(raw or value)
    return f"{shown} is not one of: {listed}{_choice_hint(value, choices)}"


def _must_be(what: str, value: Any, raw: str | None) -> str:
    if value is None:
        return f"has no value; write {what}"
    return f"must be {what}, not {describe(value)}"


def _text_expected(value: Any, raw: str | None, subject: str = "") -> str:
    if value is None:
        return f"{subject}has no value; write some text"
    if isinstance(value, bool | int | float):
        written = raw if raw is not None else str(value)
        return (
            f"{subject}must be text, not {describe(value)}; "
            f"write it in quotes if it is meant as text: '{written}'"
        )
    return f"{subject}must be text, not {describe(value)}"


def _mapping_expected(value: Any) -> str:
    if value is None:
        return "is empty; it needs its keys written under it, indented"
    if isinstance(value, list):
        return "must be a mapping of `key: value` lines, not a list (remove the '- ')"
    return f"must be a mapping of `key: value` lines, not {describe(value)}"


def _list_expected(value: Any) -> str:
    if value is None:
        return "is empty; it needs a list of items, each starting with '- '"
    if isinstance(value, dict):
        return "must be a list (start each item with '- '), not a mapping"
    return f"must be a list (start each item with '- '), not {describe(value)}"


def _pattern_sentence(value: Any, pattern: str, *, is_key: bool) -> str:
    rule = _PATTERNS.get(pattern, f"does not have the required form (the pattern {pattern})")
    return f"the name {value!r} {rule}" if is_key else f"{value!r} {rule}"


def _strip_prefix(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message.removeprefix(prefix)
    return message


def _extra_key(root: type[BaseModel], loc: Loc, key: Any) -> str:
    """``loc``: pydantic's location, union tags included (they pick the model whose keys
    belong here)."""
    keys, renamed = _model_keys(root, loc[:-1])
    if not isinstance(key, str):
        return f"{describe(key)} is not a key that belongs here"
    if key in renamed:
        return f"unknown key {key!r}: write it as {renamed[key]!r}"
    hint = did_you_mean(key, keys)
    if hint or not keys:
        return f"unknown key {key!r}{hint}"
    return f"unknown key {key!r}; the keys here are: {', '.join(keys)}"


def _bounds(kind: str, ctx: dict[str, Any], value: Any) -> str:
    limit = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("more than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }[kind]
    return f"must be {limit[0]} {_number(ctx.get(limit[1]))}, not {_number(value)}"


def _number(value: Any) -> Any:
    """``0`` rather than ``0.0`` for a bound pydantic keeps as a float."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _length_sentence(kind: str, ctx: dict[str, Any], value: Any) -> str:
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must be at least {least} characters long"
    return f"must be at most {ctx.get('max_length')} characters long, not {len(value)}"


def _kind_sentence(root: type[BaseModel], error: dict[str, Any], step: _Step) -> Sentence:
    ctx = error.get("ctx") or {}
    key = str(ctx.get("discriminator", "kind")).strip("'")
    if key.endswith("()"):  # a callable discriminator: the devices' protocol (Modbus by default)
        key = "protocol"
    tags = _kind_tags(step.annotation, key)
    noun = _KIND_NOUNS.get(str(step.yaml_loc[0]), "kind") if step.yaml_loc else "kind"
    listed = ", ".join(tags)
    value = error["input"]
    if error["type"] == "union_tag_not_found" or not isinstance(value, dict) or key not in value:
        return Sentence(
            step.yaml_loc, f"the required key {key!r} is missing; the {noun}s are: {listed}"
        )
    tag = value[key]
    if tag is None:
        message = f"has no value; the {noun}s are: {listed}"
    elif not isinstance(tag, str):
        message = f"{describe(tag)} is not a {noun}; the {noun}s are: {listed}"
    else:
        message = f"{tag!r} is not a {noun}{did_you_mean(tag, tags)}; the {noun}s are: {listed}"
    return Sentence((*step.yaml_loc, key), message)


def validation_sentence(  # noqa: PLR0912 -- one branch per pydantic error type
    root: type[BaseModel],
    error: dict[str, Any],
    written: Callable[[Loc], str | None] = lambda loc: None,
) -> Sentence:
    """A sentence for one item of ``ValidationError.errors(include_url=False)``.

    ``written(loc)`` gives a scalar as written in the file, when known, so that a hint can quote
    it as the technician wrote it (`0x10`, not 16).
    """
    kind: str = error["type"]
    loc: Loc = tuple(error["loc"])
    value = error.get("input")
    ctx: dict[str, Any] = error.get("ctx") or {}
    is_key = bool(loc) and loc[-1] == "[key]"
    if is_key:
        loc = loc[:-1]
    step = _walk(root, loc)
    where = step.yaml_loc
    raw = written(where) if not is_key else None

    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _kind_sentence(root, error, step)
    if kind == "missing":
        return Sentence(
            where[:-1], f"the required key {where[-1]!r} is missing", missing=str(where[-1])
        )
    if kind == "extra_forbidden":
        key = where[-1] if where else None
        keys, _ = _model_keys(root, loc[:-1])
        import difflib  # only for a config with an error

        close = difflib.get_close_matches(str(key), keys, n=1, cutoff=0.6)
        return Sentence(
            where, _extra_key(root, loc, key), at_key=True, meant=close[0] if close else None
        )
    if kind == "invalid_key":
        name = "is empty" if value is None else f"is {describe(value)}"
        return Sentence(where, f"a key must be a name, and this one {name}", at_key=True)
    if kind == "string_type":
        subject = f"the name {raw or value} " if is_key else ""
        return Sentence(where, _text_expected(value, raw, subject), at_key=is_key)
    if kind == "string_pattern_mismatch":
        return Sentence(
            where, _pattern_sentence(value, ctx.get("pattern", ""), is_key=is_key), at_key=is_key
        )
    if kind in ("string_too_short", "string_too_long"):
        return Sentence(where, _length_sentence(kind, ctx, value), at_key=is_key)
    if kind in ("literal_error", "enum"):
        choices = _choices(step.annotation)
        if choices is None:
            choices = [c.strip("'") for c in re.split(r", | or ", str(ctx.get("expected", "")))]
        return Sentence(where, _not_one_of(value, choices, raw))
    if kind in ("int_parsing", "int_from_float"):
        return Sentence(where, f"{value!r} is not a whole number")
    if kind == "float_parsing":
        return Sentence(where, f"{value!r} is not a number")
    if kind == "bool_parsing":
        return Sentence(where, f"{value!r} is neither true nor false; write true or false")
    if kind in ("int_type", "float_type", "bool_type", "path_type"):
        what = {
            "int_type": "a whole number",
            "float_type": "a number",
            "bool_type": "true or false",
            "path_type": "a file path",
        }[kind]
        return Sentence(where, _must_be(what, value, raw))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return Sentence(where, _mapping_expected(value))
    if kind == "list_type":
        return Sentence(where, _list_expected(value))
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return Sentence(where, _bounds(kind, ctx, raw or value))
    if kind == "finite_number":
        return Sentence(where, f"must be a finite number, not {value}")
    message = _strip_prefix(str(error.get("msg", "is not valid")))
    return Sentence(where, message[:1].lower() + message[1:])


# --- YAML syntax errors --------------------------------------------------------------------------


def _mark(mark: Any) -> tuple[int, int] | None:
    """1-based (line, column) of a ruamel mark."""
    if mark is None:
        return None
    return mark.line + 1, mark.column + 1


def _missing_space_line(lines: list[str], before: int) -> int | None:
    """The last line before ``before`` (1-based) written `key:value` without a space."""
    for number in range(before - 1, 0, -1):
        text = lines[number - 1]
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if re.match(r"^\s*(- )?[\w.-]+:[^\s:/]", text):
            return number
        return None
    return None


def yaml_sentence(error: MarkedYAMLError, lines: list[str]) -> tuple[tuple[int, int] | None, str]:
    """Where a YAML syntax error is, and a sentence for it."""
    problem = str(error.problem or "")
    context = str(error.context or "")
    at = _mark(error.problem_mark) or _mark(error.context_mark)
    opened = _mark(error.context_mark)
    if "'\\t'" in problem or "tab" in problem:
        line = lines[at[0] - 1] if at and at[0] <= len(lines) else ""
        if at and not line[: at[1] - 1].strip():
            return at, "a tab character cannot indent YAML; use spaces"
        return at, "a tab character cannot separate values here; use spaces"
    if match := re.match(r"found character '(.+)' that cannot start any token", problem):
        return at, f"a value cannot start with {match.group(1)!r}; put the value in quotes"
    if match := re.match(r"expected ',' or '([\]}])', but got", problem):
        closer = match.group(1)
        opener = "[" if closer == "]" else "{"
        where = f" on line {opened[0]}" if opened else ""
        return (
            at,
            f"the {opener!r} opened{where} is not closed: a ',' or {closer!r} was expected here",
        )
    if "unexpected end of stream" in problem and "quoted scalar" in context:
        return opened or at, "this quote is never closed"
    if match := re.match(r"found unknown escape character '(.*)'", problem):
        return at, (
            f"'\\{match.group(1)}' is not an escape that double quotes allow; "
            "for a Windows path use single quotes ('C:\\data\\pw.txt') or forward slashes"
        )
    if match := re.match(r"found undefined alias '(.*)'", problem):
        name = match.group(1)
        return at, f"the alias *{name} refers to no anchor &{name} defined before it"
    if "mapping values are not allowed" in problem:
        culprit = _missing_space_line(lines, at[0]) if at else None
        if culprit is not None:
            return (culprit, 1), "a space is missing after the ':' of this `key: value`"
        return at, (
            "a ':' is not allowed here; check the indentation of this line, "
            "and put a value that contains ': ' in quotes"
        )
    if "could not find expected ':'" in problem:
        return at or opened, "this line is not a `key: value` pair (is the ':' or a space missing?)"
    if (
        "expected <block end>" in problem
        or "did not find expected key" in problem
        or ("did not find expected '-'" in problem)
    ):
        where = f" that starts on line {opened[0]}" if opened else ""
        return at, (
            f"this line does not line up with the block{where}; check the spaces at its start "
            "(keys of one mapping, or the '- ' of one list, must start in the same column)"
        )
    sentence = f"the YAML cannot be read: {problem}" if problem else "the YAML cannot be read"
    if context and opened:
        sentence += f" ({context} on line {opened[0]})"
    return at, sentence


def file_sentence(path: Path) -> str | None:
    """Why the file a ``*_file`` setting names (a password, a key, a certificate, a secret)
    cannot be read by this process, or None when it can. Read as the agent will read it: a
    relative path from the working directory."""
    where = "" if path.is_absolute() else f" (looked for {path.absolute()})"
    try:
        with path.open("rb"):
            pass
    except FileNotFoundError:
        return f"there is no file {path}{where}"
    except IsADirectoryError:
        return f"{path} is a directory, not a file"
    except PermissionError:
        import getpass  # only for a file the service cannot read

        return (
            f"{path} cannot be read by this user ({getpass.getuser()}): give the service's user "
            "read access (e.g. chmod 0640 and the service's group)"
        )
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror or exc}{where}"
    return None
