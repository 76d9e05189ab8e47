"""What the BLE stack costs to start and to hold, with our small parser and with bthome-ble.

    .venv/bin/pip install -e '.[test]'          # bthome-ble is a test-only dependency
    nice -n 10 .venv/bin/python bench/bench_ble_stack.py --runs 9

Run by hand (not a test). Issue 11 asks to prefer the maintained ``bthome-ble`` parser unless
its dependencies cost too much memory or start-up time on a gateway; this measures both.

**Start-up and memory.** Each case is a fresh interpreter (``python -c``, working tree first
on ``sys.path``), started ``--runs`` times after one warm-up (bytecode and page cache), the
cases taking turns (A B C ... A B C ...) so that a machine whose speed drifts moves them alike.
Each child reports:

- **import ms**: ``time.perf_counter()`` around the case's import statements only;
- **VmRSS** and **VmHWM** (``/proc/self/status``: resident now, and its peak) after the
  imports, and **ru_maxrss** (``resource.getrusage``). Linux carries ru_maxrss across
  ``execve``: a child's figure is at least what its parent (this script) held when it forked,
  so it reads too high for small cases; VmHWM is the child's own peak;
- **modules**: ``len(sys.modules)`` after the imports.

The parent adds **process ms**: the wall time of the whole child, interpreter start-up and exit
included. Every figure is the median of the runs, with min..max beside it. The cases:

- ``bare``: nothing imported (the interpreter alone);
- ``stack``: `drivers.ble.driver` and what `BleakBackend` imports when a BLE bus opens (bleak's
  scanner, its BlueZ arguments, bleak's and dbus-fast's errors): the agent's BLE stack with
  plain adverts;
- ``stack + aes``: the same and ``cryptography``'s AES-CCM, which our parser imports only when a
  sensor has a key;
- ``bthome_ble``: ``import bthome_ble`` alone;
- ``stack + bthome_ble``: what the stack would be with bthome-ble as its parser (it imports
  ``cryptography`` whether a key is used or not).

**Dependency tree.** The distributions ``bthome-ble`` requires, recursively (markers evaluated
for this machine, extras not taken), with their installed size (the files their metadata lists);
those the agent does not already install are what bthome-ble would add to a gateway.

**Decode cost.** In this process, the same 256 BTHome v2 adverts of one sensor (packet id,
battery, temperature, humidity, voltage: what a pvvx thermometer sends), plain and encrypted,
decoded by `drivers.ble.formats.decode` and by bthome-ble's
``BTHomeBluetoothDeviceData.update`` (one long-lived parser per sensor, as Home Assistant keeps
one; adverts 2.5 s apart with a new packet id, so none is skipped as a repeat). µs per advert,
median of ``--repeat`` passes (min..max).

The machine is whatever runs it: the first line prints its CPU count, load and niceness; quote
them with the figures, and run it niced on a shared machine. Times scale with the core (a Pi's
is slower than a server's); the differences in memory and in modules loaded carry over best.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the working tree, not an installed copy

from drivers.ble.formats import BTHOME_UUID, decode, encode_bthome  # noqa: E402

# What BleakBackend imports when a BLE bus opens (drivers/ble/backend.py, BleakBackend.open
# and _adapter_errors): the agent pays for these only when a BLE link is configured.
_BLEAK: Final = (
    "from bleak import BleakScanner\n"
    "from bleak.args.bluez import OrPattern\n"
    "from bleak.assigned_numbers import AdvertisementDataType\n"
    "from bleak.exc import BleakError\n"
    "from dbus_fast.errors import DBusFastError\n"
)
_STACK: Final = "import drivers.ble.driver\n" + _BLEAK
_AES: Final = "from cryptography.hazmat.primitives.ciphers import aead\n"
CASES: Final[dict[str, str]] = {
    "bare": "",
    "stack": _STACK,
    "stack + aes": _STACK + _AES,
    "bthome_ble": "import bthome_ble\n",
    "stack + bthome_ble": _STACK + "import bthome_ble\n",
}

# The child: time the imports only, then read its own memory (json and resource come after).
_CHILD: Final = """\
import time
_t0 = time.perf_counter()
{imports}
_dt = time.perf_counter() - _t0
import json, resource, sys
_status = dict(
    line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line
)
print(json.dumps({{
    "import_ms": _dt * 1000,
    "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "vmrss_kib": int(_status["VmRSS"].split()[0]),
    "vmhwm_kib": int(_status["VmHWM"].split()[0]),
    "modules": len(sys.modules),
}}))
"""

KEY: Final = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")  # bthome.io's example key
MAC: Final = "A4:C1:38:8D:18:B2"
ADVERTS: Final = 256  # one-byte packet ids
ADVERT_PERIOD: Final = 2.5  # seconds between two adverts (the pvvx default)


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def text(self, fmt: str = ".1f") -> str:
        return f"{self.median:{fmt}} ({self.low:{fmt}}..{self.high:{fmt}})"


# ---- fresh interpreters ------------------------------------------------------------------------


def _run_child(imports: str) -> tuple[dict[str, float], float]:
    command = [sys.executable, "-c", _CHILD.format(imports=imports)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    wall_ms = (time.perf_counter() - start) * 1000
    return json.loads(done.stdout), wall_ms


def measure_cases(runs: int) -> dict[str, dict[str, Spread]]:
    """Each case ``runs`` times in fresh interpreters, the cases taking turns."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in CASES}
    for imports in CASES.values():
        _run_child(imports)  # warm-up
    for _ in range(runs):
        for name, imports in CASES.items():
            figures, wall_ms = _run_child(imports)
            for field, value in [*figures.items(), ("process_ms", wall_ms)]:
                samples[name].setdefault(field, []).append(float(value))
    return {
        name: {field: Spread.of(values) for field, values in fields.items()}
        for name, fields in samples.items()
    }


