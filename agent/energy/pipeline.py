"""Everything the running agent needs in one object: readings in, intervals out, alerts to a sink.

    pipeline = EnergyPipeline(config.energy, site=config.site, sink=publish_and_store)
    intervals = pipeline.feed(new_rows)     # completed base intervals, to store and publish
    pipeline.evaluate(now_ms)               # quotas, off-hours, silent meters, balance

Rollups of larger sizes come from `rollup()` over the stored base intervals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from agent.energy.alerts import AlertBook, Sink
from agent.energy.config import EnergyConfig
from agent.energy.intervals import Interval, IntervalBuilder, ReadingRow
from agent.energy.quota import QuotaMonitor
from agent.energy.watches import BalanceWatch, OffHoursWatch, SilenceWatch

__all__ = ["EnergyPipeline", "Site"]


class Site(Protocol):  # what the energy side needs of agent.config.model.SiteInfo
    @property
    def id(self) -> str: ...

    @property
    def timezone(self) -> str: ...

    @property
    def floor_area_m2(self) -> float | None: ...


class EnergyPipeline:
    """The energy side of the agent, pure and synchronous: call it from the store's side."""

    def __init__(
        self,
        energy: EnergyConfig,
        *,
        site: Site,
        sink: Sink,
        raised: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        energy.require_consistent()
        tz = ZoneInfo(site.timezone)
        self.alerts = AlertBook(sink, raised=raised)
        self.builder = IntervalBuilder(energy, tz=tz)
        self.quotas = QuotaMonitor(
            energy, tz=tz, alerts=self.alerts, floor_area_m2=site.floor_area_m2
        )
        self.off_hours = OffHoursWatch(energy, tz=tz, alerts=self.alerts)
        self.silence = SilenceWatch(energy, alerts=self.alerts)
        self.balance = BalanceWatch(energy, tz=tz, alerts=self.alerts)

    def feed(self, rows: Iterable[ReadingRow]) -> list[Interval]:
        intervals = self.builder.feed(rows)
        self.quotas.add(intervals)
        self.off_hours.add(intervals)
        self.balance.add(intervals)
        return intervals

    def evaluate(self, now_ms: int) -> None:
        self.quotas.evaluate(now_ms)
        self.off_hours.evaluate()
        self.balance.evaluate()
        self.silence.evaluate(now_ms, self.builder.last_seen)
