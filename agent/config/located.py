"""The located path of the config loader: YAML text to ruamel's node tree, and the tree to plain
data that remembers the line and column of every value, so that every problem can be placed.

agent.config.loader comes here only when the quick path (agent.config.quick_yaml) has
something it cannot vouch for, so a start on a valid config never imports ruamel.yaml.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from agent.config.issues import MAX_DEPTH, MAX_NUMBER, MAX_VALUES, Issues, Loc, format_path, place
from agent.config.messages import describe, validation_sentence, yaml_sentence
from agent.config.model import SiteConfig

__all__ = ["Tree", "not_a_mapping", "parse"]

_TAG = "tag:yaml.org,2002:"
_PLAIN_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "binary")}
_TAG_WORDS = {
    f"{_TAG}int": "a whole number",
    f"{_TAG}float": "a number",
    f"{_TAG}bool": "true or false",
    f"{_TAG}null": "null",
    f"{_TAG}binary": "base64 data",
}
_SECTIONS = "site:, gateway:, store:, uplink:, buses:, devices:, hvac:"


# --- text to nodes -------------------------------------------------------------------------------


def _yaml() -> YAML:
    # typ="safe": the node tree resolves plain scalars by the YAML 1.2 core schema (0x34 is a
    # number, yes/no are text); its constructor is used for single scalars only.
    return YAML(typ="safe", pure=True)


def parse(text: str, issues: Issues) -> Node | None:
    """The single document's root node; None, with issues added, when there is none to use."""
    lines = text.splitlines()
    text = text.removeprefix("\ufeff")
    try:
        with warnings.catch_warnings():
            # A reused anchor name is legal YAML (the later one counts); ruamel only warns.
            warnings.simplefilter("ignore")
            documents: list[Node] = list(_yaml().compose_all(text))
    except ReaderError as exc:
        before = text[: exc.position]
        place = (before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1])
        issues.add(place, "", f"the character U+{code:04X} is not allowed in a YAML file")
        return None
    except MarkedYAMLError as exc:
        at, message = yaml_sentence(exc, lines)
        issues.add(at, "", message)
        return None
    except RecursionError:
        issues.add(None, "", "lists or mappings are nested far too deeply to be a config")
        return None
    except YAMLError as exc:
        issues.add(None, "", f"the YAML cannot be read: {exc}")
        return None
    # A trailing `---` leaves an empty last document behind; it holds nothing to lose.
    while documents and _is_empty(documents[-1]):
        documents.pop()
    if not documents:
        if not text.strip():
            issues.add(None, "", "the file is empty; a config needs at least a `site:` section")
        else:
            issues.add(
                None,
                "",
                "the file holds no settings (only comments); "
                "a config needs at least a `site:` section",
            )
        return None
    if len(documents) > 1:
        line = _document_start(lines, documents[1].start_mark.line)
        issues.add(
            (line, 1),
            "",
            f"a second YAML document starts here; a config is one document: "
            f"remove the '---' on line {line} or split the file",
        )
    return documents[0]


