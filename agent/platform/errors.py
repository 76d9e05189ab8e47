"""The platform uplink's errors: leaves of the agent's UplinkError (a ConnectionError)."""

from __future__ import annotations

from agent.core.errors import UplinkError

__all__ = ["AuthRefusedError", "FrameError", "PlatformError", "ProtocolError"]


class PlatformError(UplinkError):
    """The energy-monitoring platform link failed; the message is a sentence for a technician."""


class FrameError(PlatformError):
    """Bytes from the platform that are not a frame of the profile (CRC, length, header, tail)."""


class ProtocolError(PlatformError):
    """A frame whose content the collector cannot use (not XML, an unexpected message, a replay)."""


class AuthRefusedError(PlatformError):
    """The platform answered the identity check with fail: the key or the ids are wrong."""

    def __init__(self, building_id: str, gateway_id: str) -> None:
        self.building_id = building_id
        self.gateway_id = gateway_id
        super().__init__(
            f"the platform refused the identity check of building {building_id} gateway "
            f"{gateway_id}: check the key file, the building id and the gateway id with the "
            "platform operator, and the profile's md5_order"
        )
