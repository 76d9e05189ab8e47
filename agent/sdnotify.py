"""systemd's readiness protocol (sd_notify), without a dependency: one datagram to NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket

__all__ = ["notify", "started_by_systemd"]


def notify(state: str) -> bool:
    """Send e.g. ``READY=1`` or ``STOPPING=1``; False when not run by systemd (no socket)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def started_by_systemd() -> bool:
    """This process is the one systemd started for a unit, not a shell or a command that merely
    inherited a unit's environment: systemd (248 and later; Debian 12 has 252) sets
    ``SYSTEMD_EXEC_PID`` to the pid it executed."""
    return os.environ.get("SYSTEMD_EXEC_PID") == str(os.getpid())
