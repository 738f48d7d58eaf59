"""The station's SQLite store: the append-only event log, sessions, coach accounts, settings;
and `station export`.

SQLite runs in WAL mode with `synchronous=FULL`, so `append_many()` returns only once its
events are on disk: the worker shows nothing before that. Each event keeps its exact JSON
text (`line`), so an export gives back the same bytes, unknown types and fields included.

A *session* is one run of the session clock: `t` is seconds since the session's monotonic
origin. The monotonic clock only restarts at reboot, so a service restart within the same boot
(same kernel `boot_id`) continues the same session, its clock and its laps; after a reboot a
new session starts with a `start` event.

Trouble is reported, never fatal: a file that is not a database or fails `PRAGMA quick_check`
at start-up is renamed aside (`station.db.corrupt-<timestamp>`) and a fresh one started with a
`fault` event `db_reset`; a full disk or a database that stays locked raises `StoreError`
(`kind` = `disk_full` / `sqlite_busy`) for the worker to hold the events and retry.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from station import events as evlog

log = logging.getLogger(__name__)

DB_NAME = "station.db"
SCHEMA_VERSION = 1
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
# How long one statement waits on a lock held by another connection before it is a fault.
BUSY_TIMEOUT_S = 1.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    started TEXT NOT NULL,          -- wall clock at start, ISO 8601 UTC (may be wrong: no RTC)
    boot_id TEXT NOT NULL,          -- kernel boot id: the monotonic clock is valid within it
    origin_ns INTEGER NOT NULL,     -- time.monotonic_ns() at t = 0
    station TEXT NOT NULL,
    speed REAL NOT NULL DEFAULT 1   -- session seconds per monotonic second (simulation only)
);
CREATE TABLE IF NOT EXISTS events (
    session INTEGER NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,           -- arrival order within the session, from 1
    t REAL NOT NULL,
    type TEXT NOT NULL,
    line TEXT NOT NULL,             -- the event's exact JSON text
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_t ON events (session, t, seq);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL             -- JSON
);
"""


