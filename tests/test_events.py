"""The raw event log (SPEC §2): errors name the line, unknowns are kept, order by t."""

from __future__ import annotations

import pytest

from station.events import LogError, Reorderer, dumps, in_time_order, iter_lines, read_log


def test_unknown_types_and_fields_are_kept_verbatim():
    lines = [
        '{"t": 0.0, "type": "start", "wall": "2026-11-21T09:00:00Z", "station": "s", "fw": 3}',
        '{"t": 1.5, "type": "weather", "rain_mm": 0.2}',
        '{"t": 2.0, "type": "beam", "gate": "finish", "broken": true, "lux": 900}',
    ]
    events = list(iter_lines(lines))
    assert [e["type"] for e in events] == ["start", "weather", "beam"]
    assert [dumps(e).decode() for e in events] == [line.replace(": ", ":").replace(", ", ",") for line in lines]


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "not valid JSON"),
        ('[1, 2]', "not a JSON object"),
        ('{"type": "beam", "gate": "finish", "broken": true}', "'t'"),
        ('{"t": 3, "type": "beam", "gate": "finish"}', "missing field 'broken'"),
        ('{"t": 3, "type": "tag", "camera": "c"}', "missing field 'tag'"),
        ('{"t": 3, "type": "checkin"}', "missing field 'bib'"),
        ('{"t": 3, "type": "beam", "gate": "finish", "broken": "yes"}', "'broken'"),
    ],
)
def test_bad_line_names_line_number_and_keeps_earlier_events(bad, message):
    lines = ['{"t": 0, "type": "start", "wall": "x", "station": "s"}', "", bad,
             '{"t": 9, "type": "checkin", "bib": 1}']
    seen = []
    with pytest.raises(LogError) as err:
        for ev in iter_lines(lines, "events.jsonl"):
            seen.append(ev)
    assert err.value.line == 3
    assert str(err.value).startswith("events.jsonl:3:")
    assert message in str(err.value)
    assert [e["type"] for e in seen] == ["start"]


def test_read_log_reads_examples(examples_dir):
    events = list(read_log(examples_dir / "solo-forward" / "events.jsonl"))
    assert events[0]["type"] == "start"
    assert sum(e["type"] == "beam" for e in events) > 10


def test_reordering_is_by_t_and_stable_within_window():
    events = [{"t": t, "type": "x", "i": i} for i, t in enumerate([1.0, 0.5, 2.0, 2.0, 1.9, 5.0, 3.5])]
    out = list(in_time_order(events, window_s=2.0))
    assert [e["t"] for e in out] == sorted(e["t"] for e in events)
    assert [e["i"] for e in out if e["t"] == 2.0] == [2, 3]  # ties keep arrival order


def test_reorderer_holds_only_one_window():
    buf = Reorderer(window_s=2.0)
    released = []
    for k in range(100):
        released += buf.push({"t": float(k), "type": "x"})
        assert len(buf._heap) <= 3
    assert [e["t"] for e in released] == [float(k) for k in range(98)]
    assert [e["t"] for e in buf.flush()] == [98.0, 99.0]


def test_event_later_than_window_is_counted_and_released():
    buf = Reorderer(window_s=1.0)
    buf.push({"t": 0.0, "type": "x"})
    buf.push({"t": 5.0, "type": "x"})  # releases t=0
    late = buf.push({"t": -1.0, "type": "x"})
    assert buf.late == 1 and late[0]["t"] == -1.0
