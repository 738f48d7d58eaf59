"""`station run --simulate` at high speed: the simulated beam's edges carry the times the
world scheduled them at (read by the real BeamGate callbacks), so demo laps are the world's
true laps however late the playing thread wakes under CPU load."""

from __future__ import annotations

import argparse
import json
import threading
import time

import pytest

from station import launch
from station.sim.truth import compute_truth

pytestmark = pytest.mark.slow

SPEED = 20.0
CUT_S = 360.0       # world seconds to compare (18 s of real time at 20x): three laps
SETTLE_S = 12.0     # the engine decides a pass within a few seconds; allow more


def start(tmp_path, scenario: str, *extra):
    parser = argparse.ArgumentParser()
    launch.add_arguments(parser)
    args = parser.parse_args(["--simulate", "--scenario", scenario, "--speed", str(SPEED),
                              "--port", "0", "--data", str(tmp_path), "--log-level", "WARNING",
                              *extra])
    return launch.build(args)


def busy(stop: threading.Event) -> None:
    """Pure-Python work: holds the GIL for its 5 ms switch interval at a time, as the web
    server and the engine do on a loaded Pi, so a woken beam thread runs milliseconds late."""
    while not stop.is_set():
        sum(range(2000))


def test_laps_at_speed_20_under_load_equal_the_worlds_truth(tmp_path):
    # A runner without a bib who checked in: laps are credited without the camera, so they
    # hang on the beam alone. At 20x one real ms is 20 ms of the session clock, and a torso
    # breaks the beam for ~4 real ms: stamped at wake-up, under load, both edges of a break
    # came late and together, a glitch, and the pass was lost.
    stop = threading.Event()
    load = [threading.Thread(target=busy, args=(stop,), daemon=True) for _ in range(2)]
    for thread in load:
        thread.start()
    station = start(tmp_path, "checkin-solo", "--no-camera")
    try:
        sim = next(p for name, p in station.parts if name == "simulation").__self__
        session = station.worker.session
        # Session seconds of a world time (both clocks run at SPEED from their origins).
        offset_s = (sim.origin_ns - session.origin_ns) * SPEED / 1e9
        deadline = time.monotonic() + 120
        state = station.worker.state
        while state.now_s < offset_s + CUT_S + SETTLE_S:
            assert time.monotonic() < deadline, "the simulated station fell behind"
            state = station.worker.wait_for_change(state.version, 1.0)
        results = state.results
    finally:
        stop.set()
        station.stop()

    truth = [(lap.bib, lap.run, lap.lap, lap.end_s, lap.lap_s)
             for lap in compute_truth(sim.world).laps if lap.end_s < CUT_S]
    shown = [(lap.bib, lap.run, lap.lap, lap.end_s - offset_s, lap.lap_s)
             for lap in results.laps if lap.end_s - offset_s < CUT_S]
    assert len(truth) >= 3
    assert [t[:3] for t in shown] == [t[:3] for t in truth], (shown, truth)
    for got, want in zip(shown, truth):
        # Timed at the torso: within a few ms of the world's crossing (a wake-up-stamped
        # edge is off by 20 ms for every real ms the thread woke late).
        assert got[3] == pytest.approx(want[3], abs=0.02), (got, want)
        assert got[4] == pytest.approx(want[4], abs=0.02), (got, want)


def coach_opener(url: str):
    """An HTTP client logged in as the station's first coach (first-run setup)."""
    import http.cookiejar
    import urllib.parse
    import urllib.request

    from webkit import csrf_of

    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    token = csrf_of(opener.open(url + "coach/setup", timeout=30).read().decode())
    form = {"name": "kim", "password": "track-secret-1", "repeat": "track-secret-1",
            "csrf": token}
    opener.open(url + "coach/setup", urllib.parse.urlencode(form).encode(), timeout=30).read()
    return opener


def test_the_demo_keeps_a_photo_of_a_runner_without_a_bib_per_session(tmp_path):
    # Camera on: the fake camera draws the runner (no bib to read); the photo of their pass
    # is kept under the session's own folder and served by the coach's photo link.
    import cv2
    import numpy as np

    from station.sensors.fakecam import background
    from station.sensors.photos import shrink

    station = start(tmp_path, "no-bib-solo")
    try:
        session = station.worker.session
        deadline = time.monotonic() + 90
        state, kept = station.worker.state, None
        while kept is None:
            assert time.monotonic() < deadline, "no photo of a pass"
            state = station.worker.wait_for_change(state.version, 1.0)
            # The second pass: the first comes while the camera is still starting.
            for p in getattr(state.results, "passes", ())[1:]:
                path = tmp_path / "photos" / str(session.id) / f"{p.gate}_{p.t_s:.3f}.jpg"
                if path.is_file():
                    kept = p, path.read_bytes()
        p, jpeg = kept
        coach = coach_opener(station.url)
        console = json.loads(coach.open(station.url + "live/console?h=", timeout=30).read())
        link = f"/coach/photo/{session.id}/{p.gate}/{p.t_s:.3f}.jpg"  # a pass without a bib, with its photo
        served = coach.open(station.url + link[1:], timeout=30).read()
    finally:
        station.stop()
    assert f'src="{link}"' in console["html"]
    assert served == jpeg  # the coach's link finds this session's photo
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)
    empty = shrink(background(1280, 720), img.shape[1]).astype(int)
    assert (np.abs(img - empty).max(axis=2) > 40).mean() > 0.05  # a person, not the track
