"""The quick way from config text to plain data, for a config with nothing to report.

ruamel.yaml's pure-Python parser takes about 2 s for a site of 200 meters with 35 explicit
points each; libyaml, the C parser of PyYAML (when that is installed, built with it), takes a
sixth of that. The loader tries this path first and, whenever it returns None or the data it
returns does not validate cleanly, reads the file again the located way (agent.config.loader),
which finds every problem and its line and column. So this path only has to be right about
configs that are right, and to give up on anything the located path would check:

- explicit tags (``!``), anchors and aliases (``&``, ``*``) and merge keys (``<<``) anywhere in
  the text, even inside a quoted string (then the located path reads it, as before);
- characters YAML does not allow, a second document, duplicate keys, keys that are not plain
  values, more values than the loader's limit, nesting deeper than its limit, numbers larger
  than its limit.

Each plain scalar is resolved by the YAML 1.2 core schema (YAML 1.2.2, 10.3.2: ``yes`` is text,
``0x10`` a number), as the located path's ruamel.yaml resolves it, once per distinct text;
quoted and block scalars are text. Only the common forms are built here (decimal and hex whole
numbers, decimal numbers with a point or an exponent, true/false, null, dates kept as text);
anything else that could be a number (``0o17``, ``1_000``, ``.inf``) is left to the located
path, so a start on a valid config never imports ruamel.yaml (a test compares both paths on
every scalar of the shipped configs and on the odd ones). No node tree is built: the data comes
straight from the parser's events, so the peak memory of a large config is about its data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

try:  # PyYAML with libyaml: optional, the located path needs only ruamel.yaml
    import yaml as _yaml  # type: ignore[import-untyped,import-not-found,unused-ignore]

    _CLoader: Any = _yaml.CSafeLoader
except (ImportError, AttributeError):  # pragma: no cover - depends on what is installed
    _CLoader = None

__all__ = ["available", "quick_data"]

# What the located path checks or reports, found in the text itself: tags, anchors, aliases,
# merge keys, and the characters YAML 1.2 does not allow (5.1, printable characters).
_GIVE_UP = re.compile(
    "[!&*]|<<|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]"
)
# The YAML 1.2 core schema's words (10.3.2), and the number forms built here.
_WORDS: dict[str, object] = {
    **dict.fromkeys(("null", "Null", "NULL", "~", ""), None),
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
}
_DECIMAL = re.compile(r"[-+]?[0-9]+")  # 017 is 17 in YAML 1.2: no octal without 0o
_HEX = re.compile(r"([-+]?)0x([0-9a-fA-F]+)")
_FLOAT = re.compile(r"[-+]?[0-9]+(?:\.[0-9]*(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# The other forms a YAML 1.2 number takes in ruamel.yaml (0o17, 0b101, 1_000, .5, .inf, ...):
# a text of this shape may be one, and goes to the located path.
_NUMBER_LIKE = re.compile(r"[-+]?(?:0[box][0-9a-f_]+|[-+._0-9e]*|\.(?:inf|nan))", re.IGNORECASE)


class _GiveUp(Exception):
    """Something the located path must look at."""


if _CLoader is not None:

    class _Loader(_CLoader):  # type: ignore[misc]
        """libyaml's parser and composer, resolving nothing: every scalar arrives as text with
        its style, and is resolved here by YAML 1.2 rules (PyYAML's own resolver is YAML 1.1)."""

        yaml_implicit_resolvers: dict[str, Any] = {}  # noqa: RUF012 - PyYAML's class attribute


def available() -> bool:
    """Whether the quick path can run (PyYAML with libyaml is installed)."""
    return _CLoader is not None


class _Builder:
    """Plain data straight from libyaml's parser events: no node tree is ever held, so a large
    config costs its data and little more at its peak."""

    def __init__(self, max_values: int, max_depth: int, max_number: float) -> None:
        self.max_values = max_values
        self.max_depth = max_depth
        self.max_number = max_number
        self.count = 0
        self.plain: dict[str, Any] = {}

    def document(self, events: Iterator[Any]) -> Any:
        """The one document of the stream (_GiveUp for none or more than one)."""
        if not isinstance(next(events), _yaml.StreamStartEvent):
            raise _GiveUp
        if not isinstance(next(events), _yaml.DocumentStartEvent):
            raise _GiveUp  # no document at all
        root = self.value(next(events), events, 0)
        if not isinstance(next(events), _yaml.DocumentEndEvent):
            raise _GiveUp
        if not isinstance(next(events), _yaml.StreamEndEvent):
            raise _GiveUp  # a second document
        return root

    def value(self, event: Any, events: Iterator[Any], depth: int) -> Any:
        self.count += 1
        if self.count > self.max_values or depth > self.max_depth:
            raise _GiveUp
        if isinstance(event, _yaml.ScalarEvent):
            return self.scalar(event)
        if isinstance(event, _yaml.SequenceStartEvent) and event.tag is None:
            items = []
            while not isinstance(item := next(events), _yaml.SequenceEndEvent):
                items.append(self.value(item, events, depth + 1))
            return items
        if isinstance(event, _yaml.MappingStartEvent) and event.tag is None:
            out: dict[Any, Any] = {}
            while not isinstance(key_event := next(events), _yaml.MappingEndEvent):
                if not isinstance(key_event, _yaml.ScalarEvent):
                    raise _GiveUp
                key = self.scalar(key_event)
                if key in out:
                    raise _GiveUp
                out[key] = self.value(next(events), events, depth + 1)
            return out
        raise _GiveUp  # an alias, or a tag

    def scalar(self, event: Any) -> Any:
        if event.tag is not None:
            raise _GiveUp
        if event.style:  # quoted or block: text (libyaml gives a plain scalar the style '')
            return event.value
        text: str = event.value
        try:
            return self.plain[text]
        except KeyError:
            pass
        value = _plain(text)
        if isinstance(value, int | float) and not isinstance(value, bool) and (
            abs(value) > self.max_number
        ):
            raise _GiveUp
        self.plain[text] = value
        return value


def _plain(text: str) -> Any:
    """A plain scalar's value by the YAML 1.2 core schema; _GiveUp for a form not built here."""
    if text in _WORDS:
        return _WORDS[text]
    if text[:1] not in "-+.0123456789":
        if text == "=":  # YAML's "value" key: the located path rejects it
            raise _GiveUp
        return text
    if _DECIMAL.fullmatch(text):
        return int(text)
    if hexadecimal := _HEX.fullmatch(text):
        sign, digits = hexadecimal.groups()
        return -int(digits, 16) if sign == "-" else int(digits, 16)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _DATE.fullmatch(text):
        return text  # no setting is a date: the text as written, as on the located path
    if _NUMBER_LIKE.fullmatch(text) and text.count(".") < 2:  # 127.0.0.1 is text
        raise _GiveUp  # 0o17, 1_000, .inf, .5: the located path reads them
    return text  # 5s, 08:00, 01A00, 127.0.0.1: no number has their shape


def quick_data(text: str, *, max_values: int, max_depth: int, max_number: float) -> Any:
    """The plain data of ``text`` (one YAML document), or None: give it to the located path."""
    if _CLoader is None or _GIVE_UP.search(text):
        return None
    try:
        data = _Builder(max_values, max_depth, max_number).document(
            iter(_yaml.parse(text, Loader=_Loader))
        )
    except (_GiveUp, _yaml.YAMLError, RecursionError, StopIteration):
        return None
    return data
