"""Reading a site config: YAML text in, a validated ``SiteConfig`` out, or every problem at once.

The file is read in stages, each of which can only find problems once the one before has passed:
bytes to text (UTF-8), text to a YAML node tree (syntax), the tree to plain dicts and lists
(duplicate keys, tags, anchors), those to the models (pydantic), and the models against each
other (``cross_check``). Each problem becomes a ``ConfigIssue`` pointing at a line and column.

We build plain data from ruamel's composed node tree ourselves rather than letting a ruamel
constructor do it: the nodes carry the line and column of every key and value, every duplicate
key is visible (a constructor stops at the first, or silently keeps one), and aliases, merge keys
and tags can be checked with a located message instead of an exception.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.constructor import ConstructorError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from agent.commands.signature import read_secret
from agent.config.messages import describe, file_sentence, validation_sentence, yaml_sentence
from agent.config.model import SiteConfig, cross_check
from agent.config.quick_yaml import quick_data
from agent.core.errors import ConfigError, ConfigIssue
from agent.hvac.program import hvac_problems

__all__ = ["MAX_FILE_BYTES", "load_config", "load_config_text"]

MAX_FILE_BYTES = 4 * 1024 * 1024
"""A config is a few kilobytes; anything this large is the wrong file."""

_MAX_VALUES = 100_000  # after aliases are expanded: stops "billion laughs" files
_MAX_DEPTH = 64  # a config nests about six levels
_MAX_NUMBER = 2**64  # larger than any setting; also keeps float() conversions from overflowing

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

Loc = tuple[Any, ...]


def load_config(path: str | os.PathLike[str], *, check_files: bool = True) -> SiteConfig:
    """Read and validate the site config at ``path``; ``ConfigError`` lists every problem.

    ``check_files=False`` skips checking that the secret and TLS files it names can be read:
    for the commands that only read a copy of the buffer (a report on an analyst's laptop has
    the config but not the gateway's secrets). `validate` and `run` always check them.
    """
    filename = os.fspath(path)
    return load_config_text(
        _read(Path(filename), filename), filename=filename, check_files=check_files
    )


def load_config_text(text: str | bytes, *, filename: str, check_files: bool = True) -> SiteConfig:
    """Validate a site config given as text (or the file's bytes); ``filename`` is for messages."""
    issues = _Issues(filename)
    if isinstance(text, bytes):
        text = _decode(text, issues)
    config = _quick(text)
    if config is not None and not (check_files and _unusable_files(config)):
        return config  # the quick path found nothing to report (files included)
    root = _parse(text, issues)
    if root is None:
        raise ConfigError(issues.sorted())
    tree = _Tree(issues)
    data = tree.convert(root)
    if not isinstance(data, dict):
        if tree.complete:
            issues.add(_place(root.start_mark), "", _not_a_mapping(data))
        raise ConfigError(issues.sorted())
    # Cross-section problems (a device naming a bus that does not exist, ...) are found on the
    # raw data, so that they are reported in the same run as the field errors.
    crossed = cross_check(data)
    try:
        config = SiteConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        tree.report(errors)
        reported = {tuple(str(p) for p in e["loc"]) for e in errors}
        for loc, message in crossed:
            if tuple(str(p) for p in loc) not in reported:
                issues.add(*tree.locate(loc), message)
        raise ConfigError(issues.sorted()) from exc
    for loc, message in [*crossed, *_validated_problems(config, check_files=check_files)]:
        issues.add(*tree.locate(loc), message)
    if issues:
        raise ConfigError(issues.sorted())
    return config


def _validated_problems(config: SiteConfig, *, check_files: bool) -> list[tuple[Loc, str]]:
    """What only the validated config shows: HVAC points against the devices (profiles
    merged), and the files it names."""
    problems = hvac_problems(config.hvac, config.devices) if config.hvac is not None else []
    return problems + (_unusable_files(config) if check_files else [])


def _unusable_files(config: SiteConfig) -> list[tuple[Loc, str]]:
    """Files the config names that cannot be used: unreadable, or a command secret too short."""
    problems = _file_problems(config, ())
    secret = config.commands.secret_file
    if secret is not None and not any(loc[:1] == ("commands",) for loc, _ in problems):
        try:
            read_secret(secret)
        except (OSError, ValueError) as exc:
            problems.append((("commands", "secret_file"), str(exc)))
    return problems


def _file_problems(model: BaseModel, loc: Loc) -> list[tuple[Loc, str]]:
    """Every ``*_file`` setting (uplink.password_file, the TLS files, commands.secret_file, a
    sensor's key_file, ...) whose file cannot be read now: caught by `validate` and at start,
    instead of by the first connection that needs it, over and over."""
    problems: list[tuple[Loc, str]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if name.endswith("_file") and isinstance(value, Path):
            if (message := file_sentence(value)) is not None:
                problems.append(((*loc, name), message))
        elif isinstance(value, BaseModel):
            problems += _file_problems(value, (*loc, name))
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    problems += _file_problems(item, (*loc, name, index))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    problems += _file_problems(item, (*loc, name, key))
    return problems


def _quick(text: str) -> SiteConfig | None:
    """The config, when the quick path reads it and it has nothing to report; else None (the
    located path then reads the text again, to find and place every problem)."""
    data = quick_data(
        text.removeprefix("\ufeff"),
        max_values=_MAX_VALUES,
        max_depth=_MAX_DEPTH,
        max_number=_MAX_NUMBER,
    )
    if not isinstance(data, dict) or cross_check(data):
        return None
    try:
        config = SiteConfig.model_validate(data)
    except ValidationError:
        return None
    if config.hvac is not None and hvac_problems(config.hvac, config.devices):
        return None
    return config


# --- issues --------------------------------------------------------------------------------------


@dataclass
class _Issues:
    filename: str
    items: list[ConfigIssue] = field(default_factory=list)

    def add(self, at: tuple[int, int] | None, path: str, message: str) -> None:
        line, column = at if at else (None, None)
        self.items.append(ConfigIssue(self.filename, line, column, path, message))

    def whole_file(self, message: str) -> ConfigError:
        self.add(None, "", message)
        return ConfigError(self.sorted())

    def sorted(self) -> list[ConfigIssue]:
        """File order, whole-file problems first; one issue per place and problem.

        A value written once and used twice (an anchor and its aliases) is one problem.
        """
        unique: dict[tuple[Any, ...], ConfigIssue] = {}
        for issue in self.items:
            same = (issue.line, issue.column, issue.message) if issue.line else (id(issue),)
            unique.setdefault(same, issue)
        return sorted(unique.values(), key=lambda i: (i.line or 0, i.column or 0))

    def __bool__(self) -> bool:
        return bool(self.items)


def _place(mark: Any) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def _format_path(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str) and part and all(c.isalnum() or c in "_-" for c in part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


# --- bytes to text -------------------------------------------------------------------------------


def _read(path: Path, filename: str) -> bytes:
    issues = _Issues(filename)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise issues.whole_file(f"there is no such file (looked for {path.absolute()})") from exc
    except IsADirectoryError as exc:
        raise issues.whole_file("this is a directory, not a config file") from exc
    except PermissionError as exc:
        raise issues.whole_file(
            "permission denied: the agent's user may not read this file (check its owner and mode)"
        ) from exc
    except OSError as exc:
        raise issues.whole_file(f"the file cannot be read: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise issues.whole_file(
            f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; "
            "a config is a few kilobytes, so this is probably the wrong file"
        )
    return data


def _decode(data: bytes, issues: _Issues) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise issues.whole_file("the file is saved as UTF-16; save it as UTF-8")
    data = data.removeprefix(b"\xef\xbb\xbf")  # a BOM, as Windows Notepad writes
    nul = data.find(b"\x00")
    if nul >= 0:
        issues.add(
            _byte_place(data, nul),
            "",
            f"the file is binary, not YAML text: it holds a NUL byte at offset {nul}",
        )
        raise ConfigError(issues.sorted())
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start]
        hint = "is this the right file?"
        try:
            data.decode("gb18030")
            hint = "it looks like GBK (Windows 'ANSI') text: save the file as UTF-8"
        except UnicodeDecodeError:
            pass
        issues.add(
            _byte_place(data, exc.start),
            "",
            f"the file is not UTF-8 text: byte 0x{bad:02X} at offset {exc.start} cannot be read; "
            + hint,
        )
        raise ConfigError(issues.sorted()) from exc


def _byte_place(data: bytes, offset: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", errors="replace"))
    return data.count(b"\n", 0, offset) + 1, column + 1


# --- text to nodes -------------------------------------------------------------------------------


def _yaml() -> YAML:
    # typ="safe": the node tree resolves plain scalars by the YAML 1.2 core schema (0x34 is a
    # number, yes/no are text); its constructor is used for single scalars only.
    return YAML(typ="safe", pure=True)


def _parse(text: str, issues: _Issues) -> Node | None:
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


def _not_a_mapping(data: Any) -> str:
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


class _Tree:
    """Plain data built from the node tree, with the place of every path in it."""

    def __init__(self, issues: _Issues) -> None:
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
                _place(root.start_mark),
                f"the anchors and aliases expand to more "
                f"than {_MAX_VALUES} values; a config is far smaller",
            )
            return None

    def _spoil(self, loc: Loc, at: tuple[int, int], message: str) -> None:
        self.issues.add(at, _format_path(loc), message)
        self.spoilt.add(loc)
        self.complete = False

    def _value(
        self, node: Node, loc: Loc, key_at: tuple[int, int] | None, active: frozenset[int]
    ) -> Any:
        self._count += 1
        if self._count > _MAX_VALUES:
            raise _TooBig
        at = _place(node.start_mark)
        if isinstance(node, ScalarNode) and node.value == "" and node.style is None and key_at:
            at = key_at  # an empty value has no place of its own: point at its key
        raw = node.value if isinstance(node, ScalarNode) else None
        self.places[loc] = _Where(key_at, at, raw)
        if id(node) in active:
            self._spoil(loc, at, "an alias here refers to a mapping or list that contains it")
            return None
        if len(loc) > _MAX_DEPTH:
            self._spoil(loc, at, f"nested more than {_MAX_DEPTH} levels deep")
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
            and (abs(value) > _MAX_NUMBER and value != float("inf"))
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
            key_at = _place(key_node.start_mark)
            key = self._key(key_node, loc, key_at)
            if key is _NO_KEY:
                continue
            if key in first_line:
                self.issues.add(
                    key_at,
                    _format_path((*loc, key)),
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
                at, _format_path(loc), "a key must be a plain name, not a list or mapping"
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
                    _place(key_node.start_mark),
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
                return where.key, _format_path(loc)
            profile = self.places.get((*loc[:2], "profile"))
            if end < len(loc) and loc[:1] == ("devices",) and end <= 3 and profile is not None:
                return profile.value, _format_path(loc)  # a point the profile brought in
            return where.value, _format_path(loc)
        return None, _format_path(loc)

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
