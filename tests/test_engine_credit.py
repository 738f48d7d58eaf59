"""Credit (SPEC §4): tag, predicted, solo, anonymous; strays; predicted taken back."""

from __future__ import annotations

import pytest

from engine_kit import config, crossing, in_order, reads, replay, start, tag


def laps_of(res, bib):
    return [(round(lap.start_s, 2), round(lap.end_s, 2), lap.source) for lap in res.laps
            if lap.bib == bib]


def test_tags_read_on_the_way_in_credit_the_pass():
    cfg = config()
    evs = [start()]
    for t in (10.0, 100.0, 195.0):
        evs += crossing(t) + reads(7, t)
    res = replay(in_order(evs), cfg)
    assert [p.bibs for p in res.passes] == [(7,)] * 3
    assert laps_of(res, 7) == [(10.0, 100.0, "tag"), (100.0, 195.0, "tag")]


def test_a_single_stray_read_never_credits_or_makes_a_lap():
    cfg = config()
    evs = [start()] + crossing(10.0) + crossing(100.0)
    # Strays come from afar (small px), once each, whenever.
    evs += [tag(9.0, 2 * 40, 35.0), tag(99.5, 2 * 40, 30.0), tag(50.0, 2 * 41, 30.0)]
    res = replay(in_order(evs), cfg)
    assert all(p.bibs == () and p.source == "anonymous" for p in res.passes)
    assert {lap.bib for lap in res.laps} == {0}


def test_one_read_of_a_big_tag_just_before_the_line_is_a_real_runner():
    """A badly printed bib read once, a few metres from the line, right before the beam."""
    cfg = config()
    evs = [start()] + crossing(10.0) + reads(7, 10.0) + crossing(100.0) + [tag(99.0, 14, 76.0)]
    res = replay(in_order(evs), cfg)
    assert [(p.bibs, p.source) for p in res.passes] == [((7,), "tag"), ((7,), "tag")]
    assert [lap.q4 for lap in res.laps] == ["unobserved"]   # one read: no facing


def test_anonymous_passes_make_bib_0_laps():
    cfg = config(oncoming=False)
    evs = [start()] + crossing(10.0) + crossing(120.0) + crossing(235.0)
    res = replay(in_order(evs), cfg)
    assert [(lap.bib, lap.name, lap.lap, round(lap.lap_s, 3)) for lap in res.laps] == [
        (0, "", 1, 110.0), (0, "", 2, 115.0)]
    assert {(lap.q1, lap.q2, lap.q3, lap.q4) for lap in res.laps} == {("unobserved",) * 4}


def test_missed_tags_are_predicted_from_last_pass_and_lap_time():
    cfg = config()
    evs = [start()]
    for t in (10.0, 100.0, 190.0):
        evs += crossing(t) + reads(7, t)
    evs += crossing(281.0)                                  # tags missed this time
    evs += crossing(370.0) + reads(7, 370.0)
    res = replay(in_order(evs), cfg)
    assert [lap[2] for lap in laps_of(res, 7)] == ["tag", "tag", "predicted", "tag"]
    assert laps_of(res, 7)[2][1] == 281.0


def test_two_runners_who_could_both_explain_a_pass_get_no_prediction():
    cfg = config()
    evs = [start()]
    for t in (10.0, 100.0, 190.0):
        evs += crossing(t) + reads(7, t) + crossing(t + 1.0) + reads(8, t + 1.0)
    evs += crossing(280.5)
    res = replay(in_order(evs), cfg)
    last = [p for p in res.passes if p.t_s > 270][0]
    assert last.source == "anonymous"


