"""The policy limits: every setpoint, from any source, is clamped before it can be written.

Source: 公共建筑室内温度控制管理办法 (建科[2008]115号) Art. 3 — in public buildings, summer
indoor temperature not below 26 °C, winter not above 20 °C, for comfort air conditioning
(Art. 4); hospitals and approved process needs are exempt (国务院办公厅关于严格执行公共建筑空调
温度控制标准的通知, State Council General Office, June 2007). The limit is applied to the mode the
unit runs in: a cooling setpoint below the cooling minimum is raised to it, a heating setpoint
above the heating maximum is lowered to it. The zone's dial range bounds every setpoint last.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.hvac.program import HvacConfig, Mode

__all__ = ["Clamp", "Limits", "apply_policy", "zone_limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one zone."""

    cooling_min: float | None  # None: an exemption without a cooling limit
    heating_max: float | None
    setpoint_min: float  # the unit's dial range
    setpoint_max: float
    exemption: str | None = None  # the exemption's reason, when the zone has one

    def allows(self, setpoint: float) -> bool:
        """Whether the unit can take ``setpoint`` at all (commands outside are refused)."""
        return self.setpoint_min <= setpoint <= self.setpoint_max


@dataclass(frozen=True, slots=True)
class Clamp:
    """A setpoint changed by the policy."""

    mode: Mode
    requested: float
    applied: float
    limit: str  # "cooling minimum 26 °C", "heating maximum 20 °C", "setpoint range 5-35 °C"

    @property
    def reason(self) -> str:
        return f"clamp: {self.requested:g} → {self.applied:g} °C ({self.limit})"


def zone_limits(hvac: HvacConfig, zone: str) -> Limits:
    """The site's limits, or the zone's exemption (which must carry a reason)."""
    config = hvac.zones[zone]
    if config.exemption is not None:
        return Limits(
            cooling_min=config.exemption.cooling_min,
            heating_max=config.exemption.heating_max,
            setpoint_min=config.setpoint_min,
            setpoint_max=config.setpoint_max,
            exemption=config.exemption.reason,
        )
    return Limits(
        cooling_min=hvac.policy.cooling_min,
        heating_max=hvac.policy.heating_max,
        setpoint_min=config.setpoint_min,
        setpoint_max=config.setpoint_max,
    )


def apply_policy(mode: Mode, setpoint: float, limits: Limits) -> tuple[float, Clamp | None]:
    """The setpoint that may be written in ``mode``, and the clamp if it differs."""
    applied, limit = setpoint, ""
    if mode is Mode.COOL and limits.cooling_min is not None and applied < limits.cooling_min:
        applied, limit = limits.cooling_min, f"cooling minimum {limits.cooling_min:g} °C"
    elif mode is Mode.HEAT and limits.heating_max is not None and applied > limits.heating_max:
        applied, limit = limits.heating_max, f"heating maximum {limits.heating_max:g} °C"
    if not limits.allows(applied):
        applied = min(max(applied, limits.setpoint_min), limits.setpoint_max)
        limit = f"setpoint range {limits.setpoint_min:g}-{limits.setpoint_max:g} °C"
    if applied == setpoint:
        return setpoint, None
    return applied, Clamp(mode=mode, requested=setpoint, applied=applied, limit=limit)
