"""The bare reference the agent is measured against: read, publish, store nothing.

Each line is one pymodbus TCP connection whose meters are read in turn, every ``interval``
seconds, in four coalesced FC3 requests each (the four register clusters of
bench/make_site.py); the 35 float32 values go out as one MQTT message per meter-cycle, in the
agent's payload format (docs/payload.md), so the benchmark's subscriber measures both alike.
A cycle that ends late starts the next one at once. No buffer, no retry, no health: this is the
floor of CPU per point, not a product.

    python bench/reference_poller.py --mqtt 127.0.0.1:1883 --ports 15020 --meters 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime

import aiomqtt
from pymodbus.client import AsyncModbusTcpClient

from bench.make_site import CLUSTERS, meter_layout

TOPIC = "bench/bench-site/reference/readings"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def poll_line(
    port: int, units: list[tuple[str, int]], mqtt: aiomqtt.Client, interval: float
) -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1)
    await client.connect()
    f32 = client.DATATYPE.FLOAT32
    seq = 0
    next_cycle = time.monotonic()
    while True:
        for name, unit in units:
            records = []
            for cluster, (start, count) in enumerate(CLUSTERS):
                reply = await client.read_holding_registers(start, count=2 * count, device_id=unit)
                ts = _iso(time.time())
                for i in range(count):
                    value = client.convert_from_registers(reply.registers[2 * i : 2 * i + 2], f32)
                    seq += 1
                    records.append(
                        {"seq": seq, "device": name, "point": f"p{cluster}_{i}", "ts": ts,
                         "value": value, "unit": "W", "quality": "good"}
                    )  # fmt: skip
            body = {"gateway": "reference", "site": "bench-site", "backfill": False,
                    "readings": records}  # fmt: skip
            await mqtt.publish(TOPIC, json.dumps(body, separators=(",", ":")), qos=1)
        next_cycle += interval
        await asyncio.sleep(max(0.0, next_cycle - time.monotonic()))
        next_cycle = max(next_cycle, time.monotonic())


async def run(
    mqtt_host: str, mqtt_port: int, ports: list[int], meters: int, interval: float
) -> None:
    lines: list[list[tuple[str, int]]] = [[] for _ in ports]
    for name, line, unit in meter_layout(meters, len(ports)):
        lines[line].append((name, unit))
    async with (
        aiomqtt.Client(mqtt_host, mqtt_port, identifier="reference") as mqtt,
        asyncio.TaskGroup() as group,
    ):
        for port, units in zip(ports, lines, strict=True):
            group.create_task(poll_line(port, units, mqtt, interval))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mqtt", required=True, metavar="HOST:PORT")
    parser.add_argument("--ports", type=int, nargs="+", required=True)
    parser.add_argument("--meters", type=int, required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    host, _, port = args.mqtt.rpartition(":")
    asyncio.run(run(host, int(port), args.ports, args.meters, args.interval))


if __name__ == "__main__":
    main()