def _is_empty(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == f"{_TAG}null" and node.value == ""


def _document_start(lines: list[str], node_line: int) -> int:
    """1-based line of the `---` that opens the document whose content starts on ``node_line``."""
    for number in range(min(node_line, len(lines) - 1), -1, -1):
        if lines[number].startswith("---"):
            return number + 1
    return node_line + 1


def not_a_mapping(data: Any) -> str:
    if isinstance(data, list):
        return (
            f"the file must be a mapping of sections ({_SECTIONS}), not a list; "
            "remove the '- ' in front of the sections"
        )
    if data is None:
        return f"the file holds no settings; a config is a mapping of sections ({_SECTIONS})"
    return f"the file must be a mapping of sections ({_SECTIONS}), but it holds {describe(data)}"


# --- nodes to plain data, remembering where each value was written -------------------------------


@dataclass(frozen=True)
class _Where:
    key: tuple[int, int] | None  # where the key is written (None for list items and the root)
    value: tuple[int, int]  # where the value starts
    raw: str | None  # a scalar as written, e.g. "0x10"


class _TooBig(Exception):
    """The aliases expand to more values than a config can hold."""


class Tree:
    """Plain data built from the node tree, with the place of every path in it."""

    def __init__(self, issues: Issues) -> None:
        self.issues = issues
        self.places: dict[Loc, _Where] = {}
        self.spoilt: set[Loc] = set()  # paths already reported: pydantic need not repeat them
        self.complete = True  # False when a problem was found while converting
        self._count = 0
        self._constructor = _yaml().constructor

    # building

    def convert(self, root: Node) -> Any:
        try:
            return self._value(root, (), None, frozenset())
        except _TooBig:
            self._spoil(
                (),
                place(root.start_mark),
                f"the anchors and aliases expand to more "
                f"than {MAX_VALUES} values; a config is far smaller",
            )
            return None

    def _spoil(self, loc: Loc, at: tuple[int, int], message: str) -> None:
        self.issues.add(at, format_path(loc), message)
        self.spoilt.add(loc)
        self.complete = False

    def _value(
        self, node: Node, loc: Loc, key_at: tuple[int, int] | None, active: frozenset[int]
    ) -> Any:
        self._count += 1
        if self._count > MAX_VALUES:
            raise _TooBig
        at = place(node.start_mark)
        if isinstance(node, ScalarNode) and node.value == "" and node.style is None and key_at:
            at = key_at  # an empty value has no place of its own: point at its key
        raw = node.value if isinstance(node, ScalarNode) else None
        self.places[loc] = _Where(key_at, at, raw)
        if id(node) in active:
            self._spoil(loc, at, "an alias here refers to a mapping or list that contains it")
            return None
        if len(loc) > MAX_DEPTH:
            self._spoil(loc, at, f"nested more than {MAX_DEPTH} levels deep")
            return None
        if isinstance(node, ScalarNode):
            return self._scalar(node, loc, at)
        if node.tag not in (f"{_TAG}map", f"{_TAG}seq"):
            self._spoil(
                loc, at, f"the tag {_short_tag(node.tag)} is not supported in a config; remove it"
            )
            return None
        inner = active | {id(node)}
        if isinstance(node, SequenceNode):
            return [self._value(item, (*loc, i), None, inner) for i, item in enumerate(node.value)]
        assert isinstance(node, MappingNode)
        return self._mapping(node, loc, inner)

    def _scalar(self, node: ScalarNode, loc: Loc, at: tuple[int, int]) -> Any:
        tag = node.tag
        if tag == f"{_TAG}timestamp":
            return node.value  # no setting is a date; keep the text as written
        if tag not in _PLAIN_SCALAR_TAGS:
            self._spoil(loc, at, f"the tag {_short_tag(tag)} is not understood here; remove it")
            return None
        what = _TAG_WORDS.get(tag, "text")
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (ConstructorError, ValueError, TypeError):
            self._spoil(loc, at, f"{node.value!r} cannot be read as {what}")
            return None
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and (abs(value) > MAX_NUMBER and value != float("inf"))
        ):
            self._spoil(loc, at, f"the number {node.value} is too large for any setting")
            return None
        return value

    def _mapping(self, node: MappingNode, loc: Loc, active: frozenset[int]) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        # Merged keys go in first, so that the mapping's own keys (and their places) replace them
        # wherever the `<<` stands.
        for key_node, value_node in node.value:
            if key_node.tag == f"{_TAG}merge":
                self._merge(result, key_node, value_node, loc, active)
        for key_node, value_node in node.value:
            if key_node.tag == f"{_TAG}merge":
                continue
            key_at = place(key_node.start_mark)
            key = self._key(key_node, loc, key_at)
            if key is _NO_KEY:
                continue
            if key in first_line:
                self.issues.add(
                    key_at,
                    format_path((*loc, key)),
                    f"key {key!r} appears twice in this mapping (first on line {first_line[key]}); "
                    "a later value would silently replace the earlier one",
                )
                self.complete = False
                continue
            first_line[key] = key_at[0]
            result[key] = self._value(value_node, (*loc, key), key_at, active)
        return result

    def _key(self, node: Node, loc: Loc, at: tuple[int, int]) -> Any:
        if not isinstance(node, ScalarNode):
            self.issues.add(
                at, format_path(loc), "a key must be a plain name, not a list or mapping"
            )
            self.complete = False
            return _NO_KEY
        before = len(self.issues.items)
        key = self._scalar(node, (*loc, node.value), at)
        if len(self.issues.items) > before:
            return _NO_KEY
        return key

    def _merge(
        self,
        result: dict[Any, Any],
        key_node: Node,
        value_node: Node,
        loc: Loc,
        active: frozenset[int],
    ) -> None:
        """YAML merge keys (`<<: *defaults`): the mapping's own keys win over merged ones."""
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, MappingNode) or id(source) in active:
                self._spoil(
                    loc,
                    place(key_node.start_mark),
                    "'<<' merges a mapping (e.g. <<: *defaults), nothing else",
                )
                continue
            merged = self._mapping(source, loc, active | {id(source)})
            for key, value in merged.items():
                result.setdefault(key, value)

    # locating

    def locate(self, loc: Loc, *, at_key: bool = False) -> tuple[tuple[int, int] | None, str]:
        """The place and path of ``loc``, falling back to the nearest ancestor written in the file.

        Values a profile merges into a device are not in the file: they point at the device.
        """
        loc = tuple(loc)
        for end in range(len(loc), -1, -1):
            where = self.places.get(loc[:end]) or self.places.get(_stringified(loc[:end]))
            if where is None:
                continue
            if at_key and end == len(loc) and where.key is not None:
                return where.key, format_path(loc)
            profile = self.places.get((*loc[:2], "profile"))
            if end < len(loc) and loc[:1] == ("devices",) and end <= 3 and profile is not None:
                return profile.value, format_path(loc)  # a point the profile brought in
            return where.value, format_path(loc)
        return None, format_path(loc)

    def report(self, errors: list[Any]) -> None:
        """Add pydantic's errors as located issues, one per problem.

        Skipped: errors about values already reported while reading the YAML, and a "missing"
        key that an unknown key in the same mapping was evidently meant to be (`regster`).
        """
        sentences = [validation_sentence(SiteConfig, error, self._written) for error in errors]
        misspelt = {(s.loc[:-1], s.meant) for s in sentences if s.meant is not None}
        for sentence in sentences:
            if any(sentence.loc[:n] in self.spoilt for n in range(len(sentence.loc) + 1)):
                continue
            if sentence.missing is not None and (sentence.loc, sentence.missing) in misspelt:
                continue
            at, path = self.locate(sentence.loc, at_key=sentence.at_key)
            self.issues.add(at, path, sentence.message)

    def _written(self, loc: Loc) -> str | None:
        where = self.places.get(loc)
        return where.raw if where else None


_NO_KEY = object()


def _stringified(loc: Loc) -> Loc:
    # pydantic writes a `None` key as the string 'None' in its locations.
    return tuple(None if part == "None" else part for part in loc)


def _short_tag(tag: str | None) -> str:
    tag = tag or "!"
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag
