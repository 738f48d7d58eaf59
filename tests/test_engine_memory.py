"""A long session keeps little per lap: old passes lose their evidence (beam clusters,
camera tracks), old tracks become a few numbers for the facings, and snapshots are built
from the previous one. None of that may change a conclusion: a snapshot taken after every
event equals one replay at the end, and coaches' corrections of old passes still work."""

from __future__ import annotations

import pytest

from engine_kit import in_order

from station.engine import Engine
from station.replay import replay_events
from station.sim.scenarios import build
from station.sim.sensors import iter_events


def correct(t, action, pass_t, bib=None, gate="finish"):
    ev = {"t": t, "type": "correct", "action": action, "gate": gate,
          "pass_t": round(pass_t, 3), "by": "coach"}
    if bib is not None:
        ev["bib"] = bib
    return ev


def session(name="checkpoints", seed=4, minutes=10):
    sc = build(name, seed=seed, minutes=minutes)
    return sc.config, list(iter_events(sc.world, sc.sensors, seed=seed))


def rows(res):
    return (res.laps, res.passes, res.splits, res.alarms, res.faults)


def test_old_passes_keep_only_what_results_and_corrections_need():
    cfg, evs = session()
    eng = Engine(cfg)
    eng.feed_many(evs)
    eng.finish()
    old = [p for p in eng._passes if p.t_s < evs[-1]["t"] - 120]
    assert len(old) > 20
    assert all(p.cluster is None and p.tracks == () for p in old)
    # Tracks gone from the cameras' recent ones live on as four numbers each, per bib.
    assert all(not cam.recent or cam.recent[0].last_s > evs[-1]["t"] - 60
               for cam in eng._cams.values())
    assert sum(len(a) for a in eng._faced.values()) >= 4 * len(eng.results().laps)
    # ... which give the same facings as the tracks did (the truth of the scenario).
    res = eng.results()
    assert {lap.q2 for lap in res.laps if lap.bib == 22} == {"backward"}
    assert "mixed" in {lap.q3 for lap in res.laps if lap.bib == 24}


@pytest.mark.parametrize("name", ["checkpoints", "spotter-dropout", "departing"])
def test_a_snapshot_after_every_event_equals_one_at_the_end(name):
    cfg, evs = session(name)
    live = Engine(cfg, reorder_s=0.5)
    for ev in evs:
        live.feed(ev)
        live.advance(ev["t"])
        live.results()
    live.finish()
    assert rows(live.results()) == rows(replay_events(evs, cfg))


def test_corrections_of_old_passes_work_after_their_evidence_is_dropped():
    cfg, evs = session()
    base = replay_events(evs, cfg)
    end = evs[-1]["t"]
    finish = [p for p in base.passes if p.gate == "finish" and p.bibs]
    first, second, third = finish[1], finish[2], finish[3]
    assert first.t_s < end - 200
    fixes = [correct(end + 1, "delete", first.t_s),
             correct(end + 2, "assign", second.t_s, bib=99),
             correct(end + 3, "add", first.t_s + 0.5, bib=first.bibs[0]),
             correct(end + 4, "delete", third.t_s),
             correct(end + 5, "restore", third.t_s)]
    live = Engine(cfg, reorder_s=0.5)
    for ev in in_order(evs + fixes):
        live.feed(ev)
        live.advance(ev["t"])
        live.results()       # snapshots taken all along, as the worker does
    live.finish()
    res = live.results()
    by_t = {round(p.t_s, 3): p for p in res.passes if p.gate == "finish"}
    assert by_t[round(first.t_s, 3)].deleted
    assert by_t[round(first.t_s + 0.5, 3)].source == "manual"
    assert by_t[round(second.t_s, 3)].bibs == (99,) and by_t[round(second.t_s, 3)].source == "manual"
    assert not by_t[round(third.t_s, 3)].deleted
    assert not [lap for lap in res.laps if lap.bib == 99]    # one pass is no lap yet
    moved = second.bibs[0]
    assert len([lap for lap in res.laps if lap.bib == moved]) < \
        len([lap for lap in base.laps if lap.bib == moved])
    assert rows(res) == rows(replay_events(in_order(evs + fixes), cfg))


def test_snapshots_in_a_long_session_are_built_from_the_previous_one():
    cfg, evs = session("group", seed=2, minutes=30)
    eng = Engine(cfg, reorder_s=0.5)
    prev = None
    reused = total = 0
    for ev in evs:
        eng.feed(ev)
        res = eng.results()
        if prev is not None and res is not prev and len(prev.laps) > 40:
            # Laps that did not change are the very same rows (not rebuilt), and so are
            # the passes.
            old = {id(lap) for lap in prev.laps}
            reused += sum(1 for lap in res.laps if id(lap) in old)
            total += len(res.laps)
            old_passes = {id(p) for p in prev.passes}
            assert sum(1 for p in res.passes if id(p) not in old_passes) <= 3
        prev = res
    assert total > 1000 and reused / total > 0.95


def test_a_dropped_engine_is_freed_at_once():
    """The live worker drops its engine to rebuild it from the store; with no reference
    cycles through the engine itself, it goes at once, not at some later full collection
    (which let old engines pile up in the resident memory of a long session)."""
    import gc
    import weakref

    cfg, evs = session("spotter-dropout", seed=1)
    was = gc.isenabled()
    gc.disable()
    try:
        eng = Engine(cfg, reorder_s=0.4)
        for ev in evs:
            eng.feed(ev)
        eng.advance(evs[-1]["t"])
        assert eng.results().alarms
        gone = weakref.ref(eng)
        del eng
        assert gone() is None
    finally:
        if was:
            gc.enable()
