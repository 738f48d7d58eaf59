"""Beam edges -> passes: torso timing, limbs, glitches, two runners, blocked beam."""

from __future__ import annotations

import pytest

from engine_kit import brk, config, crossing, in_order, reads, replay, start

from station.engine.passes import torso_time


def finish_passes(res):
    return [p for p in res.passes if p.gate == "finish" and not p.deleted]


def test_pass_is_timed_at_the_torso_not_the_first_limb():
    cfg = config(oncoming=False)
    res = replay(in_order([start()] + crossing(10.0, torso_s=0.08)), cfg)
    (p,) = finish_passes(res)
    assert p.t_s == pytest.approx(10.0, abs=0.002)
    assert p.source == "anonymous" and p.bibs == ()


def test_limb_overlapping_the_torso_start_is_discounted_with_the_runners_history():
    cfg = config(oncoming=False)
    evs = [start()]
    for i, t in enumerate([10.0, 110.0, 210.0, 310.0]):
        evs += crossing(t, torso_s=0.085, overlap_s=0.035 if i == 3 else 0.0)
    res = replay(in_order(evs), cfg)
    times = [p.t_s for p in finish_passes(res)]
    assert times == pytest.approx([10.0, 110.0, 210.0, 310.0], abs=0.003)
    # Without the history (the plain 0.4-of-the-break rule) it would be 21 ms early.
    assert torso_time(310.0 - 0.034 - 0.035, 310.0 + 0.051, None) == pytest.approx(309.979, abs=0.001)


def test_rain_drop_glitches_are_not_passes_and_do_not_stretch_a_cluster():
    cfg = config(oncoming=False)
    evs = [start()] + brk(5.0, 5.003) + brk(50.0, 50.002) + crossing(10.0) + brk(10.2, 10.203)
    res = replay(in_order(evs), cfg)
    assert [round(p.t_s, 3) for p in finish_passes(res)] == [10.0]


def test_limb_breaks_of_one_runner_make_one_pass():
    cfg = config(oncoming=False)
    res = replay(in_order([start()] + crossing(10.0) + crossing(40.0)), cfg)
    assert len(finish_passes(res)) == 2


def test_two_runners_close_together_make_two_passes_ordered_by_tag_growth():
    cfg = config()
    # Bib 5 crosses 0.15 s before bib 6: their breaks fall into one cluster.
    t5, t6 = 20.0, 20.15
    evs = [start()] + crossing(t5, torso_s=0.08, limbs=False) + crossing(t6, torso_s=0.09, limbs=False)
    evs += reads(5, t5, speed_mps=4.0) + reads(6, t6, speed_mps=4.2, phase_s=0.03)
    res = replay(in_order(evs), cfg)
    got = [(p.bibs, round(p.t_s, 3)) for p in finish_passes(res)]
    assert got == [((5,), pytest.approx(t5, abs=0.003)), ((6,), pytest.approx(t6, abs=0.003))]


def test_two_runners_in_the_other_order_swap_bibs():
    cfg = config()
    t6, t5 = 20.0, 20.15
    evs = [start()] + crossing(t6, limbs=False) + crossing(t5, torso_s=0.09, limbs=False)
    evs += reads(5, t5) + reads(6, t6, phase_s=0.03)
    res = replay(in_order(evs), cfg)
    assert [p.bibs for p in finish_passes(res)] == [(6,), (5,)]


def test_a_beam_broken_too_long_is_a_fault_and_cameras_time_the_passes_meanwhile():
    cfg = config()
    evs = [start()] + crossing(10.0) + reads(7, 10.0)
    evs += brk(60.0, 100.0)                              # somebody stands in the beam
    evs += reads(7, 75.0) + reads(8, 90.0, speed_mps=3.0)
    evs += crossing(140.0) + reads(7, 140.0)
    res = replay(in_order(evs), cfg)
    (fault,) = res.faults
    assert (fault.kind, fault.gate, fault.start_s, fault.end_s) == ("beam_blocked", "finish", 60.0, 100.0)
    cam = [p for p in finish_passes(res) if p.source == "camera"]
    assert [p.bibs for p in cam] == [(7,), (8,)]
    assert cam[0].t_s == pytest.approx(75.0, abs=0.15)
    assert cam[1].t_s == pytest.approx(90.0, abs=0.15)
    laps7 = [(round(lap.end_s), lap.source) for lap in res.laps if lap.bib == 7]
    assert laps7 == [(75, "camera"), (140, "tag")]


def test_a_beam_still_blocked_at_the_end_of_the_log_is_an_open_fault():
    cfg = config(oncoming=False)
    res = replay(in_order([start()] + crossing(10.0) + [{"t": 30.0, "type": "beam",
                                                         "gate": "finish", "broken": True},
                                                        {"t": 45.0, "type": "clock",
                                                         "wall": "2026-01-01T00:00:00Z", "by": "x"}]), cfg)
    (fault,) = res.faults
    assert fault.start_s == 30.0 and fault.end_s is None and fault.active
    assert len(finish_passes(res)) == 1


def test_a_long_break_shorter_than_blocked_after_is_no_fault():
    cfg = config(oncoming=False)
    res = replay(in_order([start()] + brk(30.0, 33.0)), cfg)
    assert res.faults == ()


def test_an_untagged_runner_in_a_tagged_runners_cluster_gets_its_own_pass():
    """Bib 16's tags are covered; they cross 0.3 s before bib 15 (one beam cluster). The
    second body is a pass of its own, credited by prediction from bib 16's earlier laps."""
    cfg = config()
    evs = [start()]
    for t in (10.0, 100.0, 190.0):
        evs += crossing(t, limbs=False) + reads(16, t)
    for t in (30.0, 125.0, 230.0):
        evs += crossing(t, limbs=False) + reads(15, t, speed_mps=4.4)
    evs += crossing(280.0, torso_s=0.085, limbs=False)            # bib 16, covered
    evs += crossing(280.3, limbs=False) + reads(15, 280.3, speed_mps=4.4)
    res = replay(in_order(evs), cfg)
    last = [(p.t_s, p.bibs, p.source) for p in finish_passes(res) if p.t_s > 270]
    assert last == [(pytest.approx(280.0, abs=0.005), (16,), "predicted"),
                    (pytest.approx(280.3, abs=0.005), (15,), "tag")]