class StoreError(Exception):
    """The store could not take events now. `kind` is the fault kind (`disk_full`,
    `sqlite_busy`, `store_error`); the events were not stored and may be retried."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Session:
    id: int
    started: str
    boot_id: str
    origin_ns: int
    station: str
    speed: float = 1.0
    resumed: bool = False  # True when a restart continued it (same boot)

    def t_of(self, t_ns: int) -> float:
        """Session seconds of a monotonic timestamp, rounded to 0.1 ms."""
        return round((t_ns - self.origin_ns) * self.speed / 1e9, 4)


def read_boot_id() -> str:
    try:
        return Path(BOOT_ID_PATH).read_text().strip()
    except OSError as exc:
        # No way to know the monotonic clock survived, so never resume a session.
        log.warning("cannot read the boot id (%s): every start begins a new session", exc)
        return f"unknown-{os.getpid()}-{time.time_ns()}"


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _classify(exc: sqlite3.Error) -> StoreError:
    name = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    if name == "SQLITE_FULL" or "disk is full" in text:
        return StoreError("disk_full", f"database or disk is full ({text})")
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in text or "busy" in text:
        return StoreError("sqlite_busy", f"database is busy ({text})")
    return StoreError("store_error", f"{type(exc).__name__}: {text}")


class Store:
    """The station database in `data_dir/station.db`. Thread-safe: writes go through one
    connection under a lock; exports and rebuilds read through their own connections (WAL lets
    them run beside the writer)."""

    def __init__(self, data_dir: str | Path, *, boot_id: str | None = None,
                 max_bytes: int | None = None):
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / DB_NAME
        self.boot_id = boot_id or read_boot_id()
        self.max_bytes = max_bytes
        self.reset_note: str | None = None  # set when a corrupt file was put aside
        self.session: Session | None = None
        self._lock = threading.RLock()
        self._next_seq = 1
        self._conn = self._open_checked()

    # -- opening -----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _open_checked(self) -> sqlite3.Connection:
        try:
            conn = self._connect()
            problem = conn.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                conn.close()
                raise sqlite3.DatabaseError(f"quick_check: {problem}")
        except sqlite3.OperationalError:
            raise  # locked, unreadable, no permission: not corruption, do not touch the file
        except sqlite3.DatabaseError as exc:
            aside = self._set_aside()
            self.reset_note = f"{self.path.name} was unreadable ({exc}); set aside as {aside.name}"
            log.error("%s", self.reset_note)
            conn = self._connect()
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        if self.max_bytes:
            self._limit(conn, self.max_bytes)
        return conn

    def _set_aside(self) -> Path:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}.{n}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            extra = Path(str(self.path) + suffix)
            if extra.exists():
                os.replace(extra, Path(str(aside) + suffix))
        return aside

    @staticmethod
    def _limit(conn: sqlite3.Connection, max_bytes: int | None) -> None:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = max(1, max_bytes // page) if max_bytes else 1073741823
        conn.execute(f"PRAGMA max_page_count={pages}")

    def set_max_bytes(self, max_bytes: int | None) -> None:
        """Cap (or uncap, with None) the database size; a write past it is a `disk_full`."""
        with self._lock:
            self.max_bytes = max_bytes
            self._limit(self._conn, max_bytes)

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass

    # -- sessions ----------------------------------------------------------------------

    def begin_session(self, station_id: str, *, now_ns: int | None = None, speed: float = 1.0,
                      new: bool = False) -> Session:
        """Continue the latest session if the monotonic clock still runs from its origin
        (same boot, same station and speed), else start a new one with a `start` event.
        A database reset at start-up is logged here as a `fault` event."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        with self._lock:
            row = self._conn.execute(
                "SELECT id, started, boot_id, origin_ns, station, speed FROM sessions"
                " ORDER BY id DESC LIMIT 1").fetchone()
            if (not new and row and row[2] == self.boot_id and row[3] <= now_ns
                    and row[4] == station_id and row[5] == speed):
                self.session = Session(*row, resumed=True)
                self._next_seq = self._conn.execute(
                    "SELECT coalesce(max(seq), 0) + 1 FROM events WHERE session = ?",
                    (row[0],)).fetchone()[0]
                log.info("continuing session %d (same boot)", row[0])
            else:
                wall = utc_now_iso()
                try:
                    cur = self._conn.execute(
                        "INSERT INTO sessions (started, boot_id, origin_ns, station, speed)"
                        " VALUES (?, ?, ?, ?, ?)", (wall, self.boot_id, now_ns, station_id, speed))
                except sqlite3.Error as exc:
                    raise _classify(exc) from exc
                self.session = Session(cur.lastrowid, wall, self.boot_id, now_ns, station_id, speed)
                self._next_seq = 1
                self.append({"t": 0.0, "type": "start", "wall": wall, "station": station_id})
                log.info("started session %d", self.session.id)
            if self.reset_note:
                self.append({"t": self.session.t_of(now_ns), "type": "fault", "kind": "db_reset",
                             "source": "store", "active": True, "message": self.reset_note})
                self.reset_note = None
            return self.session

    def sessions(self) -> list[Session]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, started, boot_id, origin_ns, station, speed FROM sessions ORDER BY id"
            ).fetchall()
        return [Session(*r) for r in rows]

    def get_session(self, session_id: int) -> Session | None:
        return next((s for s in self.sessions() if s.id == session_id), None)

    # -- events ------------------------------------------------------------------------

    def append(self, ev: dict, line: str | bytes | None = None) -> int:
        """Store one event durably; returns its seq."""
        return self.append_many([ev], None if line is None else [line])[0]

    def append_many(self, evs: Iterable[dict], lines: Iterable[str | bytes] | None = None
                    ) -> list[int]:
        """Store events in one transaction (group commit) and return their seqs once they are
        on disk. `lines` gives each event's exact text (imports); by default it is the event
        serialised. Raises `StoreError` and stores none of them if the disk is full or the
        database stays locked."""
        evs = list(evs)
        if lines is None:
            texts = [evlog.dumps(ev).decode() for ev in evs]
        else:
            texts = [ln.decode() if isinstance(ln, bytes) else ln for ln in lines]
            texts = [ln.rstrip("\r\n") for ln in texts]
        if not evs:
            return []
        with self._lock:
            if self.session is None:
                raise RuntimeError("begin_session() first")
            sid, first = self.session.id, self._next_seq
            rows = [(sid, first + i, ev["t"], ev["type"], text)
                    for i, (ev, text) in enumerate(zip(evs, texts, strict=True))]
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO events (session, seq, t, type, line) VALUES (?, ?, ?, ?, ?)",
                    rows)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise _classify(exc) from exc
            self._next_seq = first + len(rows)
        return [r[1] for r in rows]

    def _reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None,
                               check_same_thread=False)
        return conn

    def events(self, session_id: int | None = None) -> Iterator[dict]:
        """The session's events sorted by (t, seq): the order a rebuild feeds the engine.
        Streams from the database, so a long session is never held whole."""
        sid = self._sid(session_id)
        conn = self._reader()
        try:
            for (line,) in conn.execute(
                    "SELECT line FROM events WHERE session = ? ORDER BY t, seq", (sid,)):
                yield orjson.loads(line)
        finally:
            conn.close()

    def lines(self, session_id: int | None = None) -> Iterator[str]:
        """The session's event lines in arrival order (the raw log)."""
        sid = self._sid(session_id)
        conn = self._reader()
        try:
            for (line,) in conn.execute(
                    "SELECT line FROM events WHERE session = ? ORDER BY seq", (sid,)):
                yield line
        finally:
            conn.close()

    def export_jsonl(self, session_id: int | None, fh: BinaryIO) -> int:
        """Write the session's raw event log (JSON Lines, arrival order) to a binary file;
        returns the number of lines."""
        n = 0
        for line in self.lines(session_id):
            fh.write(line.encode())
            fh.write(b"\n")
            n += 1
        return n

    def count(self, session_id: int | None = None) -> int:
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM events WHERE session = ?",
                                      (self._sid(session_id),)).fetchone()[0]

    def _sid(self, session_id: int | None) -> int:
        if session_id is not None:
            return session_id
        if self.session is not None:
            return self.session.id
        with self._lock:
            row = self._conn.execute("SELECT max(id) FROM sessions").fetchone()
        if row[0] is None:
            raise LookupError("no session in the database yet")
        return row[0]

    # -- coach accounts and settings -----------------------------------------------------

    def users_exist(self) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None

    def create_user(self, name: str, password_hash: str) -> None:
        """Add a coach account; `ValueError` if the name is taken."""
        with self._lock:
            try:
                self._conn.execute("INSERT INTO users (name, password_hash, created)"
                                   " VALUES (?, ?, ?)", (name, password_hash, utc_now_iso()))
            except sqlite3.IntegrityError:
                raise ValueError(f"user {name!r} already exists") from None
            except sqlite3.Error as exc:
                raise _classify(exc) from exc

    def get_user(self, name: str) -> dict | None:
        """`{"name", "password_hash", "created"}` or None."""
        with self._lock:
            row = self._conn.execute("SELECT name, password_hash, created FROM users"
                                     " WHERE name = ?", (name,)).fetchone()
        return None if row is None else {"name": row[0], "password_hash": row[1],
                                         "created": row[2]}

    def set_password(self, name: str, password_hash: str) -> None:
        with self._lock:
            self._conn.execute("UPDATE users SET password_hash = ? WHERE name = ?",
                               (password_hash, name))

    def get_setting(self, key: str, default: Any = None) -> Any:
        """A setting's value (any JSON value), or `default`."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM settings WHERE key = ?",
                                     (key,)).fetchone()
        return default if row is None else orjson.loads(row[0])

    def set_setting(self, key: str, value: Any) -> None:
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, orjson.dumps(value).decode()))
            except sqlite3.Error as exc:
                raise _classify(exc) from exc


# -- `station export` ------------------------------------------------------------------


def default_data_dir(simulate: bool = False) -> Path:
    """Where the station keeps its database: ./data in simulation, else systemd's
    $STATE_DIRECTORY, else /var/lib/station."""
    if simulate:
        return Path("data")
    state = os.environ.get("STATE_DIRECTORY")
    return Path(state.split(":")[0]) if state else Path("/var/lib/station")


def add_arguments(parser) -> None:
    parser.add_argument("--data", metavar="DIR",
                        help="the station's data folder (default: $STATE_DIRECTORY or "
                             "/var/lib/station)")
    parser.add_argument("--session", type=int, metavar="N",
                        help="session number (default: the latest); --list shows them")
    parser.add_argument("--list", action="store_true", help="list the sessions and exit")
    parser.add_argument("--out", metavar="FILE", help="write here (default: standard output)")


def run(args) -> int:
    data = Path(args.data) if args.data else default_data_dir()
    path = data / DB_NAME
    if not path.is_file():
        print(f"station export: error: no station database at {path} (use --data DIR)",
              file=sys.stderr)
        return 2
    # Read through its own connection: exporting must never reset or alter the database.
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        sessions = conn.execute("SELECT id, started, station, (SELECT count(*) FROM events"
                                " WHERE session = sessions.id) FROM sessions ORDER BY id"
                                ).fetchall()
        if args.list:
            for sid, started, station, n in sessions:
                print(f"{sid}\t{started}\t{station}\t{n} events")
            return 0
        if not sessions:
            print(f"station export: error: {path} holds no session yet", file=sys.stderr)
            return 2
        sid = sessions[-1][0] if args.session is None else args.session
        if sid not in {s[0] for s in sessions}:
            known = ", ".join(str(s[0]) for s in sessions)
            print(f"station export: error: --session {sid}: no such session (known: {known})",
                  file=sys.stderr)
            return 2
        rows = conn.execute("SELECT line FROM events WHERE session = ? ORDER BY seq", (sid,))
        out = open(args.out, "wb") if args.out else sys.stdout.buffer
        try:
            for (line,) in rows:
                out.write(line.encode())
                out.write(b"\n")
        finally:
            if args.out:
                out.close()
            else:
                out.flush()
    finally:
        conn.close()
    return 0
