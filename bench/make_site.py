"""Write a site config of many simulated Modbus TCP meters, for the benchmarks.

Each meter has 35 float32 points in four clusters of holding registers (9, 9, 9 and 8 points at
0, 200, 400 and 600): more than 125 registers apart (the FC3 limit, Modbus application protocol
v1.1b3, 6.3), so the cheapest plan is exactly four requests per meter, for the agent's planner
as for bench/reference_poller.py. Meters are spread evenly over ``lines`` Modbus TCP endpoints
(one per line, unit ids 1, 2, ...), all polled every ``interval``.

    python bench/make_site.py --meters 200 --lines 4 > /tmp/site-200.yaml
    python bench/make_site.py --meters 200 --profile eastron-sdm630 > /tmp/site-200-sdm.yaml
    edge-agent validate /tmp/site-200.yaml

Without ``--ports`` the endpoints are 127.0.0.1:15020, 15021, ... (validate does not connect).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

POINTS_PER_METER = 35
CLUSTERS = ((0, 9), (200, 9), (400, 9), (600, 8))  # (first register, points): 9+9+9+8 = 35
assert sum(n for _, n in CLUSTERS) == POINTS_PER_METER


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
) -> str:
    """The YAML text of the site: explicit points on every meter, or a shipped ``profile``."""
    if len(ports) != lines:
        raise ValueError(f"{lines} lines need {lines} ports, not {len(ports)}")
    text = ["site:", "  id: bench-site", "  name: Benchmark building", "gateway:", "  id: gw1"]
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
    for name, line, unit in meter_layout(meters, lines):
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
        text += [f"      {p}: {{register: {r}, type: float32, unit: W}}" for p, r in registers]
    return "\n".join(text) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--lines", type=int, default=4)
    parser.add_argument("--ports", type=int, nargs="*", default=None)
    parser.add_argument("--mqtt", default=None, metavar="URL")
    parser.add_argument("--profile", default=None, help="a shipped profile instead of points")
    args = parser.parse_args(argv)
    ports = args.ports or [15020 + i for i in range(args.lines)]
    sys.stdout.write(
        site_yaml(args.meters, args.lines, ports, mqtt_url=args.mqtt, profile=args.profile)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
