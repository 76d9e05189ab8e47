"""The site config: what a technician writes in YAML, validated once at start-up.

Deep code receives these frozen models and never reads raw dicts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import Field, field_validator, model_validator

from agent.commands.config import CommandsConfig
from agent.core.configbase import ConfigModel
from agent.core.durations import Duration
from agent.core.links import LINK_KINDS, LinkConfig
from agent.core.suggest import did_you_mean
from agent.energy.config import EnergyConfig, cross_check_energy
from agent.hvac.program import HvacConfig
from agent.platform.config import PlatformConfig, cross_check_platform
from agent.sources.registry import DEFAULT_PROTOCOL, config_model, device_config_type

if TYPE_CHECKING:
    from agent.core.configbase import DeviceConfigBase as DeviceConfig
else:
    # One entry of `devices`: the registered drivers' config models, chosen by `protocol`.
    DeviceConfig = device_config_type()

__all__ = [
    "GatewayConfig",
    "SiteConfig",
    "SiteInfo",
    "StatusLedConfig",
    "StoreConfig",
    "TlsConfig",
    "UplinkConfig",
]

SLUG = r"^[a-z0-9][a-z0-9_-]*$"


class SiteInfo(ConfigModel):
    """The building this gateway serves."""

    id: str = Field(pattern=SLUG, max_length=64)
    """Stable site id used in MQTT topics (lowercase letters, digits, _ and -)."""
    name: str = Field(min_length=1)
    """Human name of the site, e.g. 荆州市政府办公楼."""
    timezone: str = "Asia/Shanghai"
    """IANA time zone of the site; schedules and intervals use its local time."""
    floor_area_m2: float | None = Field(default=None, gt=0)
    """Gross floor area, for intensities per square metre (GB/T 51161 quotas)."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # "Asia" is a directory
            hint = did_you_mean(value, sorted(available_timezones()))
            raise ValueError(f"{value!r} is not a known time zone{hint}") from None
        return value


class StatusLedConfig(ConfigModel):
    """The gateway's status LED: a short flash every 2 s when all is well, a slow blink while
    the uplink is down, a fast blink on a device fault, dark when the agent is not running
    (the README's table)."""

    pin: int | str
    """The LED's pin: its BCM number (e.g. 27), or a gpiozero pin name (GPIO27, BOARD13)."""
    bus: str | None = None
    """The `kind: gpio` bus whose pin library drives it; default: the config's only gpio bus,
    else gpiozero's default library."""
    active_high: bool = True
    """True when the pin lights the LED by going high (LED and resistor from the pin to
    ground); false for an LED wired from 3.3 V to the pin."""


class GatewayConfig(ConfigModel):
    """This gateway."""

    id: str = Field(default="gw1", pattern=SLUG, max_length=64)
    """Gateway id, unique within the site; used in MQTT topics and the client id."""
    status_led: StatusLedConfig | None = None
    """The status LED on one of the gateway's pins, if it has one."""


class StoreConfig(ConfigModel):
    """The local buffer of readings (SQLite)."""

    path: Path = Path("readings.db")
    """Database file; a relative path is taken inside the data directory."""
    max_bytes: int = Field(default=3 * 1024**3, ge=1024 * 1024)
    """Disk budget of the buffer (database and WAL), about 30 bytes a reading: 3 GiB keeps 30 days
    of 55 points every 2 s (the guideline's 256 MB: 30 days of 170 points a minute). When it is
    reached, the oldest sent readings make room first; see docs/store.md."""
    batch_window: Duration = 1.0
    """Readings are committed together at most this often: a power cut can lose this much."""
    publish_window: Duration | None = 0.2
    """While the uplink is connected and has sent everything, readings are committed (and so
    published) after at most this long instead of `batch_window`: the lag from read to broker
    stays near it. None: always the batch window (fewest writes to the card)."""
    clock_trust: Literal["always", "timesyncd", "kernel"] = "always"
    """When the wall clock may stamp readings as real: `always`, or once `timesyncd` has
    synchronised it (its flag in /run), or once the `kernel` says it is synchronised (adjtimex,
    any NTP client). Until then readings carry "clock": "untrusted", and get their true time
    when trust arrives on the same boot; see docs/store.md."""
    integrity_check_every: Duration | None = Field(default=86400.0, gt=0)
    """How often SQLite's full integrity check of the buffer runs, in a thread of its own (a
    damaged file is set aside, kept, and the store rebuilt from what it still holds); null: never.
    A quick check also runs whenever the agent opens the buffer; see docs/store.md."""


class TlsConfig(ConfigModel):
    """TLS to the broker: certificates by file path."""

    ca_file: Path | None = None
    """CA certificate(s) that sign the broker's certificate; default: the system's store."""
    cert_file: Path | None = None
    """Client certificate, for brokers that authenticate gateways by certificate."""
    key_file: Path | None = None
    """Private key of the client certificate."""

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: give both or neither")
        return self


class UplinkConfig(ConfigModel):
    """The MQTT broker that receives the readings."""

    url: str
    """mqtt://host[:port] (1883 by default) or mqtts://host[:port] (8883, TLS)."""
    topic_prefix: str = Field(default="bea", pattern=r"^[^#+/][^#+]*$")
    """First topic level: data goes to <prefix>/<site>/<gateway>/readings."""
    client_id: str | None = None
    """MQTT client id; default edge-agent-<site>-<gateway>."""
    username: str | None = None
    """User name at the broker, if it asks for one."""
    password_file: Path | None = None
    """File holding the password (keep secrets out of the config)."""
    password_env: str | None = None
    """Environment variable holding the password."""
    tls: TlsConfig | None = None
    """TLS settings; mqtts:// uses TLS with the system CA store when this is absent."""
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    """MQTT protocol version: 3.1.1 or 5."""
    keepalive: Duration = 30.0
    """Longest silence before client and broker check the connection is alive."""
    batch_size: int = Field(default=200, ge=1, le=5000)
    """Readings per published message."""
    backfill_rate: float | None = Field(default=1000.0, gt=0)
    """Most backlog readings per second after an outage (live ones are never held); null: no cap."""
    timeout: Duration = 10.0
    """How long one connect or publish may take before the connection is dropped and retried."""

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(
                f"{value!r} is not an MQTT URL; write mqtt://host:1883 or mqtts://host:8883"
            )
        if not parts.hostname:
            raise ValueError(f"{value!r} names no host")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"{value!r} has a port that is not a number from 1 to 65535") from None
        if parts.password:
            raise ValueError("put the password in password_file or password_env, not in the URL")
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> UplinkConfig:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        return self

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None  # checked by _mqtt_url
        return host

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts" or self.tls is not None

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if urlsplit(self.url).scheme == "mqtts" else 1883)

    def password(self) -> str | None:
        """The password from its file or environment variable, read at connect time."""
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").strip()
        if self.password_env is not None:
            return os.environ.get(self.password_env)
        return None


class SiteConfig(ConfigModel):
    """A gateway's whole configuration."""

    site: SiteInfo
    """The building this gateway serves."""
    gateway: GatewayConfig = GatewayConfig()
    """This gateway's identity."""
    store: StoreConfig = StoreConfig()
    """The local buffer of readings."""
    uplink: UplinkConfig | None = None
    """Where readings are published; without it the agent only buffers locally."""
    buses: dict[str, LinkConfig] = Field(default_factory=dict)
    """Field buses by name: TCP endpoints and RS-485 serial lines."""
    devices: list[DeviceConfig] = Field(default_factory=list)
    """Devices, each on a named bus, read by the driver its `protocol` names (modbus when not
    given; dlt645 and cjt188 meters on serial lines)."""
    hvac: HvacConfig | None = None
    """HVAC schedules, policy limits and overrides; without it the agent writes nothing."""
    energy: EnergyConfig | None = None
    """Energy accounting: meters and their sub-items, tce and CO2 factors, quotas, quality rules."""
    commands: CommandsConfig = CommandsConfig()
    """Commands from upstream and the CLI: signatures and per-sender quotas."""
    platform: PlatformConfig | None = None
    """The government energy-monitoring platform this gateway reports to as its data collector."""

    @field_validator("buses")
    @classmethod
    def _bus_names(cls, value: dict[str, LinkConfig]) -> dict[str, LinkConfig]:
        for name in value:
            if not name or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"bus name {name!r} may use only letters, digits, _ and -")
        return value


Loc = tuple[str | int, ...]


