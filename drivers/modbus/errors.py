"""Modbus errors: the device did not answer, or answered with an exception code."""

from __future__ import annotations

from agent.core.errors import DeviceUnavailableError, DriverError

__all__ = [
    "DeviceUnavailableError",
    "MismatchedReplyError",
    "ModbusExceptionError",
    "ShortReplyError",
]

# Exception codes from the Modbus application protocol spec v1.1b3, section 7.
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ModbusExceptionError(DriverError):
    """The device answered, but with a Modbus exception (e.g. 02, illegal data address)."""

    def __init__(self, device: str, code: int, function: int, address: int, count: int) -> None:
        self.device = device
        self.code = code
        self.function = function
        self.address = address
        self.count = count
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        super().__init__(
            f"device {device!r} answered exception {code:02d} ({name}) to function {function}"
            f" at address {address}, count {count}"
        )


class ShortReplyError(DriverError):
    """The device answered with fewer registers (or bits) than asked for."""

    def __init__(self, device: str, function: int, address: int, count: int, got: int) -> None:
        self.device = device
        self.function = function
        self.address = address
        self.count = count
        self.got = got
        super().__init__(
            f"device {device!r} answered {got} of {count} values to function {function}"
            f" at address {address}"
        )


class MismatchedReplyError(DeviceUnavailableError):
    """The device (or something on the wire) answered, but not to this request: another unit
    id or function code, or a byte count the frame does not hold. Nothing of it is a reading:
    to the poller the device is unavailable, with this reason."""

    def __init__(self, device: str, problem: str) -> None:
        self.problem = problem
        super().__init__(device, f"{problem} (the reply was discarded)")
