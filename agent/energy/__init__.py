"""Energy accounting: counters to intervals, rollups, tce and CO2, quotas and data quality.

Pure and synchronous: functions over reading rows (anything shaped like
agent.core.record.StoredReading) that produce records. `EnergyPipeline` bundles the incremental
parts for the running agent; `energy_report` makes the `edge-agent energy` report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.core.lazy import lazy_exports

if TYPE_CHECKING:
    from agent.energy.alerts import AlertBook, Sink
    from agent.energy.config import (
        BalanceRule,
        CalendarConfig,
        EnergyConfig,
        EnergyType,
        FactorsConfig,
        MeterConfig,
        MeterKind,
        MeterRole,
        OffHoursRule,
        QuotaRule,
        SilentMeterRule,
        cross_check_energy,
    )
    from agent.energy.factors import Factor
    from agent.energy.intervals import (
        CounterMeter,
        Interval,
        IntervalBuilder,
        PowerMeter,
        build_intervals,
        thin_rows,
    )
    from agent.energy.periods import Size
    from agent.energy.pipeline import EnergyPipeline
    from agent.energy.quality import (
        BalanceResult,
        MeterDayQuality,
        balance_checks,
        check_balance,
        daily_quality,
    )
    from agent.energy.quota import QuotaMonitor, QuotaStatus
    from agent.energy.report import (
        EnergyReport,
        energy_report,
        parse_period_start,
        render_csv,
        render_text,
        report_from_intervals,
        report_window,
    )
    from agent.energy.rollup import Figure, Rollup, rollup
    from agent.energy.watches import BalanceWatch, OffHoursWatch, SilenceWatch

# Imported on first use: the site config imports agent.energy.config for every site, which must
# not load the reports, the pipeline and the rest for a site without an `energy:` section.
_WHERE = {
    "AlertBook": "agent.energy.alerts",
    "Sink": "agent.energy.alerts",
    "BalanceRule": "agent.energy.config",
    "CalendarConfig": "agent.energy.config",
    "EnergyConfig": "agent.energy.config",
    "EnergyType": "agent.energy.config",
    "FactorsConfig": "agent.energy.config",
    "MeterConfig": "agent.energy.config",
    "MeterKind": "agent.energy.config",
    "MeterRole": "agent.energy.config",
    "OffHoursRule": "agent.energy.config",
    "QuotaRule": "agent.energy.config",
    "SilentMeterRule": "agent.energy.config",
    "cross_check_energy": "agent.energy.config",
    "Factor": "agent.energy.factors",
    "CounterMeter": "agent.energy.intervals",
    "Interval": "agent.energy.intervals",
    "IntervalBuilder": "agent.energy.intervals",
    "PowerMeter": "agent.energy.intervals",
    "build_intervals": "agent.energy.intervals",
    "thin_rows": "agent.energy.intervals",
    "Size": "agent.energy.periods",
    "EnergyPipeline": "agent.energy.pipeline",
    "BalanceResult": "agent.energy.quality",
    "MeterDayQuality": "agent.energy.quality",
    "balance_checks": "agent.energy.quality",
    "check_balance": "agent.energy.quality",
    "daily_quality": "agent.energy.quality",
    "QuotaMonitor": "agent.energy.quota",
    "QuotaStatus": "agent.energy.quota",
    "EnergyReport": "agent.energy.report",
    "energy_report": "agent.energy.report",
    "parse_period_start": "agent.energy.report",
    "render_csv": "agent.energy.report",
    "render_text": "agent.energy.report",
    "report_from_intervals": "agent.energy.report",
    "report_window": "agent.energy.report",
    "Figure": "agent.energy.rollup",
    "Rollup": "agent.energy.rollup",
    "rollup": "agent.energy.rollup",
    "BalanceWatch": "agent.energy.watches",
    "OffHoursWatch": "agent.energy.watches",
    "SilenceWatch": "agent.energy.watches",
}
__getattr__ = lazy_exports(__name__, _WHERE)

__all__ = [
    "AlertBook",
    "BalanceResult",
    "BalanceRule",
    "BalanceWatch",
    "CalendarConfig",
    "CounterMeter",
    "EnergyConfig",
    "EnergyPipeline",
    "EnergyReport",
    "EnergyType",
    "Factor",
    "FactorsConfig",
    "Figure",
    "Interval",
    "IntervalBuilder",
    "MeterConfig",
    "MeterDayQuality",
    "MeterKind",
    "MeterRole",
    "OffHoursRule",
    "OffHoursWatch",
    "PowerMeter",
    "QuotaMonitor",
    "QuotaRule",
    "QuotaStatus",
    "Rollup",
    "SilenceWatch",
    "SilentMeterRule",
    "Sink",
    "Size",
    "balance_checks",
    "build_intervals",
    "check_balance",
    "cross_check_energy",
    "daily_quality",
    "energy_report",
    "parse_period_start",
    "render_csv",
    "render_text",
    "report_from_intervals",
    "report_window",
    "rollup",
    "thin_rows",
]
