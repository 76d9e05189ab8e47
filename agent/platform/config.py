"""The `platform:` section of the site config: the energy-monitoring platform this gateway
reports to as its data collector (数据采集器), and what it reports.

The building id has 10 characters: the 6-digit administrative region code, one letter for the
building class and 3 digits (e.g. 310101A064 in Shanghai data, 330302G101 in Wenzhou data; the
2009 software-development guidance for the monitoring system calls it 建筑代码 of 10 characters).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from agent.core.configbase import ConfigModel
from agent.core.durations import Duration
from agent.core.suggest import did_you_mean
from agent.energy.config import EnergyConfig, SubItemCode
from agent.platform.crypto import AesKey
from agent.platform.errors import PlatformError
from agent.platform.profiles import CUSTOM, ProfileSettings, shipped_profile

__all__ = ["PlatformConfig", "PlatformMeter", "cross_check_platform"]

BUILDING_ID = r"^\d{6}[A-Z]\d{3}$"
Loc = tuple[str | int, ...]
_DAY_S = 86_400


class PlatformMeter(ConfigModel):
    """One meter as the platform knows it: an energy meter (under `energy.meters`) and its ids."""

    meter: str
    """Name of the meter under `energy.meters`."""
    id: int = Field(ge=1, le=9999)
    """The meter's number on the platform (its archive), e.g. 1."""
    name: str | None = None
    """Name shown on the platform; default the meter's name."""
    addr: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{1,16}$")
    """The meter's address on the platform; default its id as 12 digits."""
    coding: SubItemCode | None = None
    """Sub-item code of its functions; default the energy meter's code (e.g. 01A00)."""
    cumulative_function: int = Field(default=1, ge=1, le=999)
    """Function id carrying the cumulative consumption at the period's end."""
    interval_function: int = Field(default=2, ge=1, le=999)
    """Function id carrying the consumption within the period."""

    @model_validator(mode="after")
    def _two_functions(self) -> PlatformMeter:
        if self.cumulative_function == self.interval_function:
            raise ValueError("cumulative_function and interval_function must differ")
        return self


class PlatformConfig(ConfigModel):
    """The government energy-monitoring platform, spoken to in its own protocol over TCP."""

    host: str = Field(min_length=1)
    """The platform's host name or address."""
    port: int = Field(ge=1, le=65535)
    """The platform's TCP port."""
    building_id: str = Field(pattern=BUILDING_ID)
    """Building code, 10 characters: region code (6 digits), class letter, 3 digits."""
    gateway_id: str = Field(pattern=r"^[0-9A-Za-z_-]{1,32}$")
    """The collector's number given by the platform operator, e.g. 01."""
    key_file: Path
    """File holding the 16-character AES key (never the key in the config)."""
    secret_file: Path | None = None
    """File holding the identity-check secret; default the AES key."""
    iv_file: Path | None = None
    """File holding a 16-character AES IV, for a platform whose IV is not the key."""
    profile: str = "guideline-a"
    """Protocol profile: guideline-a, guideline-a-java, zhejiang-b, or custom (with settings)."""
    settings: ProfileSettings | None = None
    """Every protocol setting, for profile custom (from the operator's interface document)."""
    report_time: Literal["start", "end"] = "start"
    """Which end of a period a report's time names."""
    period: Duration = 900.0
    """Report period (the guideline's default is 15 minutes); a multiple of the energy interval."""
    heartbeat: Duration = 60.0
    """Time between heartbeats; each reply carries the platform's time."""
    timeout: Duration = 10.0
    """Longest wait for a connect, a reply or an acknowledgement before the link is dropped."""
    backfill: Duration | None = None
    """History already stored to report when the platform is first configured; none by default."""
    continuous_gap: float = Field(default=1.0, ge=0, le=3600)
    """Seconds between two resent (continuous) reports, so a backlog does not swamp the platform."""
    trust_time: bool = False
    """Offer the platform's heartbeat time to the clock-trust logic (for a gateway without NTP)."""
    sub_items: list[SubItemCode] | None = None
    """Sub-item totals to report; default every code of the reported meters."""
    meters: list[PlatformMeter] = Field(min_length=1)
    """The meters to report, each with its platform id and function codes."""

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        if value != CUSTOM:
            shipped_profile(value)  # ValueError naming the profiles there are
        return value

    @model_validator(mode="after")
    def _check(self) -> PlatformConfig:
        if self.profile != CUSTOM:
            if self.settings is not None:
                raise ValueError(
                    f"settings go with profile custom; profile {self.profile} fixes them"
                )
        elif self.settings is None:
            raise ValueError("profile custom needs `settings` (docs/platform.md lists them)")
        if not 60 <= self.period <= _DAY_S or _DAY_S % round(self.period) or self.period % 60:
            raise ValueError("period must be whole minutes that divide a day, 1 min to 1 day")
        ids = [m.id for m in self.meters]
        if len(set(ids)) != len(ids):
            raise ValueError("two platform meters have the same id")
        return self

    @property
    def profile_settings(self) -> ProfileSettings:
        if self.settings is not None:
            return self.settings
        return shipped_profile(self.profile)

    @property
    def period_ms(self) -> int:
        return round(self.period * 1000)

    def aes_key(self) -> AesKey:
        """The key (and IV) from their files, read at connect time; PlatformError if unusable."""
        key = _secret(self.key_file, "key_file")
        iv = _secret(self.iv_file, "iv_file") if self.iv_file is not None else None
        for what, value in (("key_file", key), ("iv_file", iv)):
            if value is not None and len(value.encode("utf-8")) != 16:
                raise PlatformError(f"platform {what} must hold 16 characters (AES-128)")
        return AesKey(key.encode("utf-8"), iv=None if iv is None else iv.encode("utf-8"))

    def secret(self) -> str:
        """The identity-check secret: its own file, or the AES key."""
        if self.secret_file is not None:
            return _secret(self.secret_file, "secret_file")
        return _secret(self.key_file, "key_file")


def _secret(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise PlatformError(f"platform {what} {path} cannot be read: {exc.strerror}") from None
    if not text:
        raise PlatformError(f"platform {what} {path} is empty")
    return text


def cross_check_platform(data: Mapping[str, Any]) -> list[tuple[Loc, str]]:
    """Problems of the `platform` section against `energy`, located (for the site loader)."""
    section = data.get("platform")
    if not isinstance(section, Mapping):
        return []
    try:
        platform = PlatformConfig.model_validate(section)
    except ValidationError:
        return []  # field errors: SiteConfig validation reports them, located
    raw_energy = data.get("energy")
    try:
        energy = EnergyConfig.model_validate(raw_energy if isinstance(raw_energy, Mapping) else {})
    except ValidationError:
        return []
    if not energy.meters:
        return [(("platform",), "the platform reports energy meters: add an `energy` section")]
    problems: list[tuple[Loc, str]] = []
    names = [m.name for m in energy.meters]
    for index, meter in enumerate(platform.meters):
        if meter.meter not in names:
            hint = did_you_mean(meter.meter, names)
            problems.append(
                (
                    ("platform", "meters", index, "meter"),
                    f"no energy meter is named {meter.meter!r}{hint}",
                )
            )
    if round(platform.period) % (energy.interval_minutes * 60):
        problems.append(
            (
                ("platform", "period"),
                f"the period must be a multiple of the energy interval "
                f"({energy.interval_minutes} min)",
            )
        )
    return problems
