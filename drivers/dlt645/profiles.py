"""The shipped DL/T 645 meter profiles (drivers/dlt645/profiles/*.yaml) and their loader.

A profile names the points a kind of meter is read for, the DI of each, and the block DIs to
try first, so a technician writes ``profile: dlt645-2007-3phase`` and the meter's address
instead of a list of DIs. The file format is documented at the top of every profile file.

Loading validates the profile against the catalogue of its edition (`drivers.dlt645.data`):
every DI must be known, every block must carry at least one of the profile's points, and a
``signed`` override must name a profile point. A shipped profile that fails is a packaging bug.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from types import MappingProxyType
from typing import Any

from drivers.dlt645.data import (
    BlockEntry,
    DataEntry,
    Value,
    block_catalogue,
    catalogue,
    decode_value,
    parse_di,
    split_block,
)
from drivers.dlt645.errors import ProfileError
from drivers.dlt645.frame import Version

__all__ = ["Dlt645Profile", "load_profile", "parse_profile", "profile_names", "profile_text"]

_KEYS = frozenset({"protocol", "version", "description", "source", "blocks", "points", "signed"})
_VERSIONS: dict[str, Version] = {"2007": "2007", "1997": "1997"}


@dataclass(frozen=True)
class Dlt645Profile:
    """A validated profile: point name -> catalogue entry (overrides applied), and blocks."""

    name: str
    version: Version
    description: str
    source: str
    entries: Mapping[str, DataEntry]  # by the profile's point name (``entry.point`` is that name)
    blocks: tuple[BlockEntry, ...]

    @property
    def points(self) -> Mapping[str, int]:
        """Point name -> DI."""
        return MappingProxyType({name: e.di for name, e in self.entries.items()})

    def point_for(self, di: int) -> str | None:
        """The profile's name for a DI, or None if the profile does not read it."""
        return next((name for name, e in self.entries.items() if e.di == di), None)

    def block_points(self, block: BlockEntry) -> tuple[str, ...]:
        """The profile's points a block read answers, in reply order."""
        names = (self.point_for(di) for di in block.members)
        return tuple(name for name in names if name is not None)

    def decode_block(self, block: BlockEntry, raw: bytes) -> dict[str, Value]:
        """A block reply's value bytes to the profile's points (others in the block dropped)."""
        by_di = {e.di: e for e in self.entries.values()}
        table = {di: by_di.get(di, catalogue(self.version)[di]) for di in block.members}
        return {
            entry.point: decode_value(entry, part)
            for entry, part in split_block(block, raw, entries=table)
            if entry.di in by_di
        }


@functools.cache
def profile_names() -> tuple[str, ...]:
    folder = resources.files("drivers.dlt645") / "profiles"
    return tuple(
        sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))
    )


def profile_text(name: str) -> str:
    """The profile's YAML source, comments included; KeyError if there is none."""
    if name not in profile_names():
        raise KeyError(name)
    return (resources.files("drivers.dlt645") / "profiles" / f"{name}.yaml").read_text("utf-8")


@functools.cache
def load_profile(name: str) -> Dlt645Profile:
    """A shipped profile, validated; KeyError if there is none, ProfileError if it is broken."""
    return parse_profile(profile_text(name), name=name)


def parse_profile(text: str, *, name: str) -> Dlt645Profile:
    """Parse and validate a profile's YAML text (``name`` is used in error messages)."""
    # ruamel.yaml only once a profile is read: a config of explicit points never loads it.
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise ProfileError(name, f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(name, "the file must be a mapping")
    unknown = sorted(set(map(str, data)) - _KEYS)
    if unknown:
        raise ProfileError(name, f"unknown keys {unknown}; a profile has {sorted(_KEYS)}")
    if data.get("protocol") != "dlt645":
        raise ProfileError(name, f"protocol must be dlt645, not {data.get('protocol')!r}")
    version = _VERSIONS.get(str(data.get("version")))
    if version is None:
        raise ProfileError(name, f"version must be '2007' or '1997', not {data.get('version')!r}")
    description = _text(data, "description", name)
    source = _text(data, "source", name)
    entries = _entries(data.get("points"), version, name)
    _apply_signed(data.get("signed", {}), entries, name)
    blocks = _blocks(data.get("blocks", []), version, entries, name)
    return Dlt645Profile(
        name=name,
        version=version,
        description=description,
        source=source,
        entries=MappingProxyType(entries),
        blocks=blocks,
    )


def _text(data: dict[Any, Any], key: str, name: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ProfileError(name, f"`{key}` must be a non-empty string")
    return value.strip()


def _di(value: object, version: Version, where: str, name: str) -> int:
    if not isinstance(value, str):
        # Unquoted, YAML reads 00010000 as a number and drops the zeros that make the DI.
        raise ProfileError(name, f"{where}: write the DI as a quoted string, not {value!r}")
    try:
        return parse_di(value, version)
    except ValueError as exc:
        raise ProfileError(name, f"{where}: {exc}") from exc


def _entries(points: object, version: Version, name: str) -> dict[str, DataEntry]:
    if not isinstance(points, dict) or not points:
        raise ProfileError(name, "`points` must map point names to DIs")
    table = catalogue(version)
    entries: dict[str, DataEntry] = {}
    seen: dict[int, str] = {}
    for point, value in points.items():
        where = f"points.{point}"
        if not isinstance(point, str) or not point.isidentifier():
            raise ProfileError(name, f"{where}: a point name is a word like voltage_l1")
        di = _di(value, version, where, name)
        if di not in table:
            raise ProfileError(name, f"{where}: DI {value} is not in the {version} catalogue")
        if di in seen:
            raise ProfileError(name, f"{where}: DI {value} is already read as {seen[di]}")
        seen[di] = point
        entries[point] = replace(table[di], point=point)
    return entries


def _apply_signed(signed: object, entries: dict[str, DataEntry], name: str) -> None:
    if not isinstance(signed, dict):
        raise ProfileError(name, "`signed` must map point names to true or false")
    for point, flag in signed.items():
        if point not in entries:
            raise ProfileError(name, f"signed.{point}: not a point of this profile")
        if not isinstance(flag, bool):
            raise ProfileError(name, f"signed.{point}: true or false, not {flag!r}")
        entries[point] = replace(entries[point], signed=flag)


def _blocks(
    blocks: object, version: Version, entries: dict[str, DataEntry], name: str
) -> tuple[BlockEntry, ...]:
    if not isinstance(blocks, list):
        raise ProfileError(name, "`blocks` must be a list of block DIs")
    table = block_catalogue(version)
    read = {e.di for e in entries.values()}
    found: list[BlockEntry] = []
    for index, value in enumerate(blocks):
        where = f"blocks[{index}]"
        di = _di(value, version, where, name)
        block = table.get(di)
        if block is None:
            raise ProfileError(name, f"{where}: {value} is not a {version} block DI")
        if not read.intersection(block.members):
            raise ProfileError(name, f"{where}: block {value} carries none of the points")
        if block in found:
            raise ProfileError(name, f"{where}: block {value} is listed twice")
        found.append(block)
    return tuple(found)
