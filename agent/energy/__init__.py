"""Energy accounting: counters to intervals, rollups, tce and CO2, quotas and data quality.

Pure and synchronous: functions over reading rows (anything shaped like
agent.core.record.StoredReading) that produce records. `EnergyPipeline` bundles the incremental
parts for the running agent; `energy_report` makes the `edge-agent energy` report.
"""

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
