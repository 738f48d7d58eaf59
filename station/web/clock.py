"""Setting the Pi's system clock from a coach's phone (the Pi has no real-time clock), and what
the health page says about the clock.

The dashboard always records a `clock` event (the phone's time, who sent it, the station's
wall clock just before, and whether the system clock was asked to change): the log then says
when the clock was set and by whom, and ties session time to real time even on a Pi whose
clock was wrong. It changes the system clock only if the station is configured to
(`[web] set_system_clock = true`) and not simulating; `station run` then passes
`system_clock_setter(data_dir)` as the dashboard's `set_clock` hook. The station itself may
not set the clock (systemd/station.service: ProtectClock=yes, no capabilities), so the hook
only writes a request file (`station.clock_request.request`) that `station-clock.path` hands
to the one privileged helper, `station-clock.service`. That also works while chrony runs,
where `timedatectl set-time` refuses. Laps never depend on any of this: they are timed on the
monotonic session clock.

The last setting is also kept in the store's settings (`clock.last_set`, with the kernel's
boot id), so the health page can say whether the clock was set since this boot, and by whom,
without scanning the log.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from station import clock_request

LAST_SET = "clock.last_set"
# A request still there after this long was not picked up: station-clock.path is not running.
STUCK_S = 10


def system_clock_setter(data_dir: str | Path):
    """A `set_clock(wall_iso)` hook: a request for station-clock.service, in `data_dir`."""
    data_dir = Path(data_dir)

    def set_clock(wall_iso: str) -> None:
        clock_request.request(data_dir, wall_iso)

    return set_clock


def utc_iso(when: datetime | None = None, places: int = 0) -> str:
    """`2026-05-01T10:11:12Z` (or with `places` decimals of a second)."""
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if places:
        text += f"{when.microsecond / 1e6:.{places}f}"[1:]
    return text + "Z"


def remember_set(store, *, wall: str, by: str, previous: str, applied: str, t_s: float) -> None:
    """Keep the last clock setting beside the log, tagged with this boot."""
    store.set_setting(LAST_SET, {"wall": wall, "by": by, "previous": previous,
                                 "applied": applied, "t_s": round(t_s, 3),
                                 "boot_id": store.boot_id, "session": store.session.id
                                 if store.session else None})


def clock_status(store, data_dir: str | Path | None = None) -> dict:
    """What the health page shows: the wall clock now, whether it was set from a phone
    since this boot and by whom, and a request station-clock.service has not taken yet."""
    try:
        last = store.get_setting(LAST_SET) or None
    except Exception:  # noqa: BLE001 - a locked or damaged database: the page still loads
        last = None
    this_boot = bool(last) and last.get("boot_id") == store.boot_id
    status = {"wall": utc_iso(), "set_this_boot": this_boot, "last": last,
              "request_waiting_s": None}
    if data_dir is not None:
        path = Path(data_dir) / clock_request.REQUEST_NAME
        try:  # the request carries the monotonic time it was made
            made_ns = int(json.loads(path.read_text())["monotonic_ns"])
            status["request_waiting_s"] = max(0.0, (time.monotonic_ns() - made_ns) / 1e9)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError):
            status["request_waiting_s"] = float("inf")  # unreadable: the helper will drop it
    status["request_stuck"] = (status["request_waiting_s"] or 0) > STUCK_S
    return status
