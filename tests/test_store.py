"""The SQLite store: durable settings, lossless export, sessions across restarts, and trouble
(corrupt file, full disk, locked database) reported instead of crashing."""

from __future__ import annotations

import io
import sqlite3

import pytest

from station import cli
from station.events import iter_lines
from station.store import DB_NAME, Store, StoreError

ODD_LINES = [
    b'{"t": 0.0, "type": "start", "wall": "2026-11-21T09:00:00Z", "station": "x"}',
    # unknown type with nested unknown fields, non-ASCII text, odd spacing and key order
    b'{"type":"weather","t":1.5,  "temp_c": 12, "note": "pluie \xc3\xa0 verse", "x": {"a": [1, 2.50]}}',
    b'{"t": 2.25, "type": "beam", "gate": "finish", "broken": true, "volts": 3.3}',
    b'{"t": 2.0, "type": "tag", "camera": "finish-cam", "tag": 14, "px": 41.5}',
]


def load(store: Store, raw: bytes) -> None:
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    store.append_many(list(iter_lines(lines)), lines=lines)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path, boot_id="boot-A")
    s.begin_session("test", now_ns=0)
    yield s
    s.close()


def test_wal_mode_and_full_sync(store, tmp_path):
    other = sqlite3.connect(tmp_path / DB_NAME)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    other.close()


def test_export_gives_back_the_same_bytes(tmp_path, examples_dir):
    logs = sorted(examples_dir.glob("*/events.jsonl"))
    assert logs
    for i, path in enumerate(logs):
        store = Store(tmp_path / str(i), boot_id="b")
        store.begin_session("ex", now_ns=0)
        raw = path.read_bytes()
        load(store, raw)
        out = io.BytesIO()
        store.export_jsonl(None, out)
        # the session's own start line, then the example byte for byte
        start, rest = out.getvalue().split(b"\n", 1)
        assert start.startswith(b'{"t":0.0,"type":"start"')
        assert rest == raw, path
        store.close()


def test_unknown_types_and_fields_survive_export(tmp_path, store):
    raw = b"\n".join(ODD_LINES) + b"\n"
    load(store, raw)
    out = io.BytesIO()
    assert store.export_jsonl(None, out) == 5
    head = next(store.lines()).encode() + b"\n"
    raw = head + raw
    assert out.getvalue() == raw
    # and through the command line, to a file
    store.close()
    dest = tmp_path / "out.jsonl"
    assert cli.main(["export", "--data", str(tmp_path), "--out", str(dest)]) == 0
    assert dest.read_bytes() == raw


def test_events_sorted_by_t_then_arrival(store):
    store.append_many([{"t": 3.0, "type": "checkin", "bib": 1},
                       {"t": 1.0, "type": "checkin", "bib": 2},
                       {"t": 3.0, "type": "checkin", "bib": 3},
                       {"t": 2.0, "type": "checkin", "bib": 4}])
    got = [(ev["t"], ev.get("bib")) for ev in store.events()]
    assert got == [(0.0, None), (1.0, 2), (2.0, 4), (3.0, 1), (3.0, 3)]
    assert [ln for ln in store.lines()][1] == '{"t":3.0,"type":"checkin","bib":1}'


def test_restart_in_same_boot_continues_the_session(tmp_path):
    s = Store(tmp_path, boot_id="boot-A")
    first = s.begin_session("st", now_ns=1_000_000_000)
    s.append({"t": 5.0, "type": "checkin", "bib": 7})
    s.close()

    s = Store(tmp_path, boot_id="boot-A")
    again = s.begin_session("st", now_ns=9_000_000_000)
    assert again.id == first.id and again.resumed
    assert again.origin_ns == first.origin_ns
    assert again.t_of(9_000_000_000) == 8.0  # the clock went on from the same origin
    s.append({"t": 8.0, "type": "checkout", "bib": 7})
    assert [ev["type"] for ev in s.events()] == ["start", "checkin", "checkout"]
    assert [ln.count('"start"') for ln in s.lines()] == [1, 0, 0]
    s.close()

    # after a reboot the monotonic clock restarted: a new session with its own start event
    s = Store(tmp_path, boot_id="boot-B")
    new = s.begin_session("st", now_ns=2_000_000_000)
    assert new.id != first.id and not new.resumed
    evs = list(s.events())
    assert [ev["type"] for ev in evs] == ["start"] and evs[0]["t"] == 0.0
    assert evs[0]["station"] == "st"
    assert [x.id for x in s.sessions()] == [first.id, new.id]
    s.close()


