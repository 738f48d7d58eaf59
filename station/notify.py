"""systemd service notifications (sd_notify): READY, WATCHDOG pings and STATUS lines.

A datagram to the unix socket named by $NOTIFY_SOCKET (an `@` prefix means the abstract
namespace), as `Type=notify` units expect. Without $NOTIFY_SOCKET (run by hand, in tests that
do not ask for it) every call does nothing. A few lines instead of a dependency.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None):
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        if address and address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address or None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send `KEY=value` lines; False if there is no socket or it refused."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # A manager that stopped reading must not hang the station's main thread.
                sock.settimeout(1.0)
                sock.connect(self.address)
                sock.sendall("\n".join(lines).encode())
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    @staticmethod
    def watchdog_interval_s() -> float | None:
        """Half the unit's WatchdogSec (systemd's advice), or None if no watchdog is asked."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 2e6
        except ValueError:
            return None
