"""When systemd gives up restarting the station: say so loudly, and leave a note for later.

`systemd/station-failed@.service` runs `python -m station.service_failed station.service`
once station.service has failed StartLimitBurst times in StartLimitIntervalSec (its
OnFailure=). This writes `<data>/service-failed.json` (when, which unit, the last lines of
its log) and logs at priority "crit", so `journalctl -p crit` shows it and the dashboard
can show it (`read_failure()`) when the station runs again, until a coach clears it
(`clear_failure()`). The station itself is down at that moment, so the note is all we have.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

STATUS_NAME = "service-failed.json"
JOURNAL_LINES = 30
# journald reads a "<N>" prefix on a line as its syslog priority (SyslogLevelPrefix=yes).
CRIT = "<2>"


def status_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / STATUS_NAME


def journal_tail(unit: str, lines: int = JOURNAL_LINES) -> list[str]:
    """The unit's last log lines from this boot; empty if the journal cannot be read."""
    try:
        done = subprocess.run(
            ["journalctl", "--boot", "--unit", unit, "--lines", str(lines), "--output", "cat",
             "--no-pager", "--quiet"],
            capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return done.stdout.splitlines()[-lines:] if done.returncode == 0 else []


def record_failure(data_dir: str | Path, unit: str, log_lines: list[str],
                   wall: datetime | None = None) -> Path:
    """Write the status file atomically (a power cut leaves the old one or the new one)."""
    wall = wall or datetime.now(timezone.utc)
    status = {
        "unit": unit,
        # The Pi may have no RTC: this is what the clock said, shown as such.
        "wall": wall.isoformat(timespec="seconds"),
        "message": f"{unit} failed repeatedly and systemd stopped restarting it",
        "log": log_lines,
    }
    path = status_path(data_dir)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(status, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def read_failure(data_dir: str | Path) -> dict | None:
    """The last give-up note, or None; a damaged note still reads as a failure."""
    path = status_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"unit": "station.service", "wall": "", "message": f"cannot read {path}: {exc}", "log": []}
    try:
        status = json.loads(text)
        if not isinstance(status, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        return {"unit": "station.service", "wall": "", "message": f"{path} is damaged: {exc}", "log": []}
    return status


def clear_failure(data_dir: str | Path) -> bool:
    """A coach has seen the note; True if there was one."""
    try:
        status_path(data_dir).unlink()
        return True
    except FileNotFoundError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m station.service_failed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("unit", help="the unit systemd gave up on (OnFailure's %%i)")
    parser.add_argument("--data", default=os.environ.get("STATE_DIRECTORY", "/var/lib/station").split(":")[0],
                        metavar="DIR", help="the station's data folder")
    parser.add_argument("--no-journal", action="store_true", help="do not copy the unit's log lines")
    args = parser.parse_args(argv)
    lines = [] if args.no_journal else journal_tail(args.unit)
    print(f"{CRIT}TRACK STATION DOWN: {args.unit} failed repeatedly; systemd stopped "
          f"restarting it. Fix the cause (journalctl -u {args.unit}), then: "
          f"sudo systemctl reset-failed {args.unit} && sudo systemctl start {args.unit}",
          file=sys.stderr, flush=True)
    try:
        path = record_failure(args.data, args.unit, lines)
    except OSError as exc:
        print(f"{CRIT}station.service_failed: cannot write the status file in {args.data}: {exc}",
              file=sys.stderr)
        return 1
    print(f"status written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