def test_garbage_file_is_set_aside_with_a_fault(tmp_path):
    garbage = b"this is not sqlite " * 500
    (tmp_path / DB_NAME).write_bytes(garbage)
    s = Store(tmp_path, boot_id="b")
    s.begin_session("st", now_ns=0)
    aside = list(tmp_path.glob(f"{DB_NAME}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    evs = list(s.events())
    assert evs[0]["type"] == "start"
    fault = evs[1]
    assert fault["type"] == "fault" and fault["kind"] == "db_reset" and fault["active"] is True
    assert aside[0].name in fault["message"]
    s.append({"t": 1.0, "type": "checkin", "bib": 3})  # the fresh database works
    assert s.count() == 3
    s.close()


def test_damaged_page_is_set_aside(tmp_path):
    s = Store(tmp_path, boot_id="b")
    s.begin_session("st", now_ns=0)
    s.append_many([{"t": i / 10, "type": "checkin", "bib": i % 200 + 1, "pad": "x" * 200}
                   for i in range(2000)])
    s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    s.close()
    path = tmp_path / DB_NAME
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    data[10 * page + 8: 10 * page + 400] = b"\xa5" * 392  # scramble one b-tree page
    path.write_bytes(bytes(data))

    s = Store(tmp_path, boot_id="b")
    assert len(list(tmp_path.glob(f"{DB_NAME}.corrupt-*"))) == 1
    session = s.begin_session("st", now_ns=0)
    assert not session.resumed
    assert [ev.get("kind") for ev in s.events()] == [None, "db_reset"]
    s.close()


def test_full_disk_is_an_error_that_loses_nothing(tmp_path):
    s = Store(tmp_path, boot_id="b", max_bytes=64 * 1024)
    s.begin_session("st", now_ns=0)
    stored = 1
    with pytest.raises(StoreError) as err:
        for i in range(10_000):
            s.append_many([{"t": i, "type": "checkin", "bib": 1, "pad": "y" * 500}])
            stored += 1
    assert err.value.kind == "disk_full"
    assert s.count() == stored  # the failed batch left no half, the earlier ones are intact
    s.set_max_bytes(None)  # room again
    s.append({"t": 99999.0, "type": "checkout", "bib": 1})
    assert s.count() == stored + 1
    assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    s.close()


def test_locked_database_is_busy_not_a_crash(tmp_path, store):
    other = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError) as err:
        store.append({"t": 1.0, "type": "checkin", "bib": 2})
    assert err.value.kind == "sqlite_busy"
    other.execute("COMMIT")
    store.append({"t": 1.0, "type": "checkin", "bib": 2})
    assert [ev["type"] for ev in store.events()] == ["start", "checkin"]
    other.close()


def test_users_and_settings(tmp_path, store):
    assert not store.users_exist()
    assert store.get_user("coach") is None
    store.create_user("coach", "pbkdf2:sha256$abc")
    with pytest.raises(ValueError, match="coach"):
        store.create_user("coach", "other")
    assert store.users_exist()
    assert store.get_user("coach")["password_hash"] == "pbkdf2:sha256$abc"
    assert store.get_setting("roster", []) == []
    store.set_setting("roster", [{"bib": 7, "name": "Ana"}])
    store.set_setting("language", "fr")
    store.set_setting("language", "en")
    store.close()
    again = Store(tmp_path, boot_id="boot-A")  # survives a restart
    assert again.get_setting("roster") == [{"bib": 7, "name": "Ana"}]
    assert again.get_setting("language") == "en"
    assert again.get_user("coach") is not None
    again.close()


def test_export_command_errors_name_the_problem(tmp_path, capsys, store):
    assert cli.main(["export", "--data", str(tmp_path / "nowhere")]) == 2
    assert "no station database" in capsys.readouterr().err
    assert cli.main(["export", "--data", str(tmp_path), "--session", "42"]) == 2
    assert "--session 42" in capsys.readouterr().err
    assert cli.main(["export", "--data", str(tmp_path), "--list"]) == 0
    assert "\ttest\t1 events" in capsys.readouterr().out
