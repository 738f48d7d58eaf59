"""`station replay`: an event log through the engine into SPEC §5's CSV files.

The same writers serve the dashboard's downloads (`write_csvs`, `csv_text`). Files are
UTF-8 with a header row, times in seconds with 3 decimals, rows in a fixed order, so the
same log always gives byte-identical files.
"""

from __future__ import annotations

import csv
import gc
import io
import os
from pathlib import Path

from .config import Config, load_config
from .engine import Engine, Results
from .events import read_blocks


FILES = ("laps.csv", "passes.csv", "splits.csv", "alarms.csv", "faults.csv")

HEADERS = {
    "laps.csv": ["bib", "name", "run", "lap", "start_s", "end_s", "lap_s",
                 "q1", "q2", "q3", "q4", "source"],
    "passes.csv": ["gate", "t_s", "bibs", "source"],
    "splits.csv": ["bib", "run", "lap", "gate", "t_s", "split_s"],
    "alarms.csv": ["bib", "gate", "seen_s", "alarm_s", "cleared_s", "reason"],
    "faults.csv": ["kind", "gate", "start_s", "end_s", "source", "message"],
}


def _s(t: float | None) -> str:
    return "" if t is None else f"{t:.3f}"


def rows(results: Results, name: str) -> list[list]:
    """The rows (without header) of one of the CSV files, as strings."""
    if name == "laps.csv":
        return [[lap.bib, lap.name, lap.run, lap.lap, _s(lap.start_s), _s(lap.end_s),
                 _s(lap.lap_s), lap.q1, lap.q2, lap.q3, lap.q4, lap.source]
                for lap in results.laps]
    if name == "passes.csv":
        return [[p.gate, _s(p.t_s), " ".join(str(b) for b in p.bibs), p.source]
                for p in results.passes if not p.deleted]
    if name == "splits.csv":
        return [[s.bib, s.run, s.lap, s.gate, _s(s.t_s), _s(s.split_s)] for s in results.splits]
    if name == "alarms.csv":
        return [[a.bib, a.gate, _s(a.seen_s), _s(a.alarm_s), _s(a.cleared_s), a.reason]
                for a in results.alarms]
    if name == "faults.csv":
        return [[f.kind, f.gate, _s(f.start_s), _s(f.end_s), f.source or f.gate, f.message]
                for f in results.faults]
    raise KeyError(name)


def csv_text(results: Results, name: str) -> str:
    """One CSV file's full text (for a download)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADERS[name])
    w.writerows(rows(results, name))
    return buf.getvalue()


def write_csvs(results: Results, out_dir: str | Path) -> list[Path]:
    """Write the five files into `out_dir` (created if needed); each is written to a
    temporary name first, so a crash never leaves half a file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in FILES:
        path = out / name
        tmp = out / (name + ".tmp")
        tmp.write_bytes(csv_text(results, name).encode("utf-8"))
        os.replace(tmp, path)
        paths.append(path)
    return paths


def replay_events(events, config: Config) -> Results:
    """Events (in file order, e.g. from the store) through a fresh engine; the results."""
    return _replay(config, lambda engine: engine.feed_many(events))


def replay_file(events_path: str | Path, config: Config) -> Results:
    """`station replay`'s computation: the log file through a fresh engine."""
    return _replay(config, lambda engine: engine.feed_timed(read_blocks(events_path)))


def _replay(config: Config, feed) -> Results:
    engine = Engine(config)
    # The engine's objects live as long as the session and their few reference cycles
    # (a pass and its tracks) are never garbage, so the cyclic collector only costs time
    # here (a fifth of a long replay); reference counting still frees every event.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        feed(engine)
        engine.finish()
    finally:
        if was_enabled:
            gc.enable()
    return engine.results()


def add_arguments(parser) -> None:
    parser.add_argument("events", metavar="EVENTS", help="the event log (JSON Lines)")
    parser.add_argument("--config", required=True, metavar="STATION.toml",
                        help="the station configuration")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder for laps.csv, passes.csv, splits.csv, alarms.csv, faults.csv")


def run(args) -> int:
    config = load_config(args.config)
    results = replay_file(args.events, config)
    paths = write_csvs(results, args.out)
    print(f"{len(results.laps)} laps, {len(results.passes)} passes, "
          f"{len(results.alarms)} alarms, {len(results.faults)} faults -> "
          + ", ".join(str(p) for p in paths))
    return 0
