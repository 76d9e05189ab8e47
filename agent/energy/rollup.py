"""Base intervals summed per meter, per sub-item, per energy type and per site, for each size.

Scopes of a rollup record:
- `meter`: one meter;
- `sub_item`: every sub-meter under a national sub-item code, at its own level and each level
  above (01B1A counts in 01B10 and 01B00); sub-meters must not overlap, or loads count twice;
- `type`: the site total of an energy type: its main (supply) meters, or its sub-meters when the
  type has no main meter (flag `from_sub_meters`);
- `pv`: `generation` (the PV meters), `export` (to the grid), `self_consumption` (generation minus
  export, per base interval, never below zero) and `building` (grid import plus
  self-consumption: what the building's loads used);
- `site`: `tce` and `co2`, the sum over energy types of the converted type totals.

Type totals are what the site bought (grid import), as a utility bill and the statistics count
them; on-site PV used by the building shows under `pv/self_consumption` and `pv/building`.
Every converted figure carries the label of the factor that produced it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from agent.core.record import ms_to_iso
from agent.energy.config import (
    EnergyConfig,
    EnergyType,
    MeterConfig,
    MeterRole,
    parent_codes,
)
from agent.energy.intervals import Interval, worse
from agent.energy.periods import Size, bucket_start, next_start

__all__ = ["DEFAULT_SIZES", "Figure", "Rollup", "rollup"]

DEFAULT_SIZES = (Size.HOUR, Size.DAY, Size.MONTH)


@dataclass(frozen=True, slots=True)
class Figure:
    """A converted figure (tce, CO2) and the factor that produced it."""

    name: str  # "tce" or "co2"
    value: float
    unit: str  # "tce" or "tCO2"
    factor: str  # Factor.label, or several joined by " + "

    def to_record(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "factor": self.factor}


@dataclass(frozen=True, slots=True)
class Rollup:
    """A sum of base intervals for one scope and key over one bucket [start, end)."""

    scope: str
    key: str
    size: str
    start_ms: int
    end_ms: int
    value: float
    unit: str
    quality: str
    flags: frozenset[str]
    count: int  # base intervals that contributed
    expected: int  # base intervals a complete bucket holds, over every contributing meter
    figures: tuple[Figure, ...] = ()
    basis: str = ""  # for site tce/co2: the factors that produced the value

    @property
    def complete(self) -> bool:
        return self.count >= self.expected

    def figure(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "scope": self.scope,
            "key": self.key,
            "size": self.size,
            "start": ms_to_iso(self.start_ms),
            "end": ms_to_iso(self.end_ms),
            "value": self.value,
            "unit": self.unit,
            "quality": self.quality,
            "flags": sorted(self.flags),
            "count": self.count,
            "expected": self.expected,
        }
        if self.figures:
            record["figures"] = [f.to_record() for f in self.figures]
        if self.basis:
            record["basis"] = self.basis
        return record


@dataclass
class _Acc:
    value: float = 0.0
    quality: str = "measured"
    flags: set[str] = field(default_factory=set)
    count: int = 0

    def add(self, value: float, quality: str, flags: Iterable[str], count: int = 1) -> None:
        self.value += value
        self.quality = worse(self.quality, quality)
        self.flags.update(flags)
        self.count += count


@dataclass
class _Series:
    unit: str
    contributors: set[str]
    energy_type: EnergyType | None
    slots: dict[int, _Acc] = field(default_factory=lambda: defaultdict(_Acc))


def _series_keys(meter: MeterConfig, typed_by_main: set[EnergyType]) -> list[tuple[str, str]]:
    keys = [("meter", meter.name)]
    if meter.role is MeterRole.SUB:
        keys += [("sub_item", code) for code in (meter.code, *parent_codes(meter.code))]
        if meter.energy_type not in typed_by_main:
            keys.append(("type", meter.energy_type.value))
    elif meter.role is MeterRole.MAIN:
        keys.append(("type", meter.energy_type.value))
    elif meter.role is MeterRole.GENERATION:
        keys.append(("pv", "generation"))
    else:
        keys.append(("pv", "export"))
    return keys


def rollup(
    intervals: Iterable[Interval],
    energy: EnergyConfig,
    *,
    tz: str | ZoneInfo,
    sizes: Sequence[Size] = DEFAULT_SIZES,
    include_base: bool = False,
) -> list[Rollup]:
    """Rollups of base intervals for each size (and the base size itself if asked)."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    base = Size.of_minutes(energy.interval_minutes)
    base_ms = energy.interval_minutes * 60_000
    meters = {meter.name: meter for meter in energy.meters}
    typed_by_main = {m.energy_type for m in energy.meters if m.role is MeterRole.MAIN}

    series: dict[tuple[str, str], _Series] = {}
    for meter in energy.meters:
        for series_key in _series_keys(meter, typed_by_main):
            typ = meter.energy_type if series_key[0] != "pv" else EnergyType.ELECTRICITY
            entry = series.setdefault(series_key, _Series(meter.energy_unit, set(), typ))
            entry.contributors.add(meter.name)

    for interval in intervals:
        source = meters.get(interval.meter)
        if source is None:
            continue
        for series_key in _series_keys(source, typed_by_main):
            series[series_key].slots[interval.start_ms].add(
                interval.value, interval.quality, interval.flags
            )
    _derive_pv(series, energy)

    out: list[Rollup] = []
    for size in ([base] if include_base else []) + [s for s in sizes if s is not base]:
        for (scope, key), entry in sorted(series.items()):
            out.extend(
                _bucketed(
                    scope,
                    key=key,
                    entry=entry,
                    size=size,
                    zone=zone,
                    base_ms=base_ms,
                    energy=energy,
                )
            )
    out.extend(_site_totals(out))
    return out


