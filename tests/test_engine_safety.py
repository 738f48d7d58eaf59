"""Spotter alarms (SPEC §4): firing, companions in the window, and the three ways to clear."""

from __future__ import annotations

import pytest

from engine_kit import config, crossing, in_order, reads, replay, start

from station.engine import Engine


def backward_pass(bib, t, **kw):
    return crossing(t, torso_s=0.125) + reads(bib, t, backward=True, speed_mps=2.5, **kw)


def forward_pass(bib, t, **kw):
    return crossing(t) + reads(bib, t, **kw)


def test_a_backward_runner_alone_sounds_the_alarm_at_t_plus_timeout():
    cfg = config()
    res = replay(in_order([start()] + backward_pass(3, 100.0)), cfg)
    (alarm,) = res.alarms
    assert (alarm.bib, alarm.gate) == (3, "finish")
    assert alarm.seen_s == pytest.approx(100.0, abs=0.005)
    assert alarm.alarm_s == pytest.approx(105.0, abs=0.005)
    assert alarm.active and alarm.cleared_s is None and alarm.reason == ""


def test_a_forward_runner_alone_needs_no_spotter():
    cfg = config()
    res = replay(in_order([start()] + forward_pass(3, 100.0)), cfg)
    assert res.alarms == ()


@pytest.mark.parametrize("companion_dt, alarm", [(1.0, False), (4.5, False), (-1.5, False),
                                                (8.0, False), (-3.0, True), (13.0, True)])
def test_somebody_else_must_pass_within_lead_and_timeout(companion_dt, alarm):
    """Within [t - 2, t + 5] somebody else crosses, or is read near the gate's camera (the
    companion 8 s behind is in the picture, px >= 14, from t + 1; 13 s behind is not)."""
    cfg = config()   # spotter_lead_s = 2, spotter_timeout_s = 5
    evs = [start()] + backward_pass(3, 100.0) + forward_pass(4, 100.0 + companion_dt)
    res = replay(in_order(evs), cfg)
    assert bool(res.alarms) == alarm


def test_an_untagged_companion_on_the_beam_counts():
    cfg = config()
    evs = [start()] + backward_pass(3, 100.0) + crossing(101.2)
    res = replay(in_order(evs), cfg)
    assert res.alarms == ()


def test_a_companion_crossing_in_the_same_cluster_counts():
    cfg = config()
    evs = [start()] + backward_pass(3, 100.0) + forward_pass(4, 100.15, phase_s=0.05)
    res = replay(in_order(evs), cfg)
    assert sorted(p.bibs for p in res.passes) == [(3,), (4,)]
    assert res.alarms == ()


def test_the_alarm_clears_when_a_companion_turns_up_on_a_later_pass():
    cfg = config()
    evs = [start()] + backward_pass(3, 100.0) + backward_pass(3, 220.0) + forward_pass(4, 221.0)
    res = replay(in_order(evs), cfg)
    (alarm,) = res.alarms
    assert alarm.reason == "companion"
    assert alarm.cleared_s == pytest.approx(220.0, abs=0.01)


def test_the_alarm_clears_when_the_runner_is_seen_running_forward():
    cfg = config()
    evs = [start()] + backward_pass(3, 100.0) + forward_pass(3, 220.0)
    res = replay(in_order(evs), cfg)
    (alarm,) = res.alarms
    assert alarm.reason == "forward"
    first_forward = min(e["t"] for e in reads(3, 220.0))
    assert alarm.cleared_s == pytest.approx(first_forward + 0.1, abs=0.01)


def test_a_coach_silences_one_runner_or_everybody():
    cfg = config()
    evs = [start()] + backward_pass(3, 100.0) + backward_pass(5, 140.0)
    evs += [{"t": 150.0, "type": "silence", "bib": 3, "by": "coach"}]
    res = replay(in_order(evs), cfg)
    by_bib = {a.bib: a for a in res.alarms}
    assert (by_bib[3].cleared_s, by_bib[3].reason) == (150.0, "silenced")
    assert by_bib[5].active
    res = replay(in_order(evs + [{"t": 160.0, "type": "silence", "by": "coach"}]), cfg)
    assert [(a.bib, a.cleared_s, a.reason) for a in res.alarms] == [
        (3, 150.0, "silenced"), (5, 160.0, "silenced")]


def test_a_departing_camera_sees_the_backward_runner_after_the_line():
    cfg = config(oncoming=False, departing=True)
    evs = [start()] + crossing(100.0, torso_s=0.125)
    evs += reads(3, 100.0, camera="finish-back", oncoming=False, backward=True, speed_mps=2.5)
    res = replay(in_order(evs), cfg)
    (alarm,) = res.alarms
    assert alarm.alarm_s == pytest.approx(105.0, abs=0.005)


def test_the_alarm_sounds_live_at_its_deadline_not_later():
    cfg = config()
    eng = Engine(cfg, reorder_s=0.2)
    for ev in in_order([start()] + backward_pass(3, 100.0)):
        eng.feed(ev)
    eng.advance(104.9 + 0.2)
    assert eng.results().alarms == ()
    v = eng.version
    eng.advance(105.1 + 0.2)
    assert [a.bib for a in eng.results().active_alarms] == [3]
    assert eng.version > v


def test_what_counts_is_how_they_faced_nearest_the_line():
    """Forwards down most of the stretch, then turned round for the last few metres and
    over the line backwards, alone: an alarm, although most reads were forward ones. And
    the other way round: backwards far out, turned to cross forwards: none."""
    cfg = config()
    t = 100.0
    turned = [e for e in reads(3, t, speed_mps=2.5) if e["t"] < t - 2.0] + \
        [e for e in reads(3, t, backward=True, speed_mps=2.5) if e["t"] >= t - 2.0]
    front = sum(1 for e in turned if e["tag"] == 6)
    assert front > 2 * (len(turned) - front)
    res = replay(in_order([start()] + crossing(t, torso_s=0.125) + turned), cfg)
    assert [(a.bib, round(a.seen_s)) for a in res.alarms] == [(3, 100)]
    late_turn = [e for e in reads(3, t, backward=True, speed_mps=2.5) if e["t"] < t - 3.0] + \
        [e for e in reads(3, t, speed_mps=2.5) if e["t"] >= t - 3.0]
    res = replay(in_order([start()] + crossing(t, torso_s=0.125) + late_turn), cfg)
    assert res.alarms == ()


def test_a_far_away_bib_is_no_companion():
    """Another runner read twice far out (small tags, nowhere near the line) during the
    window is not somebody passing the gate."""
    cfg = config()
    far = [e for e in reads(9, 106.0, px_k=200.0) if e["t"] < 101.0][:2]
    assert len(far) == 2 and all(e["px"] < 14 for e in far)
    res = replay(in_order([start()] + backward_pass(3, 100.0) + far), cfg)
    assert [a.bib for a in res.alarms] == [3]
