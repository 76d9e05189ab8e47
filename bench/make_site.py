"""Write a site config of many simulated Modbus TCP meters, for the benchmarks.

Each meter has 35 float32 points in four clusters of holding registers (9, 9, 9 and 8 points at
0, 200, 400 and 600): more than 125 registers apart (the FC3 limit, Modbus application protocol
v1.1b3, 6.3), so the cheapest plan is exactly four requests per meter, for the agent's planner
as for bench/reference_poller.py. Meters are spread evenly over ``lines`` Modbus TCP endpoints
(one per line, unit ids 1, 2, ...), all polled every ``interval``.

    python bench/make_site.py --meters 200 --lines 4 > /tmp/site-200.yaml
    python bench/make_site.py --meters 200 --profile eastron-sdm630 > /tmp/site-200-sdm.yaml
    python bench/make_site.py --meters 50 --lines 1 --hvac-energy > /tmp/site-50-hvac.yaml
    edge-agent validate /tmp/site-200.yaml

``--hvac-energy`` adds what the issue's memory target counts ("50 meters, HVAC and energy
configured"): HVAC zones on the first meters of the site, run by a weekly programme on the China
calendar (the `holidays` package, as config/demo.yaml), and energy accounting over every meter
(sub-items, a quota, off-hours and silence rules, a balance). A zone's controller is one of the
simulated meters: it gains a writable on/off coil and a writable float32 setpoint over its last
cluster-0 point (the simulated meters serve 16 coils and the cluster registers only), so those
meters read 37 points in 5 requests.

Without ``--ports`` the endpoints are 127.0.0.1:15020, 15021, ... (validate does not connect).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

POINTS_PER_METER = 35
CLUSTERS = ((0, 9), (200, 9), (400, 9), (600, 8))  # (first register, points): 9+9+9+8 = 35
assert sum(n for _, n in CLUSTERS) == POINTS_PER_METER
HVAC_ZONES = 3  # zones (each on its own meter) with --hvac-energy
ZONE_POINTS = (
    "      zone_on: {register: 0, table: coil, type: bit, writable: true}",
    "      zone_setpoint: {register: 16, type: float32, unit: degC, writable: true}",
)
ENERGY_POINT = "p1_0"  # each meter's energy counter with --hvac-energy
SUB_ITEMS = ("01A00", "01B00", "01C00", "01D00")  # lighting, HVAC, power, special (guideline)


def point_registers() -> list[tuple[str, int]]:
    """(point name, first register) of every float32 point of one meter."""
    out = []
    for cluster, (start, count) in enumerate(CLUSTERS):
        out.extend((f"p{cluster}_{i}", start + 2 * i) for i in range(count))
    return out


def meter_layout(meters: int, lines: int) -> list[tuple[str, int, int]]:
    """(meter name, line index, unit id) of every meter, spread evenly over the lines."""
    per_line: list[int] = [0] * lines
    out = []
    for index in range(meters):
        line = index % lines
        per_line[line] += 1
        out.append((f"m{index:03d}", line, per_line[line]))
    return out


def site_yaml(
    meters: int,
    lines: int,
    ports: Sequence[int],
    *,
    mqtt_url: str | None = None,
    interval: str = "1s",
    batch_window: str | None = None,
    timeout: str = "1s",
    profile: str | None = None,
    hvac_energy: bool = False,
) -> str:
    """The YAML text of the site: explicit points on every meter, or a shipped ``profile``;
    with ``hvac_energy``, HVAC zones and energy accounting too (see the module's text)."""
    if len(ports) != lines:
        raise ValueError(f"{lines} lines need {lines} ports, not {len(ports)}")
    if hvac_energy and (profile is not None or meters < HVAC_ZONES):
        raise ValueError(f"hvac_energy needs explicit points (no profile) on {HVAC_ZONES} meters")
    text = ["site:", "  id: bench-site", "  name: Benchmark building"]
    if hvac_energy:
        text += ["  timezone: Asia/Shanghai", "  floor_area_m2: 12000"]
    text += ["gateway:", "  id: gw1"]
    text += ["store:", "  path: readings.db"]
    if batch_window is not None:
        text.append(f"  batch_window: {batch_window}")
    if mqtt_url is not None:
        text += ["uplink:", f"  url: {mqtt_url}", "  topic_prefix: bench"]
    text.append("buses:")
    for line, port in enumerate(ports):
        text += [
            f"  line{line}:",
            "    kind: modbus_tcp",
            "    host: 127.0.0.1",
            f"    port: {port}",
            f"    timeout: {timeout}",
        ]
    text.append("devices:")
    registers = point_registers()
    layout = meter_layout(meters, lines)
    for index, (name, line, unit) in enumerate(layout):
        text += [
            f"  - name: {name}",
            f"    bus: line{line}",
            f"    unit_id: {unit}",
            f"    interval: {interval}",
        ]
        if profile is not None:
            text.append(f"    profile: {profile}")
            continue
        text.append("    points:")
        text += [
            f"      {p}: {{register: {r}, type: float32, unit: {_unit(p, hvac_energy)}}}"
            for p, r in registers
        ]
        if hvac_energy and index < HVAC_ZONES:
            text += ZONE_POINTS
    if hvac_energy:
        text += _hvac_yaml([name for name, _, _ in layout[:HVAC_ZONES]])
        text += _energy_yaml([name for name, _, _ in layout])
    return "\n".join(text) + "\n"


def _unit(point: str, hvac_energy: bool) -> str:
    """W, but the energy meters' point is a counter in kWh (the energy section checks units)."""
    return "kWh" if hvac_energy and point == ENERGY_POINT else "W"


def _hvac_yaml(controllers: Sequence[str]) -> list[str]:
    """Zones on ``controllers``, an office programme on the China calendar, seasons by date."""
    text = ["hvac:", "  zones:"]
    for index, device in enumerate(controllers):
        text += [
            f"    zone{index + 1}:",
            f"      device: {device}",
            "      setpoint: zone_setpoint",
            "      on: zone_on",
            "      programme: office",
        ]
    text += [
        "  programmes:",
        "    office:",
        "      workday:",
        '        - {start: "07:30", level: comfort}',
        '        - {start: "12:00", level: setback}',
        '        - {start: "13:30", level: comfort}',
        '        - {start: "18:00", level: off}',
        "      weekend: []",
        "  season:",
        '    cooling: [{from: "06-01", to: "09-30"}]',
        '    heating: [{from: "11-15", to: "03-15"}]',
        "  calendar: {country: china}",
        "  trust_clock: true",
        "  check_interval: 10s",
    ]
    return text


def _energy_yaml(devices: Sequence[str]) -> list[str]:
    """Every meter's energy point as an electricity meter (the first the main meter, the
    others sub-items), and rules over them."""
    text = ["energy:", "  interval_minutes: 15", "  max_step: 5m", "  meters:"]
    names = []
    for index, device in enumerate(devices):
        names.append(f"e_{device}")
        # The first meter is the building's main meter, the others its sub-items.
        kind = "role: main" if index == 0 else f"sub_item: {SUB_ITEMS[index % len(SUB_ITEMS)]}"
        text.append(
            f"    - {{name: e_{device}, device: {device}, point: {ENERGY_POINT}, {kind}, "
            "max_rate: 500}"
        )
    text += [
        "  quotas:",
        "    - {name: site-month, energy_type: electricity, period: month, limit: 95000}",
        "  off_hours:",
        f"    - {{name: night, sub_item: {SUB_ITEMS[1]}, baseline: 4.0, sustained: 1h}}",
        "  silent: {intervals: 4}",
        "  balance:",
        f"    - {{name: site, main: [{names[0]}], parts: [{', '.join(names[1:])}]}}",
    ]
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--lines", type=int, default=4)
    parser.add_argument("--ports", type=int, nargs="*", default=None)
    parser.add_argument("--mqtt", default=None, metavar="URL")
    parser.add_argument("--profile", default=None, help="a shipped profile instead of points")
    parser.add_argument("--hvac-energy", action="store_true", help="HVAC zones and energy too")
    args = parser.parse_args(argv)
    ports = args.ports or [15020 + i for i in range(args.lines)]
    sys.stdout.write(
        site_yaml(
            args.meters,
            args.lines,
            ports,
            mqtt_url=args.mqtt,
            profile=args.profile,
            hvac_energy=args.hvac_energy,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
