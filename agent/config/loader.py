"""Reading a site config: YAML text in, a validated ``SiteConfig`` out, or every problem at once.

The file is read in stages, each of which can only find problems once the one before has passed:
bytes to text (UTF-8), text to a YAML node tree (syntax), the tree to plain dicts and lists
(duplicate keys, tags, anchors), those to the models (pydantic), and the models against each
other (``cross_check``). Each problem becomes a ``ConfigIssue`` pointing at a line and column.

The located stages (agent.config.located) build plain data from ruamel's composed node tree
ourselves rather than letting a ruamel constructor do it: the nodes carry the line and column
of every key and value, every duplicate key is visible (a constructor stops at the first, or
silently keeps one), and aliases, merge keys and tags can be checked with a located message
instead of an exception.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ValidationError

from agent.commands.signature import read_secret
from agent.config.issues import MAX_DEPTH, MAX_NUMBER, MAX_VALUES, Issues, Loc, place
from agent.config.messages import file_sentence
from agent.config.model import SiteConfig, cross_check
from agent.config.quick_yaml import quick_data
from agent.config.sharing import share_equal_points
from agent.core.errors import ConfigError
from agent.hvac.program import hvac_problems

__all__ = ["MAX_FILE_BYTES", "load_config", "load_config_text"]

MAX_FILE_BYTES = 4 * 1024 * 1024
"""A config is a few kilobytes; anything this large is the wrong file."""


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
    issues = Issues(filename)
    if isinstance(text, bytes):
        text = _decode(text, issues)
    config = _quick(text)
    if config is not None and not (check_files and _unusable_files(config)):
        return config  # the quick path found nothing to report (files included)
    # The located path: ruamel.yaml, imported only when there is something to report.
    from agent.config.located import Tree, not_a_mapping, parse

    root = parse(text, issues)
    if root is None:
        raise ConfigError(issues.sorted())
    tree = Tree(issues)
    data = tree.convert(root)
    if not isinstance(data, dict):
        if tree.complete:
            issues.add(place(root.start_mark), "", not_a_mapping(data))
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
    share_equal_points(config.devices)
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


def _file_problems(
    model: BaseModel, loc: Loc, clean: set[int] | None = None
) -> list[tuple[Loc, str]]:
    """Every ``*_file`` setting (uplink.password_file, the TLS files, commands.secret_file, a
    sensor's key_file, ...) whose file cannot be read now: caught by `validate` and at start,
    instead of by the first connection that needs it, over and over. ``clean`` holds the models
    (frozen, kept alive by the config) found without one: a point config shared by many devices
    (agent.config.sharing) is looked through once."""
    clean = set() if clean is None else clean
    if id(model) in clean:
        return []
    problems: list[tuple[Loc, str]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if name.endswith("_file") and isinstance(value, Path):
            if (message := file_sentence(value)) is not None:
                problems.append(((*loc, name), message))
        elif isinstance(value, BaseModel):
            problems += _file_problems(value, (*loc, name), clean)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    problems += _file_problems(item, (*loc, name, index), clean)
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    problems += _file_problems(item, (*loc, name, key), clean)
    if not problems:
        clean.add(id(model))
    return problems


def _quick(text: str) -> SiteConfig | None:
    """The config, when the quick path reads it and it has nothing to report; else None (the
    located path then reads the text again, to find and place every problem)."""
    data = quick_data(
        text.removeprefix("\ufeff"),
        max_values=MAX_VALUES,
        max_depth=MAX_DEPTH,
        max_number=MAX_NUMBER,
    )
    if not isinstance(data, dict) or cross_check(data):
        return None
    try:
        config = SiteConfig.model_validate(data)
    except ValidationError:
        return None
    if config.hvac is not None and hvac_problems(config.hvac, config.devices):
        return None
    share_equal_points(config.devices)
    return config


# --- bytes to text -------------------------------------------------------------------------------


def _read(path: Path, filename: str) -> bytes:
    issues = Issues(filename)
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


def _decode(data: bytes, issues: Issues) -> str:
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