@pytest.mark.parametrize("seen_from_m", [30.0, 6.0])
def test_a_prediction_is_taken_back_when_the_tags_show_the_runner_later(seen_from_m):
    """At 30 m the camera already sees bib 7 coming when the stranger crosses (no guess is
    made); from 6 m it sees them only after the guess, which is then taken back."""
    cfg = config()
    evs = [start()]
    for t in (10.0, 100.0, 190.0):
        evs += crossing(t) + reads(7, t)
    evs += crossing(277.0)                                   # somebody without a bib
    evs += crossing(283.0) + reads(7, 283.0, stretch_m=seen_from_m)
    from station.engine import Engine
    eng = Engine(cfg)
    guessed = set()
    for ev in in_order(evs):
        eng.feed(ev)
        guessed |= {p.source for p in eng.results().passes if round(p.t_s) == 277}
    eng.finish()
    res = eng.results()
    assert ("predicted" in guessed) == (seen_from_m == 6.0)
    by_t = {round(p.t_s): (p.bibs, p.source) for p in res.passes}
    assert by_t[277] == ((), "anonymous")
    assert by_t[283] == ((7,), "tag")
    assert laps_of(res, 7)[-1] == (190.0, 283.0, "tag")


def test_the_only_checked_in_runner_gets_passes_nobody_else_explains():
    cfg = config(oncoming=False)
    evs = [start(), {"t": 1.0, "type": "checkin", "bib": 12}]
    evs += crossing(10.0) + crossing(100.0)
    evs += [{"t": 150.0, "type": "checkout", "bib": 12}] + crossing(200.0) + crossing(300.0)
    res = replay(in_order(evs), cfg)
    assert [(p.bibs, p.source) for p in res.passes] == [
        ((12,), "solo"), ((12,), "solo"), ((), "anonymous"), ((), "anonymous")]
    assert laps_of(res, 12) == [(10.0, 100.0, "solo")]
    assert res.checked_in == frozenset()


def test_with_two_checked_in_runners_nobody_is_solo():
    cfg = config(oncoming=False)
    evs = [start(), {"t": 1.0, "type": "checkin", "bib": 12},
           {"t": 1.5, "type": "checkin", "bib": 13}] + crossing(10.0)
    res = replay(in_order(evs), cfg)
    assert res.passes[0].source == "anonymous"
    assert res.checked_in == frozenset({12, 13})


def test_a_runner_seen_far_away_is_not_credited_with_a_pass_now():
    cfg = config()
    evs = [start()] + crossing(10.0)
    # Bib 9 is 5 s from the line when the beam breaks: it is not them.
    evs += reads(9, 15.0)
    evs += crossing(15.0)
    res = replay(in_order(evs), cfg)
    assert [(round(p.t_s), p.bibs) for p in res.passes] == [(10, ()), (15, (9,))]


def test_tags_without_px_still_credit():
    cfg = config()
    evs = [start()] + crossing(10.0)
    evs += [dict(e) for e in reads(7, 10.0)]
    for e in evs:
        e.pop("px", None)
    res = replay(in_order(evs), cfg)
    assert res.passes[0].bibs == (7,)
    assert res.passes[0].t_s == pytest.approx(10.0, abs=0.003)


def test_a_bib_read_only_twice_on_the_way_in_still_credits_its_pass():
    """A bib the camera seldom reads (folded, wet): two reads 3 s apart, the tag twice as
    big the second time, fix the line by themselves; the pass is theirs, timed at the beam."""
    cfg = config()
    evs = [start()] + crossing(10.0) + reads(7, 10.0)
    # A runner at 4 m/s: 24 m out at 114 s (px 15), 12 m out at 117 s (px 30).
    evs += crossing(120.0) + [tag(114.0, 14, 15.0), tag(117.0, 14, 30.0)]
    res = replay(in_order(evs), cfg)
    assert [(p.bibs, p.source) for p in res.passes] == [((7,), "tag"), ((7,), "tag")]
    assert laps_of(res, 7) == [(10.0, 120.0, "tag")]


def test_two_far_reads_that_do_not_grow_are_not_a_runner():
    # Same bib twice from afar, the same size: a bib in the crowd, not someone coming in.
    cfg = config()
    evs = [start()] + crossing(10.0) + reads(7, 10.0)
    evs += crossing(120.0) + [tag(114.0, 16, 20.0), tag(117.0, 16, 21.0)]
    res = replay(in_order(evs), cfg)
    assert [(p.bibs, p.source) for p in res.passes] == [((7,), "tag"), ((), "anonymous")]
