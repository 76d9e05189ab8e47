"""The bus client's writes and errors against the simulated HVAC controller."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from agent.core.links import TcpLinkConfig, serial_frame_gap
from drivers.modbus.errors import ModbusExceptionError
from drivers.modbus.spec import Table
from hil.building import Building
from hil.server import SimulatedBuilding
from tests.helpers import modbus_bus

# A Tuesday at 11:00 in Jingzhou: office hours, so the simulated units are on.
OFFICE_HOURS = datetime(2025, 7, 15, 11, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()


async def test_writes_reach_the_device_and_refusals_are_errors() -> None:
    async with SimulatedBuilding(building=Building(clock=lambda: OFFICE_HOURS)) as sim:
        host, port = sim.endpoints["hvac"]
        spec = TcpLinkConfig(kind="modbus_tcp", host=host, port=port, timeout=0.5)
        async with modbus_bus("hvac", spec) as bus:
            kw = {"device": "hvac_controller", "unit_id": 1}
            await bus.write(**kw, table=Table.HOLDING, address=0, values=[245])  # FC6
            assert sim.building.zones["zone1"].setpoint == pytest.approx(24.5)
            await bus.write(**kw, table=Table.HOLDING, address=1, values=[230, 231])  # FC16
            assert await bus.read(**kw, table=Table.HOLDING, address=1, count=2) == [230, 231]
            await bus.write(**kw, table=Table.COIL, address=1, values=[False])  # FC5
            await bus.write(**kw, table=Table.COIL, address=2, values=[False])
            coils = await bus.read(**kw, table=Table.COIL, address=0, count=3)
            assert coils == [True, False, False]
            with pytest.raises(ModbusExceptionError) as refused:
                await bus.write(**kw, table=Table.HOLDING, address=0, values=[999])  # 99.9 degC
            assert refused.value.code == 3
            with pytest.raises(ValueError, match="cannot be written"):
                await bus.write(**kw, table=Table.INPUT, address=0, values=[1])


def test_rtu_frame_gap_is_three_and_a_half_characters() -> None:
    # 3.5 characters of 11 bits at 9600 baud = 4.01 ms; fixed 1.75 ms above 19200 baud.
    assert serial_frame_gap(9600) == pytest.approx(0.00401, abs=1e-5)
    assert serial_frame_gap(115200) == 0.00175
