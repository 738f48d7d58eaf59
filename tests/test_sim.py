"""The simulated world's own sanity: its physics, its sensors and its truth behave like the
track (and like ../shared/examples), independent of the engine."""

from __future__ import annotations

import csv
import json
import math
import numpy as np
import pytest

from station.cli import main
from station.config import load_config
from station.events import check_event, read_log
from station.sim import plan
from station.sim.scenarios import SCORED, Setup, build, min_gap_s
from station.sim.sensors import SensorSpec, iter_events, write_events
from station.sim.truth import compute_truth
from station.sim.world import Body, TAG_SIDE_M, FOCAL_PX_AT_1280, World


def breaks(events, gate="finish"):
    edges = sorted((e for e in events if e["type"] == "beam" and e["gate"] == gate),
                   key=lambda e: e["t"])
    return [(a["t"], b["t"]) for a, b in zip(edges, edges[1:]) if a["broken"] and not b["broken"]]


def solo_world(body: Body, laps=4, seed=0) -> World:
    s = Setup("t", seed, roster=[(7, "Ana")])
    s.runner(7, speed_mps=4.0, laps=laps, body=body)
    return s.world(glitch_per_s=0)


def test_clean_torso_break_gives_true_time_at_40_percent():
    world = solo_world(Body(arm_swing_m=0.0, torso_depth_m=0.3))
    crossings = world.crossings("finish")
    assert len(crossings) == 5
    for t, _, v in crossings:
        (s, e), = world.beam_intervals("finish", t - 1, t + 1)
        assert e - s == pytest.approx(0.3 / v, abs=1e-9)
        assert s + 0.4 * (e - s) == pytest.approx(t, abs=1e-9)


def test_arms_break_the_beam_briefly_around_the_torso():
    sc = build("group", seed=4, minutes=20)
    events = list(iter_events(sc.world, sc.sensors, seed=4))
    bs = breaks(events)
    torso, limbs, pre, post = [], [], 0, 0
    every = [t for t, _, _ in sc.world.crossings("finish")]
    crossings = [t for t in every if sum(abs(t - u) < 1.2 for u in every) == 1]
    for t in crossings:
        near = [(s, e) for s, e in bs if abs(s - t) < 0.5 and e - s > 0.006]
        s, e = max(near, key=lambda b: b[1] - b[0])
        assert s <= t <= e, "the longest break holds the torso crossing"
        torso.append(e - s)
        limbs += [b - a for a, b in near if (a, b) != (s, e)]
        pre += any(b <= s for a, b in near)
        post += any(a >= e for a, b in near)
    n = len(crossings)
    assert n > 50
    assert 0.05 < np.median(torso) < 0.11
    assert 0.010 < np.median(limbs) < 0.030
    # As in the examples: a limb before the torso about half the time, after it less often.
    assert 0.35 < pre / n < 0.85 and 0.1 < post / n < 0.5


def test_camera_sees_tags_by_distance_and_facing():
    sc = build("departing", seed=1)
    world = sc.world
    ana = world.runner("bib5")            # forwards everywhere
    ben = world.runner("bib8")            # backwards from 360 m to 60 m
    t_ana = [t for t, r, _ in world.crossings("finish") if r is ana][2]
    # 10 m before the line, facing the oncoming finish camera: front tag, ~36 px.
    for runner, t_line, front in ((ana, t_ana, True),):
        stint = runner.stints[0]
        (t10,), _ = stint.times_at_x(np.array([round(stint.x_at(t_line) / 400) * 400 - 10.0]))
        seen = [s for s in world.visible_tags("finish-cam", t10) if s.runner == runner.key]
        assert len(seen) == 1
        s = seen[0]
        assert s.tag == 2 * runner.bib + (0 if front else 1)
        assert s.distance_m == pytest.approx(10.0, abs=0.01)
        assert s.px == pytest.approx(FOCAL_PX_AT_1280 * TAG_SIDE_M / 10.0, rel=0.01)
        assert 0 <= s.x <= 1 and 0 <= s.y <= 1
        # The departing camera behind the line sees the back of a forward runner.
        (t_after,), _ = stint.times_at_x(np.array([round(stint.x_at(t_line) / 400) * 400 + 12.0]))
        back = [s for s in world.visible_tags("finish-back", t_after) if s.runner == runner.key]
        assert [s.tag for s in back] == [2 * runner.bib + 1]
    events = list(iter_events(world, sc.sensors, seed=1))
    reads = {(e["camera"], e["tag"]) for e in events if e["type"] == "tag"}
    # Ben runs backwards past both finish cameras: back tag to the oncoming one, front
    # tag to the departing one; forwards at the far gate: his back to its departing camera.
    assert ("finish-cam", 17) in reads and ("finish-back", 16) in reads and ("far-back", 17) in reads
    assert sum(1 for e in events if e.get("camera") == "finish-cam" and e.get("tag") == 16) < 3