def cross_check(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Problems that span sections, each with the location of the value at fault.

    Works on the raw mapping (before or after validation), so these problems are reported
    together with the field errors rather than only once those are fixed. Entries whose
    shape is wrong are skipped here: validation reports them.
    """
    problems: list[tuple[Loc, str]] = cross_check_energy(data) + cross_check_platform(data)
    buses = data.get("buses")
    bus_names = [str(b) for b in buses] if isinstance(buses, Mapping) else []
    kinds = {
        str(name): bus.get("kind")
        for name, bus in (buses.items() if isinstance(buses, Mapping) else ())
        if isinstance(bus, Mapping)
    }
    problems += _check_status_led(data.get("gateway"), kinds)
    devices = data.get("devices")
    if not isinstance(devices, list):
        return problems
    seen_names: dict[str, int] = {}
    seen_units: dict[tuple[str, Any], str] = {}
    for index, device in enumerate(devices):
        if not isinstance(device, Mapping):
            continue
        name, bus, unit = device.get("name"), device.get("bus"), device.get("unit_id", 1)
        if isinstance(name, str):
            if name in seen_names:
                problems.append(
                    (
                        ("devices", index, "name"),
                        f"device name {name!r} is already used by devices[{seen_names[name]}]",
                    )
                )
            seen_names.setdefault(name, index)
        if not isinstance(bus, str):
            continue
        if bus not in bus_names:
            problems.append((("devices", index, "bus"), _unknown_bus(bus, bus_names)))
            continue
        protocol = device.get("protocol", DEFAULT_PROTOCOL)
        if (mismatch := _wrong_link(str(protocol), bus, kinds.get(bus))) is not None:
            problems.append((("devices", index, "bus"), mismatch))
            continue
        if protocol != DEFAULT_PROTOCOL:
            problems += _check_meter(index, device, str(protocol), seen=seen_units)
            continue
        if isinstance(unit, int) and not isinstance(unit, bool):
            if (bus, unit) in seen_units:
                problems.append(
                    (
                        ("devices", index, "unit_id"),
                        f"unit id {unit} on bus {bus!r} is already used by "
                        f"device {seen_units[(bus, unit)]!r}",
                    )
                )
            seen_units.setdefault((bus, unit), str(name))
        if not device.get("points") and not device.get("profile"):
            problems.append(
                (("devices", index), "the device has no points: add `points` or a `profile`")
            )
    return problems


def _check_status_led(gateway: Any, kinds: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    led = gateway.get("status_led") if isinstance(gateway, Mapping) else None
    bus = led.get("bus") if isinstance(led, Mapping) else None
    if not isinstance(bus, str):
        return []
    where: Loc = ("gateway", "status_led", "bus")
    if bus not in kinds:
        return [(where, _unknown_bus(bus, list(kinds)))]
    if kinds[bus] != "gpio":
        return [(where, f"bus {bus!r} is of kind {kinds[bus]}; the status LED needs a gpio bus")]
    return []


def _unknown_bus(bus: str, bus_names: list[str]) -> str:
    if not bus_names:
        return f"no bus is named {bus!r}: the config has no `buses` section"
    known = ", ".join(sorted(bus_names))
    return f"no bus is named {bus!r}{did_you_mean(bus, bus_names)}; the buses are: {known}"


def _wrong_link(protocol: str, bus: str, kind: Any) -> str | None:
    """Why a device of ``protocol`` cannot sit on a bus of ``kind``, or None."""
    try:
        allowed = config_model(protocol).link_kinds
    except KeyError:
        return None  # an unknown protocol: validation reports it
    if kind not in LINK_KINDS or kind in allowed:
        return None  # an unknown kind is reported by validation
    return f"bus {bus!r} is of kind {kind}; a {protocol} device sits on a bus of kind " + (
        " or ".join(dict.fromkeys(k for k in allowed if not k.startswith("modbus_")))
    )


def _check_meter(
    index: int,
    device: Mapping[str, Any],
    protocol: str,
    *,
    seen: dict[tuple[str, Any], str],
) -> list[tuple[Loc, str]]:
    """A meter addressed by its own number (DL/T 645, CJ/T 188): the only one of its protocol
    with that address on its line."""
    problems: list[tuple[Loc, str]] = []
    bus = str(device.get("bus"))
    address = device.get("address")
    if isinstance(address, str):
        key = (bus, f"{protocol}:{address.upper()}")
        if key in seen:
            problems.append(
                (
                    ("devices", index, "address"),
                    f"address {address} on bus {bus!r} is already used by device {seen[key]!r}",
                )
            )
        seen.setdefault(key, str(device.get("name")))
    return problems
