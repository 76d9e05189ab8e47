"""`edge-agent savings` on store files holding two simulated years: a baseline year, then a year
with a chiller retrofit (12 % less HVAC energy); a control building without it.

Needs the `savings` extra (OpenDSM). The intervals and outdoor temperatures are written straight
into real store files (tmp_path), not produced by running the agent for two years. Each OpenDSM
daily fit takes 5-20 s on a shared CI machine (the first one in a fresh venv longer, while numba
compiles), so the module fits three baselines in all, in module-scoped fixtures.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from zoneinfo import ZoneInfo

import pytest

from agent.cli import _parser
from agent.config.loader import load_config
from agent.core.record import Reading
from agent.hvac.calendar import DayKind, HolidayCalendar
from agent.savings.command import load_plan, savings_command
from agent.savings.html import ACTUAL, BAND, BASELINE, CLOSED, SAVED, H, W, render_html
from agent.savings.report import TOTAL, MeterResult, SavingsReport, render_csv, savings_report
from agent.store import Store
from hil.retrofit import Retrofit, SimDay, hourly_shares, hourly_temperature, simulate_days
from tests.helpers import DEMO_YAML

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

# scripts/test_savings.sh (run by CI) sets this: there, a missing extra or browser is a failure.
REQUIRED = os.environ.get("EDGE_AGENT_SAVINGS_TESTS") == "required"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        find_spec("opendsm") is None and not REQUIRED,
        reason="needs the savings extra (OpenDSM): scripts/test_savings.sh",
    ),
]

TZ = ZoneInfo("Asia/Shanghai")
FIRST = date(2025, 1, 1)
DAYS = 730  # 2025 baseline, 2026 reporting
RETROFIT = Retrofit(start=date(2026, 1, 1), hvac_saving=0.12)
NEW_LOAD_FROM, NEW_LOAD_KWH = date(2026, 7, 1), 240.0  # the control building's new server room
CALENDAR = HolidayCalendar()


def _working(day: date) -> bool:
    return CALENDAR.day(day).kind is DayKind.WORKDAY


@dataclass
class Building:
    data_dir: Path
    days: list[SimDay]

    def saved(self, first: date, last: date) -> float:
        return sum(d.saved_kwh for d in self.days if first <= d.day <= last)


def _hour_ms(day: date, hour: int) -> int:
    return round(datetime(day.year, day.month, day.day, hour, tzinfo=TZ).timestamp() * 1000)


def _rows(meter: str, values: dict[date, float], sub_item: str | None) -> Iterator[dict]:  # type: ignore[type-arg]
    for day, total in values.items():
        shares = hourly_shares(_working(day))
        for hour in range(24):
            start = _hour_ms(day, hour)
            yield {
                "meter": meter, "start_ms": start, "end_ms": start + 3_600_000,
                "value": total * shares[hour], "unit": "kWh", "quality": "measured",
                "flags": [], "energy_type": "electricity", "sub_item": sub_item,
                "role": "sub" if sub_item else "main",
            }  # fmt: skip


async def _write(db: Path, days: list[SimDay], *, new_load: float, skip: set[date]) -> None:
    main = {d.day: d.total_kwh + (new_load if d.day >= NEW_LOAD_FROM else 0.0) for d in days}
    rows = list(_rows("main_import", main, None))
    rows += _rows("hvac", {d.day: d.hvac_kwh for d in days}, "01B00")
    # Lighting without March 2025: a month of missing data in the baseline.
    rows += _rows("lighting", {d.day: d.lighting_kwh for d in days if d.day not in skip}, "01A00")
    # A meter whose use follows neither weather nor calendar: no usable baseline.
    rng = random.Random(7)
    rows += _rows("power", {d.day: 800 * rng.uniform(0.3, 1.7) for d in days}, "01C00")
    readings = [
        Reading(
            "hvac_controller", "outdoor_temperature", _hour_ms(d.day, hour) + 60_000,
            round(hourly_temperature(d.mean_c, hour), 1), "degC",
        )
        for d in days
        for hour in range(24)
    ]  # fmt: skip
    async with Store(db, batch_window=0.05, max_bytes=None) as store:
        for n in range(0, len(rows), 5000):
            await store.add_events([], intervals=rows[n : n + 5000])
        for n in range(0, len(readings), 1000):
            await store.append(readings[n : n + 1000])
        await store.flush()


def _building(
    root: Path, *, retrofit: Retrofit | None, seed: int, new_load: float = 0.0
) -> Building:
    days = simulate_days(FIRST, DAYS, working=_working, retrofit=retrofit, seed=seed)
    data_dir = root / "data"
    data_dir.mkdir(parents=True)
    march = {date(2025, 3, 1) + timedelta(days=n) for n in range(31)}
    asyncio.run(_write(data_dir / "readings.db", days, new_load=new_load, skip=march))
    return Building(data_dir, days)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo site config with hourly base intervals (the simulated year is hourly)."""
    root = tmp_path_factory.mktemp("site")
    text = DEMO_YAML.read_text(encoding="utf-8")
    assert "interval_minutes: 15" in text
    (root / "site.yaml").write_text(text.replace("interval_minutes: 15", "interval_minutes: 60"))
    plan = {
        "plan.yaml": "meters: [main_import, hvac]\n",
        "control.yaml": (
            "meters: [main_import]\n"
            "adjustments:\n"
            f"  - {{meter: main_import, start: {NEW_LOAD_FROM}, add_per_day: {NEW_LOAD_KWH},\n"
            '     reason: "new server room, 10 kW"}\n'
        ),
        "noisy.yaml": "meters: [power]\nmodel: legacy\n",
        "lighting.yaml": "meters: [lighting]\n",
    }
    common = (
        "temperature: {device: hvac_controller, point: outdoor_temperature}\n"
        "tariffs:\n"
        "  electricity:\n"
        "    source: example tariff for the test\n"
        "    time_of_use:\n"
        '      - {name: peak, price: 1.0, hours: [["08:00", "12:00"], ["17:00", "21:00"]]}\n'
        '      - {name: flat, price: 0.6, hours: [["12:00", "17:00"], ["21:00", "23:00"]]}\n'
        '      - {name: valley, price: 0.3, hours: [["23:00", "08:00"]]}\n'
    )
    for name, head in plan.items():
        (root / name).write_text(head + common, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def retrofit(tmp_path_factory: pytest.TempPathFactory) -> Building:
    return _building(tmp_path_factory.mktemp("retrofit"), retrofit=RETROFIT, seed=11)


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> Building:
    return _building(
        tmp_path_factory.mktemp("control"), retrofit=None, seed=23, new_load=NEW_LOAD_KWH
    )


def _run(site: Path, building: Building, plan: str, *extra: str) -> str:
    args = _parser().parse_args(
        [
            "savings", "--config", str(site / "site.yaml"), "--data-dir", str(building.data_dir),
            "--plan", str(site / plan), "--baseline", "2025-01-01..2025-12-31", *extra,
        ]
    )  # fmt: skip
    out = io.StringIO()
    assert savings_command(args, db=building.data_dir / "readings.db", out=out) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def retrofit_report(site: Path, retrofit: Building) -> SavingsReport:
    """The report object itself (the CLI's path is run on the control building), rendered to
    the HTML file the browser test opens."""
    config = load_config(site / "site.yaml")
    assert config.energy is not None
    report = savings_report(
        db=retrofit.data_dir / "readings.db", site_name=config.site.name,
        tz=config.site.timezone, energy=config.energy, calendar=CALENDAR,
        plan=load_plan(site / "plan.yaml"), plan_dir=site,
        baseline=(date(2025, 1, 1), date(2025, 12, 31)), period="month",
    )  # fmt: skip
    (site / "report.html").write_text(render_html(report), encoding="utf-8")
    return report


@pytest.fixture(scope="module")
def retrofit_csv(retrofit_report: SavingsReport) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(render_csv(retrofit_report))))


