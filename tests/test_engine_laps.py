"""Laps, runs, track length, quarter facing, splits and coach corrections."""

from __future__ import annotations

import pytest

from engine_kit import config, crossing, in_order, reads, replay, start

HALF = """
[[gates]]
id = "half"
position_m = 200

[[cameras]]
id = "half-in"
gate = "half"
covers_m = [170, 200]
looks = "oncoming"

[[cameras]]
id = "half-out"
gate = "half"
covers_m = [200, 230]
looks = "departing"

[[runners]]
bib = 7
name = "Ana"
"""


def tagged_lap_passes(bib, times, **kw):
    evs = []
    for t in times:
        evs += crossing(t) + reads(bib, t, **kw)
    return evs


def test_passes_closer_than_min_lap_count_once():
    cfg = config()
    # Across the line, back, and across again 5 s later (seen only close to the line).
    evs = [start()] + tagged_lap_passes(7, [10.0, 100.0, 105.0, 200.0], stretch_m=4.0)
    res = replay(in_order(evs), cfg)
    assert [(round(lap.start_s), round(lap.end_s)) for lap in res.laps] == [(10, 100), (100, 200)]


def test_a_gap_over_max_lap_starts_a_new_run():
    cfg = config()
    evs = [start()] + tagged_lap_passes(7, [10.0, 100.0, 190.0, 1200.0, 1290.0, 1385.0])
    res = replay(in_order(evs), cfg)
    assert [(lap.run, lap.lap, round(lap.lap_s)) for lap in res.laps] == [
        (1, 1, 90), (1, 2, 90), (2, 1, 90), (2, 2, 95)]


def test_min_and_max_lap_come_from_the_config():
    cfg = config(extra="[laps]\nmin_lap_s = 5\nmax_lap_s = 60\n")
    evs = [start()] + tagged_lap_passes(7, [10.0, 18.0, 30.0, 100.0, 140.0], stretch_m=4.0)
    res = replay(in_order(evs), cfg)
    assert [(lap.run, lap.lap, round(lap.lap_s)) for lap in res.laps] == [
        (1, 1, 8), (1, 2, 12), (2, 1, 40)]


def test_a_200_m_indoor_track_counts_laps_and_its_quarters():
    cfg = config(length=200)
    assert cfg.cameras[0].covers_m == (170.0, 200.0) and cfg.cameras[0].quarter == 4
    evs = [start()] + tagged_lap_passes(7, [10.0, 45.0, 81.0])
    res = replay(in_order(evs), cfg)
    assert [round(lap.lap_s, 3) for lap in res.laps] == pytest.approx([35.0, 36.0], abs=0.003)
    assert {lap.q4 for lap in res.laps} == {"forward"}


def test_facing_per_quarter_oncoming_departing_mixed_unobserved():
    cfg = config(extra=HALF)
    evs = [start()] + crossing(10.0) + reads(7, 10.0)
    # Lap 1: Q2 forward (front tag to the oncoming camera at 200 m), Q3 backward (front
    # tag to the departing camera), Q4 forward then backward: mixed.
    evs += crossing(60.0, gate="half")
    evs += reads(7, 60.0, camera="half-in")
    evs += reads(7, 60.0, camera="half-out", oncoming=False, backward=True)
    evs += reads(7, 110.0, stretch_m=30, sides="back", speed_mps=8)   # the last 30 m..
    evs += reads(7, 110.0 - 0.05, stretch_m=30, speed_mps=2.5)        # ..mixed with forward
    evs += crossing(110.0)
    res = replay(in_order(evs), cfg)
    (lap,) = res.laps
    assert (lap.bib, lap.name) == (7, "Ana")
    assert (lap.q1, lap.q2, lap.q3, lap.q4) == ("unobserved", "forward", "backward", "mixed")
    (split,) = res.splits
    assert (split.bib, split.run, split.lap, split.gate) == (7, 1, 1, "half")
    assert split.split_s == pytest.approx(50.0, abs=0.003)


def test_a_departing_camera_at_the_finish_sees_the_next_lap():
    cfg = config(oncoming=False, departing=True)
    evs = [start()]
    for t, backward in ((10.0, False), (100.0, True), (190.0, False)):
        evs += crossing(t) + reads(7, t, camera="finish-back", oncoming=False, backward=backward)
    res = replay(in_order(evs), cfg)
    # Reads after the crossing at 100 s belong to lap 2 (100 -> 190), not to lap 1.
    assert [(lap.q1, lap.q4) for lap in res.laps] == [("forward", "unobserved"),
                                                     ("backward", "unobserved")]
    assert [p.bibs for p in res.passes] == [(7,)] * 3


def test_no_camera_no_facing_guess():
    cfg = config(oncoming=False, extra="[[runners]]\nbib = 3\nname = \"Ben\"\n")
    evs = [start(), {"t": 1.0, "type": "checkin", "bib": 3}] + crossing(10.0) + crossing(100.0)
    res = replay(in_order(evs), cfg)
    (lap,) = res.laps
    assert (lap.name, lap.source, lap.q1, lap.q2, lap.q3, lap.q4) == (
        "Ben", "solo", "unobserved", "unobserved", "unobserved", "unobserved")


def correct(t, action, pass_t, bib=None, gate="finish"):
    ev = {"t": t, "type": "correct", "action": action, "gate": gate, "pass_t": pass_t, "by": "coach"}
    if bib is not None:
        ev["bib"] = bib
    return ev


def test_coach_corrections_delete_restore_assign_add():
    cfg = config()
    evs = [start()] + tagged_lap_passes(7, [10.0, 100.0, 190.0]) + crossing(250.0)
    res = replay(in_order(evs), cfg)
    assert [round(lap.end_s) for lap in res.laps if lap.bib == 7] == [100, 190]
    anon = next(p for p in res.passes if round(p.t_s) == 250)
    assert anon.source == "anonymous"
    pass_t = round(anon.t_s, 3)

    evs += [correct(300.0, "assign", pass_t, bib=7)]
    res = replay(in_order(evs), cfg)
    assert [(round(lap.end_s), lap.source) for lap in res.laps if lap.bib == 7][-1] == (250, "manual")

    evs += [correct(310.0, "delete", 100.0)]
    res = replay(in_order(evs), cfg)
    assert [round(lap.end_s) for lap in res.laps if lap.bib == 7] == [190, 250]
    assert any(p.deleted and round(p.t_s) == 100 for p in res.passes)

    evs += [correct(320.0, "restore", 100.0)]
    res = replay(in_order(evs), cfg)
    assert [round(lap.end_s) for lap in res.laps if lap.bib == 7] == [100, 190, 250]

    evs += [correct(330.0, "add", 340.5, bib=7)]
    res = replay(in_order(evs), cfg)
    last = [lap for lap in res.laps if lap.bib == 7][-1]
    assert (last.end_s, last.source) == (340.5, "manual")


def test_a_correction_naming_no_pass_changes_nothing():
    cfg = config()
    evs = [start()] + tagged_lap_passes(7, [10.0, 100.0])
    before = replay(in_order(evs), cfg)
    after = replay(in_order(evs + [correct(200.0, "delete", 55.5),
                                   correct(201.0, "assign", 10.0, gate="nowhere")]), cfg)
    assert after.laps == before.laps
