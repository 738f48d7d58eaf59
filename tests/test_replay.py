"""`station replay` (SPEC §5): the five CSV files, byte-identical on every run, and clear
errors for bad input."""

from __future__ import annotations

import csv

import orjson
import pytest

from engine_kit import brk, crossing, in_order, reads, start

from station.cli import main
from station.config import load_config
from station.events import LogError, iter_lines, read_blocks, read_log
from station.replay import FILES, HEADERS, replay_events, write_csvs

TOML = """
[track]
length_m = 400

[[gates]]
id = "finish"
position_m = 0

[[gates]]
id = "half"
position_m = 200

[[cameras]]
id = "finish-cam"
gate = "finish"
covers_m = [370, 400]
looks = "oncoming"

[[runners]]
bib = 3
name = "Bén"
"""


def write_log(path, events):
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))


def session():
    evs = [start(), {"t": 1.0, "type": "checkin", "bib": 3}]
    for t in (10.0, 110.0, 212.0):
        evs += crossing(t, torso_s=0.12) + reads(3, t, backward=True, speed_mps=2.5)
        evs += crossing(t + 50.0, gate="half")
    evs += brk(300.0, 330.0)
    evs += [{"t": 340.0, "type": "fault", "kind": "camera_missing", "source": "finish-cam",
             "active": True, "message": "no camera"},
            {"t": 341.0, "type": "mystery", "x": 1}]
    return in_order(evs)


def test_replay_writes_the_five_files_the_same_bytes_twice(tmp_path, capsys):
    (tmp_path / "station.toml").write_text(TOML, encoding="utf-8")
    write_log(tmp_path / "events.jsonl", session())
    args = ["replay", str(tmp_path / "events.jsonl"), "--config", str(tmp_path / "station.toml")]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    assert "laps" in capsys.readouterr().out
    for name in FILES:
        a = (tmp_path / "a" / name).read_bytes()
        assert a == (tmp_path / "b" / name).read_bytes()
        assert a.decode("utf-8").splitlines()[0] == ",".join(HEADERS[name])
    laps = list(csv.DictReader(open(tmp_path / "a" / "laps.csv", encoding="utf-8")))
    assert [(r["bib"], r["name"], r["lap"], r["q4"], r["source"]) for r in laps] == [
        ("3", "Bén", "1", "backward", "tag"), ("3", "Bén", "2", "backward", "tag")]
    assert laps[0]["lap_s"] == "100.000" and laps[0]["start_s"] == "10.000"
    splits = list(csv.DictReader(open(tmp_path / "a" / "splits.csv", encoding="utf-8")))
    assert [(r["gate"], r["split_s"]) for r in splits] == [("half", "50.000"), ("half", "50.000")]
    alarms = (tmp_path / "a" / "alarms.csv").read_text(encoding="utf-8").splitlines()
    assert alarms[1] == "3,finish,10.000,15.000,,"
    assert len(alarms) == 4
    faults = (tmp_path / "a" / "faults.csv").read_text(encoding="utf-8").splitlines()
    assert faults[1:] == ["beam_blocked,finish,300.000,330.000,finish,",
                          "camera_missing,finish,340.000,,finish-cam,no camera"]
    passes = (tmp_path / "a" / "passes.csv").read_text(encoding="utf-8").splitlines()
    assert passes[1] == "finish,10.000,3,tag" and "half,60.000,3,solo" in passes


def test_a_malformed_line_is_an_error_naming_it(tmp_path, capsys):
    (tmp_path / "station.toml").write_text(TOML, encoding="utf-8")
    lines = [orjson.dumps(e) for e in session()[:5]]
    lines.insert(3, b'{"t": 5.0, "type": "beam", "gate": "finish"')
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    code = main(["replay", str(tmp_path / "events.jsonl"), "--config",
                 str(tmp_path / "station.toml"), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "events.jsonl:4" in err and "not valid JSON" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("line, problem", [
    (b'{"t": 5.0, "type": "beam", "gate": "finish"}', "missing field 'broken'"),
    (b'{"t": 5.0, "type": "tag", "camera": "c", "tag": true}', "must be an integer"),
    (b'{"t": "5", "type": "tag", "camera": "c", "tag": 4}', "non-numeric 't'"),
    (b'[1, 2]', "not a JSON object"),
])
def test_the_fast_reader_rejects_what_the_reference_reader_rejects(tmp_path, line, problem):
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"t": 0.0, "type": "start", "wall": "x", "station": "s"}\n\n' + line + b"\n")
    for reader in (read_log, lambda p: iter_lines(p.read_bytes().splitlines())):
        with pytest.raises(LogError) as info:
            list(reader(path))
        assert info.value.line == 3 and problem in str(info.value)


def test_the_fast_reader_reads_what_the_reference_reader_reads(tmp_path, examples_dir):
    for folder in sorted(p for p in examples_dir.iterdir() if p.is_dir()):
        log = folder / "events.jsonl"
        assert list(read_log(log)) == list(iter_lines(log.read_bytes().splitlines()))
    path = tmp_path / "no-newline.jsonl"
    path.write_bytes(b'{"t": 0.0, "type": "start", "wall": "x", "station": "s"}\r\n'
                     b'{"t": 1.0, "type": "beam", "gate": "g", "broken": true}')
    assert [e["t"] for e in read_log(path)] == [0.0, 1.0]


def test_write_csvs_creates_the_folder_and_leaves_no_temporary_files(tmp_path):
    cfg = load_config_text(tmp_path)
    res = replay_events(session(), cfg)
    paths = write_csvs(res, tmp_path / "deep" / "out")
    assert sorted(p.name for p in (tmp_path / "deep" / "out").iterdir()) == sorted(FILES)
    assert [p.name for p in paths] == list(FILES)


def load_config_text(tmp_path):
    (tmp_path / "s.toml").write_text(TOML, encoding="utf-8")
    return load_config(tmp_path / "s.toml")


def test_a_bad_line_comes_after_every_event_before_it(tmp_path):
    lines = [orjson.dumps(e) for e in session()]
    bad_at = 40
    lines.insert(bad_at - 1, b"{oops")
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    got = []
    with pytest.raises(LogError) as info:
        for block in read_blocks(path):
            got += [ev for _, ev in block]
    assert info.value.line == bad_at
    assert got == [orjson.loads(x) for x in lines[: bad_at - 1]]