def test_the_baseline_knows_holidays_and_make_up_workdays(retrofit_report: SavingsReport) -> None:
    """2026-01-01 to 01-03 (Thursday to Saturday) are the New Year holiday, 2026-01-04 (a Sunday)
    is a make-up workday (调休): the adjusted baseline follows the calendar, not the weekday."""
    main = next(r for r in retrofit_report.meters if r.meter.name == "main_import")
    baseline = {row.day: row.baseline or 0.0 for row in main.days}
    working = {row.day: row.working for row in main.days}
    assert [working[date(2026, 1, d)] for d in range(1, 6)] == [False, False, False, True, True]
    assert baseline[date(2026, 1, 4)] > 2 * baseline[date(2026, 1, 3)]
    assert baseline[date(2026, 1, 1)] < 0.5 * baseline[date(2026, 1, 5)]


def _row(rows: list[dict[str, str]], meter: str, period: str) -> dict[str, str]:
    return next(r for r in rows if r["meter"] == meter and r["period"] == period)


def test_the_retrofit_is_found_within_its_stated_uncertainty(
    retrofit: Building, retrofit_csv: list[dict[str, str]]
) -> None:
    truth = retrofit.saved(date(2026, 1, 1), date(2026, 12, 31))
    hvac_2026 = sum(d.hvac_kwh for d in retrofit.days if d.day.year == 2026)
    assert truth == pytest.approx(hvac_2026 * 0.12 / 0.88)  # the switch removed 12 %
    for meter in ("main_import", "hvac"):
        row = _row(retrofit_csv, meter, "total")
        savings, u90 = float(row["savings"]), float(row["uncertainty_90"])
        assert row["status"] == "ok"
        assert int(row["days"]) == 365
        assert abs(savings - truth) <= u90, (meter, savings, truth, u90)
        assert row["significant_90"] == "yes"
        assert savings > u90
        # Priced at the year's time-of-use mix: between the valley and the peak price.
        assert 0.3 * savings < float(row["cost"]) < 1.0 * savings
        assert float(row["tce"]) == pytest.approx(savings * 0.1229 / 1000, rel=1e-5)
        assert float(row["tco2"]) == pytest.approx(savings * 0.5306 / 1000, rel=1e-5)
        assert float(row["cvrmse"]) <= 0.25
    months = [r for r in retrofit_csv if r["meter"] == "hvac" and r["period"].startswith("2026-")]
    assert len(months) == 12
    total = float(_row(retrofit_csv, "hvac", "total")["savings"])
    assert sum(float(r["savings"]) for r in months) == pytest.approx(total, rel=1e-5)