# ---- the dependency tree -----------------------------------------------------------------------


def requirement_closure(root: str) -> list[str]:
    """``root`` and every distribution it requires, recursively (installed ones; no extras)."""
    seen: dict[str, None] = {}
    pending = [canonicalize_name(root)]
    while pending:
        name = pending.pop(0)
        if name in seen:
            continue
        seen[name] = None
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            pending.append(canonicalize_name(requirement.name))
    return list(seen)


def installed_kib(name: str) -> float:
    """The installed size of a distribution: the files its RECORD lists."""
    dist = metadata.distribution(name)
    total = 0
    for file in dist.files or []:
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total / 1024


# ---- decode cost -------------------------------------------------------------------------------


def _payloads(key: bytes | None) -> list[bytes]:
    return [
        encode_bthome(
            {
                "battery": 90 - i % 10,
                "temperature": round(20 + (i % 50) * 0.13, 2),
                "humidity": round(40 + (i % 30) * 0.7, 2),
                "battery_voltage": round(2.9 + (i % 7) * 0.01, 3),
            },
            packet_id=i,
            key=key,
            mac=MAC,
            counter=i,
        )
        for i in range(ADVERTS)
    ]


def _per_advert_us(one_pass: Callable[[], int], repeat: int) -> Spread:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        decoded = one_pass()
        times.append((time.perf_counter() - start) / ADVERTS * 1e6)
        if decoded != ADVERTS:
            raise RuntimeError(f"{decoded} of {ADVERTS} adverts decoded: the pass did not run")
    return Spread.of(times)


def ours_pass(payloads: Sequence[bytes], key: bytes | None) -> Callable[[], int]:
    service_data = [{BTHOME_UUID: p} for p in payloads]

    def one_pass() -> int:
        return sum(1 for sd in service_data if decode(sd, mac=MAC, key=key).values)

    return one_pass


def bthome_pass(payloads: Sequence[bytes], key: bytes | None) -> Callable[[], int]:
    from bleak.backends.device import BLEDevice
    from bthome_ble import BTHomeBluetoothDeviceData
    from habluetooth import BluetoothServiceInfoBleak

    infos = [
        BluetoothServiceInfoBleak(
            name="ATC_8D18B2",
            address=MAC,
            rssi=-60,
            manufacturer_data={},
            service_data={BTHOME_UUID: p},
            service_uuids=[BTHOME_UUID],
            source="local",
            device=BLEDevice(MAC, None, None),
            advertisement=None,
            connectable=False,
            time=i * ADVERT_PERIOD,  # simulated reception times, never the wall clock
            tx_power=None,
        )
        for i, p in enumerate(payloads)
    ]

    def one_pass() -> int:
        parser = BTHomeBluetoothDeviceData(bindkey=key)  # a new sensor each pass: no skips
        decoded = 0
        for info in infos:
            update = parser.update(info)
            decoded += any(k.key.startswith("temperature") for k in update.entity_values)
        return decoded

    return one_pass


# ---- the report --------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters per case")
    parser.add_argument("--repeat", type=int, default=9, help="decode passes per parser")
    args = parser.parse_args()
    if args.runs < 1 or args.repeat < 1:
        parser.error("--runs and --repeat must be positive")

    print(
        f"Python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}, nice {os.nice(0)}; bthome-ble "
        f"{metadata.version('bthome-ble')}, bleak {metadata.version('bleak')}; "
        f"median (min..max) of {args.runs} fresh interpreters per case\n"
    )
    cases = measure_cases(args.runs)
    bare = cases["bare"]
    rows = []
    for name, figures in cases.items():
        rss_over = figures["vmrss_kib"].median - bare["vmrss_kib"].median
        rows.append(
            (
                name,
                figures["import_ms"].text(),
                figures["process_ms"].text(".0f"),
                f"{figures['vmrss_kib'].median / 1024:.1f}",
                f"{rss_over / 1024:+.1f}",
                f"{figures['vmhwm_kib'].median / 1024:.1f}",
                f"{figures['maxrss_kib'].median / 1024:.1f}",
                f"{figures['modules'].median:.0f}",
            )
        )
    print(
        _table(
            (
                "case",
                "import ms",
                "process ms",
                "VmRSS MiB",
                "VmRSS over bare",
                "VmHWM MiB",
                "ru_maxrss MiB",
                "modules",
            ),
            rows,
        )
    )

    ours = set(requirement_closure("building-edge-agent"))
    tree = requirement_closure("bthome-ble")
    dep_rows = []
    added_kib = 0.0
    for name in tree:
        kib = installed_kib(name)
        already = name in ours
        added_kib += 0 if already else kib
        dep_rows.append(
            (
                name,
                metadata.version(name),
                f"{kib / 1024:.1f}",
                "yes" if already else "**no**",
            )
        )
    print(f"\nbthome-ble's tree: {len(tree)} distributions, {added_kib / 1024:.1f} MiB new\n")
    print(_table(("distribution", "version", "installed MiB", "agent has it"), dep_rows))

    print(f"\nDecode, µs per advert, median (min..max) of {args.repeat} passes of {ADVERTS}\n")
    decode_rows = []
    for label, key in (("plain", None), ("encrypted", KEY)):
        payloads = _payloads(key)
        decode_rows.append(
            (
                label,
                _per_advert_us(ours_pass(payloads, key), args.repeat).text(),
                _per_advert_us(bthome_pass(payloads, key), args.repeat).text(),
            )
        )
    print(_table(("BTHome v2 advert", "drivers.ble.formats", "bthome-ble update()"), decode_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