def test_reads_match_the_examples_optics():
    """px x distance stays near the examples' ~360 px m; reads stop ~1.5-2.5 m out."""
    sc = build("solo-forward", seed=3)
    world = sc.world
    events = list(iter_events(world, sc.sensors, seed=3))
    products, last_m = [], []
    for t, runner, v in world.crossings("finish")[1:]:
        mine = [e for e in events if e["type"] == "tag" and e["tag"] == 14 and t - 12 < e["t"] < t]
        assert 15 < len(mine) < 100
        products += [e["px"] * v * (t - e["t"]) for e in mine]
        last_m.append(v * (t - max(e["t"] for e in mine)))
        assert all(v * (t - e["t"]) <= 30.5 for e in mine), "only inside covers_m"
    assert 320 < np.median(products) < 400
    assert 1.2 < np.median(last_m) < 3.0


def test_frames_follow_the_camera_clock():
    sc = build("solo-forward", seed=2)
    events = [e for e in iter_events(sc.world, SensorSpec(stray_per_s=0), seed=2) if e["type"] == "tag"]
    phase = sc.world.frame_times("finish-cam", 0, 0.1)[0]
    offsets = [((e["t"] - phase + 0.05) % 0.1) - 0.05 for e in events]
    assert -0.0002 < min(offsets) and max(offsets) < 0.0025, \
        "t is the frame's capture time plus a ms or two of stamping"


def test_log_is_valid_and_at_most_two_seconds_out_of_order():
    sc = build("checkpoints", seed=2)
    events = list(iter_events(sc.world, sc.sensors, seed=2))
    assert events[0]["type"] == "start" and events[0]["t"] == 0
    assert all(check_event(e) is None for e in events)
    latest, backwards = -math.inf, 0
    for e in events:
        assert e["t"] >= latest - 2.0
        backwards += e["t"] < latest
        latest = max(latest, e["t"])
    assert backwards > 10, "detection and network latency reorder some lines"


def test_same_seed_same_log_and_windows_agree(tmp_path):
    sc = build("spotter-dropout", seed=5)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_events(a, iter_events(sc.world, sc.sensors, seed=5))
    write_events(b, iter_events(build("spotter-dropout", seed=5).world, sc.sensors, seed=5))
    assert a.read_bytes() == b.read_bytes()
    other = tmp_path / "c.jsonl"
    write_events(other, iter_events(build("spotter-dropout", seed=6).world, sc.sensors, seed=6))
    assert other.read_bytes() != a.read_bytes()
    # A window of the log (the demo streams from any time) is exactly that part of the log.
    whole = [e for e in read_log(a) if 100 <= e["t"] < 200]
    part = list(iter_events(sc.world, sc.sensors, seed=5, t0_s=100, t1_s=200))
    assert sorted(map(json.dumps, part)) == sorted(map(json.dumps, whole))


def test_truth_runs_laps_and_facing():
    pause = compute_truth(build("long-pause", seed=1).world)
    assert [(l.run, l.lap) for l in pause.laps] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    for lap in pause.laps:
        assert lap.lap_s == pytest.approx(lap.end_s - lap.start_s, abs=0.002)
        assert (lap.q1, lap.q2, lap.q3, lap.q4) == ("unobserved",) * 3 + ("forward",)
    solo = compute_truth(build("checkin-solo", seed=1).world)
    assert {l.bib for l in solo.laps} == {9} and {l.name for l in solo.laps} == {"Dev"}
    assert {l.q4 for l in solo.laps} == {"unobserved"}, "no bib: nothing for a camera to read"
    anon = compute_truth(build("no-bib-solo", seed=1).world)
    assert {l.bib for l in anon.laps} == {0}
    cp = compute_truth(build("checkpoints", seed=1).world)
    assert {l.q2 for l in cp.laps if l.bib == 22} == {"backward"}
    assert "mixed" in {l.q3 for l in cp.laps if l.bib == 24}
    assert len(cp.splits) == 3 * len(cp.laps)


def test_truth_alarms_follow_the_spotter():
    sc = build("spotter-dropout", seed=3)
    truth = compute_truth(sc.world)
    cleo = sc.world.runner("bib4")
    dropped = len(cleo.stints) - 1
    assert dropped >= 1 and len(truth.alarms) == dropped
    for alarm in truth.alarms:
        assert alarm.bib == 3 and alarm.alarm_s == pytest.approx(alarm.seen_s + 5)
        # Nobody else crossed near the alarmed pass; the spotter was off the track.
        assert not any(abs(t - alarm.seen_s) < 6 for t, r, _ in sc.world.crossings("finish")
                       if r.key != "bib3")
    assert compute_truth(build("backward-spotted", seed=3).world).alarms == []