def test_the_report_states_the_baseline_and_its_thresholds(
    site: Path, retrofit: Building, retrofit_csv: list[dict[str, str]]
) -> None:
    html = (site / "report.html").read_text(encoding="utf-8")
    # The model split the days by the China calendar and found the simulated balance points
    # (heating below 12 °C, cooling above 22 °C) within a few degrees.
    assert "working days" in html
    assert "closed days" in html
    assert "CV(RMSE)" in html
    assert "(at most 25 %)" in html
    assert "NMBE" in html
    assert "R²" in html
    assert "Data sufficiency" in html
    assert "Refused" not in html


def test_the_html_report_is_self_contained(site: Path, retrofit_csv: list[dict[str, str]]) -> None:
    html = (site / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    for forbidden in ("<script", "<link", "src=", "@import", "url("):
        assert forbidden not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html
    for kind in ("daily", "savings", "signature"):
        assert f'data-chart="{kind}" data-meter="hvac"' in html
    assert html.count('class="actual"') > 600  # a dot per usable day and meter
    assert 'class="band"' in html


def test_a_control_building_shows_no_savings(site: Path, control: Building) -> None:
    """Without the retrofit, but with a new load from July 2026 that the plan records as a
    non-routine adjustment: the adjusted baseline carries it, so no savings appear."""
    html = control.data_dir / "control.html"
    text = _run(site, control, "control.yaml", "--period", "quarter", "--csv", "--html", str(html))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert "new server room, 10 kW" in html.read_text(encoding="utf-8")
    assert control.saved(FIRST, date(2026, 12, 31)) == 0
    added = {"2026-Q1": 0.0, "2026-Q2": 0.0, "2026-Q3": 92 * 240.0, "2026-Q4": 92 * 240.0}
    for period, adjustment in added.items():
        assert float(_row(rows, "main_import", period)["adjustment"]) == pytest.approx(adjustment)
    row = _row(rows, "main_import", "total")
    assert float(row["adjustment"]) == pytest.approx(184 * 240.0)
    assert row["status"] == "ok"
    assert abs(float(row["savings"])) <= float(row["uncertainty_90"])
    assert row["significant_90"] == "no"
    assert [r["period"] for r in rows if r["meter"] == "main_import"] == [
        "2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4", "total",
    ]  # fmt: skip


def test_a_baseline_above_the_cvrmse_threshold_is_refused(site: Path, control: Building) -> None:
    text = _run(site, control, "noisy.yaml")
    assert "Meter power" in text
    assert "REFUSED for the contract report:" in text
    assert "fit: CV(RMSE)" in text
    assert "(at most 25 %)" in text
    # No savings figure is printed for it.
    assert "at 90 % confidence" not in text
    rows = list(csv.DictReader(io.StringIO(_run(site, control, "noisy.yaml", "--csv"))))
    assert [r["status"] for r in rows] == ["refused"]
    assert float(rows[0]["cvrmse"]) > 0.25


def test_a_month_missing_from_the_baseline_is_refused(site: Path, control: Building) -> None:
    text = _run(site, control, "lighting.yaml")
    assert "FAIL months with less than 50 % of their days: 2025-03 (0 of 31 days)" in text
    assert "REFUSED for the contract report:" in text
    assert "Baseline fit" not in text  # refused before fitting


# Debian's browser and its WebDriver (scripts/test_savings.sh installs both). Selenium is given
# both paths, so its Selenium Manager (which would download a browser and a driver) has no
# reason to run; the fixture also makes sure it cannot.
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SVG_NS = "http://www.w3.org/2000/svg"
# What each chart draws, by the class of its elements (agent/savings/html.py).
SERIES = {
    "daily": {"band", "baseline", "actual"},
    "savings": {"saving", "uncertainty"},
    "signature": {"point", "model"},
}
# The least number of pixels of each colour a chart paints, about a third of what the simulated
# building's charts paint at 1 px per unit: dots, lines, the band, bars.
PAINTED = {
    "daily": {ACTUAL: 1000, BASELINE: 1000, BAND: 1000},
    "savings": {SAVED: 5000},
    "signature": {ACTUAL: 400, CLOSED: 200, BASELINE: 300},
}
# Per chart after layout: its box on the page, and the box (in the chart's own units) of every
# element it drew, by class. getBBox is computed from the parsed geometry, so a chart whose
# points did not parse or land nowhere shows here.
GEOMETRY_JS = """
return Array.from(document.querySelectorAll("svg.chart"), (svg) => {
  const box = svg.getBoundingClientRect();
  const series = {};
  for (const el of svg.querySelectorAll("[class]")) {
    const b = el.getBBox();
    (series[el.getAttribute("class")] ??= []).push([b.x, b.y, b.width, b.height]);
  }
  return {kind: svg.dataset.chart, meter: svg.dataset.meter, ns: svg.namespaceURI,
          isSvg: svg instanceof SVGSVGElement, width: box.width, height: box.height, series};
});
"""


def _unavailable(why: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture
def chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    """Debian's chromium, headless, driven by Debian's chromedriver through Selenium."""
    if find_spec("selenium") is None:
        _unavailable("Selenium is not installed (the savings-test extra): scripts/test_savings.sh")
    for path, deb in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            _unavailable(f"Debian's {deb} is not installed (apt-get install {deb})")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Selenium Manager would fetch a browser and a driver from the internet: offline if it ran,
    # and pointed at a file that does not exist, so that reaching it at all fails the test.
    monkeypatch.setenv("SE_OFFLINE", "true")
    monkeypatch.setenv("SE_MANAGER_PATH", str(tmp_path / "no-selenium-manager"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--force-device-scale-factor=1", "--window-size=1000,1200",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(
        executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")
    )
    with webdriver.Chrome(options=options, service=service) as driver:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        yield driver


def _drawn(result: MeterResult) -> dict[str, dict[str, int]]:
    """How many elements of each class each chart of a meter must hold, from the report."""
    observed = [d for d in result.days if d.observed is not None]
    signature = [d for d in observed if d.temperature is not None]
    periods = [p for p in result.periods if p.label != TOTAL]
    return {
        "daily": {
            "actual": len(observed),
            "band": 1,
            "baseline": 1,
        },
        "savings": {"saving": len(periods), "uncertainty": len(periods)},
        "signature": {
            "point": len(signature),
            "model": sum(1 for d in signature if not d.reporting and d.baseline is not None),
        },
    }


def test_the_charts_render_in_a_headless_browser(
    site: Path, retrofit_report: SavingsReport, chromium: WebDriver
) -> None:
    from selenium.webdriver.common.by import By

    # The browser driven is Debian's (not one Selenium found or fetched elsewhere).
    version = subprocess.run(
        [CHROMIUM, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    assert chromium.capabilities["browserVersion"] == version[1]
    chromium.get((site / "report.html").as_uri())
    assert chromium.execute_script("return document.readyState") == "complete"
    # The file loaded nothing else (it opens offline) and parsed without error.
    assert chromium.execute_script('return performance.getEntriesByType("resource").length') == 0
    assert chromium.find_elements(By.TAG_NAME, "parsererror") == []

    charts = chromium.execute_script(GEOMETRY_JS)
    expected = {r.meter.name: _drawn(r) for r in retrofit_report.meters}
    assert sorted((c["kind"], c["meter"]) for c in charts) == sorted(
        (kind, meter) for meter in expected for kind in SERIES
    )
    for chart in charts:
        where = f"{chart['kind']} chart of {chart['meter']}"
        assert chart["isSvg"], where
        assert chart["ns"] == SVG_NS, where
        # The page lays the chart out at its own size (plus its 1 px border).
        assert chart["width"] == pytest.approx(W + 2, abs=1), where
        assert chart["height"] == pytest.approx(H + 2, abs=1), where
        series = chart["series"]
        counts = {name: len(boxes) for name, boxes in series.items()}
        assert counts == expected[chart["meter"]][chart["kind"]], where
        for name, boxes in series.items():
            # Each element has a size (a line at least a length) and lies inside the chart.
            for x, y, w, h in boxes:
                assert w > 0 or h > 0, f"{where}: an empty {name}"
                assert -1 <= x <= x + w <= W + 1, where
                assert -1 <= y <= y + h <= H + 1, where
            # The series as a whole spans both axes.
            assert max(x + w for x, _, w, _ in boxes) - min(x for x, *_ in boxes) > 0, where
            assert max(y + h for _, y, _, h in boxes) - min(y for _, y, *_ in boxes) > 0, where

    # The charts' colours in the pixels of each chart as painted (Pillow comes with the savings
    # extra, as matplotlib needs it): a chart laid out but not painted fails here.
    from PIL import Image

    for chart in charts:
        where = f"{chart['kind']} chart of {chart['meter']}"
        element = chromium.find_element(
            By.CSS_SELECTOR,
            f'svg.chart[data-chart="{chart["kind"]}"][data-meter="{chart["meter"]}"]',
        )
        chromium.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        image = Image.open(io.BytesIO(element.screenshot_as_png)).convert("RGB")
        assert image.size == (W + 2, H + 2), where
        found = image.getcolors(maxcolors=(W + 2) * (H + 2))
        for colour, least in PAINTED[chart["kind"]].items():
            rgb = tuple(int(colour[n : n + 2], 16) for n in (1, 3, 5))
            near = sum(
                n for n, c in found if max(abs(a - b) for a, b in zip(c, rgb, strict=True)) < 24
            )
            assert near > least, f"{where}: {near} pixels of {colour}"

    # No error on the console (a failed load, a bad attribute value).
    assert [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"] == []
