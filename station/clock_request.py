"""Setting the Pi's clock from a coach's phone, without giving the station that privilege.

The station runs with no capabilities (systemd/station.service: ProtectClock=yes), so it
cannot set the system clock itself. Instead the dashboard's `set_clock` hook calls
`request(data_dir, wall_iso)`, which writes `<data>/clock-request`; systemd's
`station-clock.path` sees the file and starts `station-clock.service`, which holds only
CAP_SYS_TIME and runs `python -m station.clock_request apply FILE`: check the time, set the
clock, delete the request. The request carries the monotonic time it was made, so the delay
before it is applied is added, not lost. chrony then serves the new time to the gates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

REQUEST_NAME = "clock-request"
# A phone's clock outside this range is a mistake, not a date to set.
EARLIEST = datetime(2024, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
# A request older than this (same boot) is stale: the coach has long moved on.
MAX_AGE_S = 300


class ClockRequestError(ValueError):
    """The request is unusable; the message says why."""


def parse_wall(wall_iso: str) -> datetime:
    try:
        when = datetime.fromisoformat(wall_iso.replace("Z", "+00:00"))
    except ValueError:
        raise ClockRequestError(f"not an ISO 8601 time: {wall_iso!r}") from None
    if when.tzinfo is None:
        raise ClockRequestError(f"no time zone in {wall_iso!r}")
    if not EARLIEST <= when < LATEST:
        raise ClockRequestError(f"{wall_iso} is outside {EARLIEST.year}-{LATEST.year - 1}")
    return when.astimezone(timezone.utc)


def request(data_dir: str | Path, wall_iso: str) -> Path:
    """Ask for the system clock to be set to `wall_iso` (the dashboard's set_clock hook)."""
    parse_wall(wall_iso)
    path = Path(data_dir) / REQUEST_NAME
    tmp = path.with_name(REQUEST_NAME + ".tmp")
    tmp.write_text(json.dumps({"wall": wall_iso, "monotonic_ns": time.monotonic_ns()}))
    os.replace(tmp, path)  # appears whole: the path unit never sees half a request
    return path


def apply(path: str | Path, settime: Callable[[float], None] | None = None) -> datetime:
    """Set the clock from the request file and delete it (also when it is unusable)."""
    path = Path(path)
    try:
        text = path.read_text()
    finally:
        path.unlink(missing_ok=True)
    try:
        req = json.loads(text)
        when = parse_wall(str(req["wall"]))
        made_ns = int(req["monotonic_ns"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ClockRequestError(f"bad request {text[:200]!r}: {exc}") from None
    age_s = (time.monotonic_ns() - made_ns) / 1e9
    if not 0 <= age_s <= MAX_AGE_S:
        raise ClockRequestError(f"request is {age_s:.0f} s old (stale or from another boot)")
    target = when.timestamp() + age_s
    (settime or (lambda s: time.clock_settime(time.CLOCK_REALTIME, s)))(target)
    return datetime.fromtimestamp(target, timezone.utc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m station.clock_request", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("apply", help="set the clock from a request file (station-clock.service)")
    a.add_argument("file")
    args = p.parse_args(argv)
    if not Path(args.file).exists():
        return 0  # already handled
    before = datetime.now(timezone.utc)
    try:
        after = apply(args.file)
    except (ClockRequestError, OSError) as exc:
        print(f"<3>station clock: request refused: {exc}", file=sys.stderr)
        return 1
    print(f"<5>station clock: set to {after.isoformat(timespec='milliseconds')} "
          f"(was {before.isoformat(timespec='milliseconds')})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
