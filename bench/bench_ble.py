"""CPU cost of the BLE room-sensor path: N sensors advertising every 2.5 s, through the driver.

    .venv/bin/python bench/bench_ble.py --sensors 10 --hours 1
    .venv/bin/python bench/bench_ble.py --format bthome-encrypted --hours 4

Run by hand (not a test). N sensors (``--sensors``, default 10), each advertising every 2.5 s
(the pvvx default) and measuring every 10 s (a new packet id every 4th advert; the three in
between are repeats the driver dedupes), in one format (``--format``: bthome, the default,
pvvx, atc1441 or bthome-encrypted), for ``--hours`` of simulated time. The adverts go through
the real code, opened as the service opens it: `BleDriver(backend_factory=...)` around a
`FakeBackend`, one `Link("bench_ble", BleAdapterConfig(...))`, one `BleSensorConfig` per sensor
(format ``auto``, interval 60 s, ``--aggregate`` latest or mean; encrypted ones with a key
file), `MemoryState`, each sensor's ``run(sink)`` as a task, and a sink that counts readings.

Adverts are fed as fast as the code takes them, one at a time (the scan task is woken for each,
as on the air, where adverts of different sensors do not arrive together), while an injected
clock accounts time as simulated: after every sensor's advert of a 2.5 s round, the clock moves
2.5 s and wakes the sensors whose interval ended (they hand their readings to the sink). The
payloads are encoded before the clock starts (a cycle of 256 measurements per sensor, as the
one-byte packet ids wrap), so encoding is not counted. Not counted either: bleak and D-Bus
(parsing the advert, the thread hop into the loop) on a gateway, and the store behind the sink.

What is printed (CPU is process time, ``time.process_time()``, user + system, all threads;
each figure is the median of ``--repeat`` runs, the best of them in brackets):

- **CPU s / simulated hour**: CPU seconds the process spends per hour of simulated time for
  the N sensors (adverts in, readings out, the event loop's hand-overs, and this harness's own
  small loop); divided by 3600 it is the share of one core (also printed, in %).
- **µs CPU / advert**: the same CPU time over the adverts fed.
- **of which decode, µs / advert**: `drivers.ble.formats.decode` alone on the same adverts,
  in a plain loop: what parsing (and, encrypted, AES-CCM) costs of the figure above.
- **peak RSS**: ``ru_maxrss`` of this process, after imports and set-up (before feeding) and
  at the end: what the interpreter, pydantic, the driver and the adverts held at most.
- **import drivers.ble.source**: wall time of ``python -c "import drivers.ble.source"`` minus
  ``python -c pass`` in fresh subprocesses (median of 5 each, after a warm-up run): what a
  cold start pays for the BLE source and what it pulls in (agent.core, pydantic); ``drivers.ble``
  alone is the light part (formats, fake backend, errors), for comparison.

The working tree is imported (its root is put first on ``sys.path``), not an installed copy.
The default run takes a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal, get_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working tree, not a copy

from agent.core.clock import VirtualClock
from agent.core.links import BleAdapterConfig, Link
from agent.core.record import Reading
from agent.sources.compose import MemoryState
from drivers.ble.backend import Advert, FakeBackend
from drivers.ble.driver import BleDriver
from drivers.ble.formats import (
    BTHOME_UUID,
    ENVIRONMENTAL_SENSING_UUID,
    decode,
    encode_atc1441,
    encode_bthome,
    encode_pvvx,
)
from drivers.ble.source import BleSensor
from drivers.ble.spec import BleSensorConfig

BenchFormat = Literal["bthome", "pvvx", "atc1441", "bthome-encrypted"]
Aggregate = Literal["latest", "mean"]

ADVERT_PERIOD: Final = 2.5  # seconds between two adverts of one sensor (pvvx default)
ADVERTS_PER_MEASUREMENT: Final = 4  # a new measurement every 10 s
MEASUREMENTS: Final = 256  # distinct payloads per sensor (one-byte packet ids wrap)
INTERVAL: Final = 60.0  # the sensors' configured interval (the config default)
POINTS: Final = 4  # temperature, humidity, battery, rssi
KEY: Final = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
START_MS: Final = 1_785_000_000_000  # a fixed moment: the wall clock is simulated as well
IMPORT_RUNS: Final = 5
ROOT: Final = Path(__file__).resolve().parents[1]


class CountingSink:
    """The sink: counts what the sensors hand over (a store would write it)."""

    def __init__(self) -> None:
        self.readings = 0
        self.batches = 0

    async def __call__(self, readings: Sequence[Reading]) -> None:
        self.batches += 1
        self.readings += len(readings)


def _mac(index: int) -> str:
    return f"A4:C1:38:{index >> 16 & 0xFF:02X}:{index >> 8 & 0xFF:02X}:{index & 0xFF:02X}"


def _service_data(fmt: BenchFormat, mac: str, m: int) -> Mapping[str, bytes]:
    """Measurement ``m`` of the sensor at ``mac``, as its service data."""
    temperature = round(20.0 + (m % 50) * 0.1, 2)
    humidity = 40 + m % 20
    if fmt == "pvvx":
        payload = encode_pvvx(mac=mac, temperature=temperature, humidity=humidity, battery=90,
                              battery_voltage=2.95, counter=m % 256)  # fmt: skip
        return {ENVIRONMENTAL_SENSING_UUID: payload}
    if fmt == "atc1441":
        payload = encode_atc1441(mac=mac, temperature=round(temperature, 1), humidity=humidity,
                                 battery=90, battery_voltage=2.95, counter=m % 256)  # fmt: skip
        return {ENVIRONMENTAL_SENSING_UUID: payload}
    values = {"temperature": temperature, "humidity": humidity, "battery": 90}
    if fmt == "bthome":
        return {BTHOME_UUID: encode_bthome(values, packet_id=m % 256)}
    payload = encode_bthome(values, packet_id=m % 256, key=KEY, mac=mac, counter=m)
    return {BTHOME_UUID: payload}


def _cycles(fmt: BenchFormat, macs: Sequence[str]) -> list[list[Advert]]:
    """Per sensor, one cycle of its adverts: each measurement four times, RSSI -60..-63."""
    cycles = []
    for mac in macs:
        data = [_service_data(fmt, mac, m) for m in range(MEASUREMENTS)]
        cycles.append(
            [
                Advert(mac, -60 - k % 4, data[k // ADVERTS_PER_MEASUREMENT])
                for k in range(MEASUREMENTS * ADVERTS_PER_MEASUREMENT)
            ]
        )
    return cycles


@dataclass(frozen=True, slots=True)
class Run:
    cpu_s: float  # process CPU seconds while feeding
    adverts: int
    readings: int
    duplicates: int
    rss_before_kib: int


def _peak_rss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


async def feed(
    *,
    fmt: BenchFormat,
    sensors: int,
    rounds: int,
    aggregate: Aggregate,
    key_file: Path | None,
) -> Run:
    """Open the sensors through the driver, run them, and feed ``rounds`` rounds of adverts."""
    clock = VirtualClock(datetime.fromtimestamp(START_MS / 1000, UTC))
    fake = FakeBackend("hci0")
    driver = BleDriver(backend_factory=lambda _config: fake)
    macs = [_mac(i) for i in range(sensors)]
    cycles = _cycles(fmt, macs)
    sink = CountingSink()
    options: dict[str, object] = {"aggregate": aggregate, "interval": INTERVAL}
    if key_file is not None:
        options["key_file"] = str(key_file)
    link_config = BleAdapterConfig(kind="ble", adapter="hci0")
    async with Link("bench_ble", link_config) as link, contextlib.AsyncExitStack() as stack:
        opened: list[BleSensor] = []
        for i, mac in enumerate(macs):
            config = BleSensorConfig.model_validate(
                {"protocol": "ble", "name": f"room_{i:03d}", "bus": "bench_ble", "mac": mac,
                 **options}
            )  # fmt: skip
            source = await stack.enter_async_context(
                driver.open_source(config, link=link, state=MemoryState(), clock=clock)
            )
            assert isinstance(source, BleSensor)
            opened.append(source)
        adapter = opened[0].adapter
        tasks = [asyncio.create_task(s.run(sink), name=f"bench[{s.name}]") for s in opened]
        try:
            await fake.wait_scanning()
            for _ in range(30):  # let every task run until it waits
                await asyncio.sleep(0)
            if clock.sleepers != sensors:  # every sensor waits for its first interval's end
                raise RuntimeError(f"{clock.sleepers} of {sensors} sensors are running")
            rss_before = _peak_rss_kib()
            length = len(cycles[0])
            heard = 0
            cpu_start = time.process_time()
            for r in range(rounds):
                k = r % length
                for cycle in cycles:
                    fake.push(cycle[k])
                    heard += 1
                    await asyncio.sleep(0)  # the scan task, woken by the advert, takes it
                    if adapter.adverts != heard:
                        raise RuntimeError(f"advert {heard} was not taken at once")
                await clock.advance(ADVERT_PERIOD)
            cpu_s = time.process_time() - cpu_start
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result  # a sensor's run failed
        if any(s.bad_adverts for s in opened):
            raise RuntimeError(f"adverts not decoded: {opened[0].last_problem}")
        return Run(
            cpu_s=cpu_s,
            adverts=heard,
            readings=sink.readings,
            duplicates=sum(s.duplicates for s in opened),
            rss_before_kib=rss_before,
        )


def decode_only(fmt: BenchFormat, sensors: int, rounds: int) -> float:
    """CPU seconds of `drivers.ble.formats.decode` alone over the same adverts."""
    cycles = _cycles(fmt, [_mac(i) for i in range(sensors)])
    key = KEY if fmt == "bthome-encrypted" else None
    length = len(cycles[0])
    start = time.process_time()
    for r in range(rounds):
        k = r % length
        for cycle in cycles:
            advert = cycle[k]
            decode(advert.service_data, mac=advert.mac, key=key)
    return time.process_time() - start


def import_ms(module: str) -> float:
    """Wall milliseconds of importing ``module`` in a fresh interpreter, over an empty one."""

    def median_ms(code: str) -> float:
        command = [sys.executable, "-c", code]
        subprocess.run(command, cwd=ROOT, check=True)  # warm-up: bytecode and page cache
        times = []
        for _ in range(IMPORT_RUNS):
            start = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000

    return median_ms(f"import {module}") - median_ms("pass")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=10, help="sensors on one adapter")
    parser.add_argument("--hours", type=float, default=1.0, help="simulated duration")
    parser.add_argument(
        "--format", choices=get_args(BenchFormat), default="bthome", help="the sensors' format"
    )
    parser.add_argument("--aggregate", choices=get_args(Aggregate), default="latest")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the median is printed")
    parser.add_argument("--no-import", action="store_true", help="skip the import timing")
    args = parser.parse_args()
    fmt: BenchFormat = args.format
    if args.sensors < 1 or args.hours <= 0 or args.repeat < 1:
        parser.error("--sensors, --hours and --repeat must be positive")
    rounds = max(1, round(args.hours * 3600 / ADVERT_PERIOD))
    sim_s = rounds * ADVERT_PERIOD

    with tempfile.TemporaryDirectory(prefix="bench_ble_") as tmp:
        key_file = None
        if fmt == "bthome-encrypted":
            key_file = Path(tmp) / "bench.key"
            key_file.write_text(KEY.hex() + "\n")
            key_file.chmod(0o600)
        runs = [
            asyncio.run(
                feed(
                    fmt=fmt,
                    sensors=args.sensors,
                    rounds=rounds,
                    aggregate=args.aggregate,
                    key_file=key_file,
                )
            )
            for _ in range(args.repeat)
        ]
    decode_s = [decode_only(fmt, args.sensors, rounds) for _ in range(args.repeat)]
    rss_end = _peak_rss_kib()

    run = runs[0]
    expected_readings = args.sensors * POINTS * int(sim_s // INTERVAL)
    expected_duplicates = args.sensors * sum(
        1 for r in range(rounds) if r % ADVERTS_PER_MEASUREMENT
    )
    if any(r.readings != expected_readings or r.duplicates != expected_duplicates for r in runs):
        raise RuntimeError(
            f"readings {run.readings} (expected {expected_readings}), duplicates "
            f"{run.duplicates} (expected {expected_duplicates}): the path did not run as meant"
        )

    cpu = sorted(r.cpu_s for r in runs)
    per_hour = [c * 3600 / sim_s for c in cpu]
    per_advert = [c / run.adverts * 1e6 for c in cpu]
    dec = sorted(decode_s)
    dec_per_advert = [d / run.adverts * 1e6 for d in dec]

    import drivers.ble

    where = Path(drivers.ble.__file__).parent
    print(
        f"BLE room sensors: {args.sensors} x {fmt}, one advert each every {ADVERT_PERIOD:g} s "
        f"(a new measurement every {ADVERT_PERIOD * ADVERTS_PER_MEASUREMENT:g} s), "
        f"interval {INTERVAL:g} s, aggregate {args.aggregate}"
    )
    print(
        f"simulated {sim_s / 3600:.4g} h: {run.adverts} adverts ({run.duplicates} repeats), "
        f"{run.readings} readings; median of {args.repeat} runs [best]; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, code from {where}"
    )
    print()
    rows: list[tuple[str, str]] = [
        (
            "CPU s / simulated hour",
            f"{statistics.median(per_hour):.3f}  [{per_hour[0]:.3f}]",
        ),
        (
            "  = share of one core",
            f"{statistics.median(per_hour) / 36:.4f} %  [{per_hour[0] / 36:.4f} %]",
        ),
        (
            "µs CPU / advert",
            f"{statistics.median(per_advert):.1f}  [{per_advert[0]:.1f}]",
        ),
        (
            "  of which decode, µs / advert",
            f"{statistics.median(dec_per_advert):.1f}  [{dec_per_advert[0]:.1f}]",
        ),
        ("peak RSS before feeding", f"{run.rss_before_kib / 1024:.1f} MiB"),
        ("peak RSS at the end", f"{rss_end / 1024:.1f} MiB"),
    ]
    if not args.no_import:
        rows.append(("import drivers.ble.source", f"{import_ms('drivers.ble.source'):.0f} ms"))
        rows.append(("import drivers.ble", f"{import_ms('drivers.ble'):.0f} ms"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
