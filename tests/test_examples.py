"""The shipped example logs (../shared/examples): lap counts, facings and alarms exactly,
lap times within 30 ms of what really happened."""

from __future__ import annotations

import csv

import pytest

from station.config import load_config
from station.replay import replay_file

EXAMPLES = ["no-bib-solo", "q4-backward-spotted", "solo-forward"]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_reproduces_laps_facings_and_alarms(examples_dir, name):
    folder = examples_dir / name
    res = replay_file(folder / "events.jsonl", load_config(folder / "station.toml"))
    expected = read_csv(folder / "expected_laps.csv")
    got = res.laps
    assert len(got) == len(expected)
    for want, lap in zip(expected, got):
        assert (lap.bib, lap.name, lap.run, lap.lap) == (
            int(want["bib"]), want["name"], int(want["run"]), int(want["lap"]))
        assert (lap.q1, lap.q2, lap.q3, lap.q4) == (want["q1"], want["q2"], want["q3"], want["q4"])
        assert lap.start_s == pytest.approx(float(want["start_s"]), abs=0.030)
        assert lap.end_s == pytest.approx(float(want["end_s"]), abs=0.030)
        assert lap.lap_s == pytest.approx(float(want["lap_s"]), abs=0.030)
    want_alarms = [(int(a["bib"]), a["gate"], float(a["alarm_s"]))
                   for a in read_csv(folder / "expected_alarms.csv")]
    got_alarms = [(a.bib, a.gate, a.alarm_s) for a in res.alarms]
    assert len(got_alarms) == len(want_alarms)
    for (bib, gate, t), (gbib, ggate, gt) in zip(want_alarms, got_alarms):
        assert (gbib, ggate) == (bib, gate) and gt == pytest.approx(t, abs=0.1)


def test_examples_folder_has_the_cases_this_test_expects(examples_dir):
    assert all((examples_dir / n / "events.jsonl").is_file() for n in EXAMPLES)