def test_blocked_beam_hides_passes_and_is_a_fault():
    sc = build("blocked-beam", seed=2)
    truth = compute_truth(sc.world)
    (fault,) = truth.faults
    assert fault.kind == "beam_blocked" and fault.end_s - fault.start_s >= 35
    inside = [t for t, _, _ in sc.world.crossings("finish") if fault.start_s < t < fault.end_s]
    assert inside, "someone passes while the beam is blocked"
    edges = [e for e in iter_events(sc.world, sc.sensors, seed=2)
             if e["type"] == "beam" and fault.start_s + 0.01 < e["t"] < fault.end_s - 0.01]
    assert edges == []
    assert sc.world.beam_broken("finish", (fault.start_s + fault.end_s) / 2)


def test_rain_makes_millisecond_glitches():
    sc = build("rain", seed=1)
    bs = breaks(iter_events(sc.world, sc.sensors, seed=1))
    crossings = [t for t, _, _ in sc.world.crossings("finish")]
    glitches = [(s, e) for s, e in bs if all(abs(s - t) > 0.6 for t in crossings)]
    assert len(glitches) > 100
    assert all(e - s < 0.0045 for s, e in glitches)


def test_close_finish_pairs_cross_a_few_tenths_apart():
    world = build("close-finish", seed=2).world
    cs = world.crossings("finish")
    gaps = [t1 - t0 for (t0, r0, _), (t1, r1, _) in zip(cs, cs[1:]) if r0 is not r1 and t1 - t0 < 1]
    assert len(gaps) >= len(cs) // 2 - 1
    assert all(0.09 < g < 0.45 for g in gaps)
    assert {r.key for _, r, _ in cs[::2]} == {"bib17", "bib18"}, "either may lead"


@pytest.mark.parametrize("name", SCORED)
def test_scenarios_have_a_clear_truth(name):
    for seed in (0, 1, 2):
        sc = build(name, seed=seed)
        truth = compute_truth(sc.world)
        assert truth.laps, name
        assert truth.ambiguous == [], f"{name} seed {seed}: {truth.ambiguous}"
        assert min_gap_s(sc.world) >= 0.1, "nobody crosses a gate at the same instant"


def test_demo_runs_for_hours_with_checkins_and_alarms():
    sc = build("demo", seed=1, minutes=180)
    world = sc.world
    assert world.end_s == 180 * 60
    kinds = {k for _, k, _ in world.checkins}
    assert kinds == {"checkin", "checkout"}
    assert any(not r.wears_tags for r in world.runners)
    truth = compute_truth(world)
    assert truth.alarms, "the spotter drops out now and then"
    # The live demo asks the world about any moment directly.
    crossings = world.crossings("finish")
    lone = [t for (t0, _, _), (t, r, _), (t1, _, _) in zip(crossings, crossings[1:], crossings[2:])
            if t - t0 > 5 and t1 - t > 5 and r.wears_tags]
    t = lone[0]
    assert world.beam_broken("finish", t) and not world.beam_broken("finish", t - 2)
    seen = world.visible_tags("finish-cam", t - 1)
    assert seen and all(0 < s.px < 300 and 0 <= s.x <= 1 for s in seen)


def test_cli_writes_a_session_like_the_examples(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["simulate", "missed-stray", "--out", str(out), "--seed", "3", "--minutes", "5"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"events.jsonl", "station.toml", "expected_laps.csv", "expected_alarms.csv",
            "expected_faults.csv"} <= names
    config = load_config(out / "station.toml")
    assert [r.bib for r in config.runners] == [14, 15, 16]
    assert sum(1 for _ in read_log(out / "events.jsonl")) > 100
    with open(out / "expected_laps.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["bib", "name", "run", "lap", "start_s", "end_s", "lap_s",
                             "q1", "q2", "q3", "q4"]
    assert main(["simulate", "nope", "--out", str(out)]) == 2
    assert "unknown scenario" in capsys.readouterr().err
    assert main(["simulate", "--list"]) == 0
    assert "spotter-dropout" in capsys.readouterr().out


def test_plan_cut_and_follow_keep_the_line():
    s = Setup("t", 0)
    leader = plan.run_laps(s.config, s.rng, t0_s=0, x0_m=-10, x1_m=1205, speed_mps=4)
    follower = plan.follow(leader, 1.0)
    assert follower.x_at(leader.t[3] + 1.0) == pytest.approx(leader.x[3])
    pieces = plan.drop_laps(follower, 400, 220, [2])
    assert len(pieces) == 2
    assert pieces[0].x[-1] == pytest.approx(620) and pieces[1].x[0] == pytest.approx(1020)
    # Speed never changes within 3 m of the finish line.
    knots = leader.x % 400
    assert all(min(k, 400 - k) >= 3 for k in knots[1:-1])