def _derive_pv(series: dict[tuple[str, str], _Series], energy: EnergyConfig) -> None:
    generation = series.get(("pv", "generation"))
    if generation is None:
        return
    export = series.get(("pv", "export"))
    export_slots = export.slots if export is not None else {}
    contributors = generation.contributors | (export.contributors if export else set())
    own = _Series("kWh", contributors, EnergyType.ELECTRICITY)
    for start in sorted(set(generation.slots) | set(export_slots)):
        gen = generation.slots.get(start)
        exp = export_slots.get(start)
        acc = own.slots[start]
        value = (gen.value if gen else 0.0) - (exp.value if exp else 0.0)
        for part in (gen, exp):
            if part is not None:
                acc.add(0.0, part.quality, part.flags, part.count)
        # Export a little above generation in one interval is the two meters' timing, not a
        # negative consumption.
        acc.value = max(value, 0.0)
    series[("pv", "self_consumption")] = own
    grid = series.get(("type", EnergyType.ELECTRICITY.value))
    if grid is None:
        return
    building = _Series("kWh", own.contributors | grid.contributors, EnergyType.ELECTRICITY)
    for start in sorted(set(own.slots) | set(grid.slots)):
        acc = building.slots[start]
        for part in (own.slots.get(start), grid.slots.get(start)):
            if part is not None:
                acc.add(part.value, part.quality, part.flags, part.count)
    series[("pv", "building")] = building


def _bucketed(
    scope: str,
    *,
    key: str,
    entry: _Series,
    size: Size,
    zone: ZoneInfo,
    base_ms: int,
    energy: EnergyConfig,
) -> list[Rollup]:
    buckets: dict[int, _Acc] = defaultdict(_Acc)
    for start, acc in entry.slots.items():
        buckets[bucket_start(start, size, zone)].add(acc.value, acc.quality, acc.flags, acc.count)
    out: list[Rollup] = []
    coal = co2 = None
    if entry.energy_type is not None and scope != "pv":
        coal = energy.factors.coal(entry.energy_type)
        co2 = energy.factors.co2(entry.energy_type)
    for start in sorted(buckets):
        acc = buckets[start]
        end = next_start(start, size, zone)
        expected = (end - start) // base_ms * len(entry.contributors)
        quality, flags = acc.quality, set(acc.flags)
        if acc.count < expected:
            quality = worse(quality, "partial")
            flags.add("incomplete")
        if scope == "type" and entry.contributors and _from_subs(entry, energy):
            flags.add("from_sub_meters")
        figures: list[Figure] = []
        if coal is not None:
            figures.append(Figure("tce", acc.value * coal.value / 1000, "tce", coal.label))
        if co2 is not None:
            figures.append(Figure("co2", acc.value * co2.value / 1000, "tCO2", co2.label))
        out.append(
            Rollup(
                scope=scope,
                key=key,
                size=size.value,
                start_ms=start,
                end_ms=end,
                value=acc.value,
                unit=entry.unit,
                quality=quality,
                flags=frozenset(flags),
                count=acc.count,
                expected=expected,
                figures=tuple(figures),
            )
        )
    return out


def _from_subs(entry: _Series, energy: EnergyConfig) -> bool:
    return all(energy.meter(name).role is MeterRole.SUB for name in entry.contributors)


def _site_totals(rollups: list[Rollup]) -> list[Rollup]:
    groups: dict[tuple[str, int], list[Rollup]] = defaultdict(list)
    for item in rollups:
        if item.scope == "type":
            groups[(item.size, item.start_ms)].append(item)
    out: list[Rollup] = []
    for (size, start), items in sorted(groups.items()):
        for name, unit in (("tce", "tce"), ("co2", "tCO2")):
            parts = [(item, item.figure(name)) for item in items]
            used = [(item, fig) for item, fig in parts if fig is not None]
            if not used:
                continue
            quality = "measured"
            flags: set[str] = set()
            for item, _fig in used:
                quality = worse(quality, item.quality)
                flags |= item.flags
            out.append(
                Rollup(
                    scope="site",
                    key=name,
                    size=size,
                    start_ms=start,
                    end_ms=items[0].end_ms,
                    value=sum(fig.value for _item, fig in used),
                    unit=unit,
                    quality=quality,
                    flags=frozenset(flags),
                    count=sum(item.count for item, _fig in used),
                    expected=sum(item.expected for item, _fig in used),
                    basis=" + ".join(f"{item.key}: {fig.factor}" for item, fig in used),
                )
            )
    return out
