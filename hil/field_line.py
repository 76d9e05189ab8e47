"""The simulated building's second RS-485 line, in the plant room: the meters Chinese public
buildings really have. A DL/T 645-2007 three-phase meter on the lifts-and-pumps feed (the power
sub-item, 01C00) and a CJ/T 188 cold-water meter share one line, each answering only frames
addressed to it, as on a retrofit where a collector's cable was reused.

    async with SimulatedFieldLine(building) as line:
        line.port                  # the agent's end of the line (a pty path)
        line.power_meter.fault = "silent"   # fault injection, as in hil.dlt645_meter

Values come from the same Building as the Modbus devices: the DL/T 645 meter reads the
building's "other" feed and its energy counter; the water meter its water counter. The two
simulators are the independent ones of hil.dlt645_meter and hil.cjt188_meter (written from the
protocols, not from the drivers), joined by hil.rs485.Rs485Bus.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Self

from hil.building import Building
from hil.cjt188_meter import SimulatedCjt188Line, SimulatedCjt188Meter
from hil.dlt645_meter import SimulatedDlt645Line, SimulatedMeter
from hil.rs485 import Rs485Bus

__all__ = ["POWER_METER_ADDRESS", "WATER_METER_ADDRESS", "SimulatedFieldLine"]

POWER_METER_ADDRESS = "000000000161"
WATER_METER_ADDRESS = "00000000000012"
# A time-of-use split of the counter among the four tariffs (尖峰平谷: sharp, peak, flat,
# valley); a real meter keeps one register per tariff that sums to the total.
TARIFF_SHARES = (0.10, 0.35, 0.35, 0.20)


class SimulatedFieldLine:
    """The plant-room line with its two meters (see the module docstring)."""

    def __init__(self, building: Building) -> None:
        self.building = building
        self.power_meter = SimulatedMeter(POWER_METER_ADDRESS, self._power_values)
        self.water_meter = SimulatedCjt188Meter(
            address=WATER_METER_ADDRESS,
            meter_type=0x10,
            di_order="swapped",  # as most 2004-era water meters captured in public
            values=self._water_values,
        )
        self._bus = Rs485Bus(devices=2)
        self._stack = contextlib.AsyncExitStack()

    @property
    def port(self) -> str:
        """The agent's end of the line."""
        return self._bus.agent_port

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._bus)
            dlt645_port, cjt188_port = self._bus.device_ports
            await stack.enter_async_context(SimulatedDlt645Line(dlt645_port, [self.power_meter]))
            await stack.enter_async_context(
                SimulatedCjt188Line(cjt188_port, meters=[self.water_meter])
            )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def _power_values(self) -> dict[str, float]:
        b = self.building
        b.update()
        feed = b.other_feed()
        total = b.energy().other
        values = {
            "import_energy": round(total, 2),
            "export_energy": 0.0,
            "active_power": feed.total_active_power,
            "reactive_power": feed.reactive_power,
            "apparent_power": feed.apparent_power,
            "power_factor": feed.power_factor,
            "frequency": b.frequency,
        }
        for n, share in enumerate(TARIFF_SHARES, start=1):
            values[f"import_energy_t{n}"] = round(total * share, 2)
            values[f"export_energy_t{n}"] = 0.0
        for n in range(3):
            values[f"voltage_l{n + 1}"] = feed.voltage[n]
            values[f"current_l{n + 1}"] = feed.current[n]
            values[f"active_power_l{n + 1}"] = feed.active_power[n]
            values[f"power_factor_l{n + 1}"] = feed.power_factor
        return values

    def _water_values(self) -> dict[str, float | int]:
        self.building.update()
        volume = self.building.energy().water
        return {
            "volume": volume,
            # The settlement-day reading: what the counter held at the start of the month is not
            # simulated; the cumulative value stands in.
            "volume_settlement": volume,
            "status_valve_closed": 0,
            "status_valve_abnormal": 0,
            "status_battery_low": 0,
        }
