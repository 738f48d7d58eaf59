"""Setting the Pi's system clock from a coach's phone (the Pi has no real-time clock).

The dashboard always records a `clock` event; it changes the system clock only if the station
is configured to (`[web] set_system_clock = true`) and `station run` passes
`system_clock_setter()` as the dashboard's `set_clock` hook. Setting the clock needs
privileges: the systemd unit grants CAP_SYS_TIME, or a polkit rule lets the station's user run
`timedatectl set-time`. Laps never depend on it: they are timed on the monotonic session clock.
Tests never call it.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timezone

TIMEOUT_S = 10


def system_clock_setter(command: str = "timedatectl"):
    """A `set_clock(wall_iso)` hook that runs `timedatectl set-time`, or None if the command
    is missing. `timedatectl` refuses while NTP sync (chrony) is active: that clock wins."""
    exe = shutil.which(command)
    if exe is None:
        return None

    def set_clock(wall_iso: str) -> None:
        when = datetime.fromisoformat(wall_iso.replace("Z", "+00:00")).astimezone(timezone.utc)
        # timedatectl takes local "YYYY-MM-DD HH:MM:SS"; give it UTC explicitly via TZ.
        text = when.strftime("%Y-%m-%d %H:%M:%S")
        done = subprocess.run([exe, "set-time", text], env={"TZ": "UTC"}, capture_output=True,
                              text=True, timeout=TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip() or f"timedatectl exited {done.returncode}")

    return set_clock
