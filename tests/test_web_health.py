"""The coach's health page and the clock, through a real station (SQLite store, worker, engine,
Flask app): systemd's give-up note and clearing it, the worker's own faults and the events
waiting for the store, disk, the clock (set from a phone through station-clock.service's
request file, and who set it), cameras' frame rates, the checkpoint-gate link; and a wall clock
that jumps mid-session changes no lap."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import datetime

import orjson
import pytest
from webkit import Station

from station import clock_request, service_failed
from station.events import iter_lines
from station.mqtt import GateBridge
from station.replay import replay_events
from station.store import DB_NAME
from station.web import Hooks
from station.web.clock import system_clock_setter


def stored(st, kind: str) -> list[dict]:
    return [orjson.loads(line) for line in st.store.lines() if f'"type":"{kind}"' in line]


def health(st) -> str:
    resp = st.client.get("/coach/health")
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


@pytest.fixture
def st(tmp_path):
    station = Station(tmp_path, hooks=Hooks(set_clock=system_clock_setter(tmp_path / "data")))
    station.setup_coach()
    yield station
    station.close()


# -- systemd's give-up note ------------------------------------------------------------------

def test_service_failed_note_shows_until_a_coach_clears_it(st):
    assert 'id="service-failed"' not in health(st)
    service_failed.record_failure(st.store.dir, "station.service", ["OSError: [Errno 5] EIO"])
    page = health(st)
    assert 'id="service-failed"' in page and "systemd gave up restarting it" in page
    assert "stopped restarting it" in page and "OSError: [Errno 5] EIO" in page
    # Only a coach's POST with the CSRF token clears it; a GET or a stranger never does.
    assert st.client.get("/coach/health/failure/clear").status_code == 405
    stranger = st.app.test_client()
    assert stranger.post("/coach/health/failure/clear").status_code == 400  # no CSRF token
    assert service_failed.read_failure(st.store.dir) is not None
    resp = st.post("/coach/health/failure/clear", {}, page="/coach/health")
    assert resp.status_code == 302
    assert service_failed.read_failure(st.store.dir) is None
    page = health(st)
    assert 'id="service-failed"' not in page and "The service failure note is cleared." in page


def test_logged_out_clear_goes_to_the_login(st, tmp_path):
    service_failed.record_failure(st.store.dir, "station.service", [])
    other = st.app.test_client()
    token = other.get("/checkin").get_data(as_text=True).split('name="csrf" value="')[1].split('"')[0]
    resp = other.post("/coach/health/failure/clear", data={"csrf": token})
    assert resp.status_code == 302 and "/coach/login" in resp.headers["Location"]
    assert service_failed.read_failure(st.store.dir) is not None


# -- the worker's own faults, pending events, disk ----------------------------------------------

def test_worker_faults_and_pending_events_show_while_the_database_is_locked(st, tmp_path):
    page = health(st)
    assert "No fault in the station itself" in page
    assert '<td id="pending" class="">0</td>' in page
    locker = sqlite3.connect(tmp_path / "data" / DB_NAME, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # a backup program holds the database
    try:
        st.worker.submit_now("checkin", bib=5)
        st.wait(lambda s: s.faults and s.pending, "the sqlite_busy fault")
        page = health(st)
        assert "<b>sqlite busy</b> (store)" in page and "another program" in page
        assert '<td id="pending" class="error">1</td>' in page
    finally:
        locker.execute("COMMIT")
        locker.close()
    st.wait(lambda s: not s.faults and 5 in s.results.checked_in, "the store back")
    page = health(st)
    assert "No fault in the station itself" in page and '<td id="pending" class="">0</td>' in page


def test_disk_free_is_reported_for_the_data_folder(st):
    page = health(st)
    assert "MB free of" in page and str(st.store.dir) in page


# -- the clock ---------------------------------------------------------------------------------

def test_set_clock_writes_the_request_and_logs_who_and_the_previous_time(st, tmp_path):
    page = health(st)
    assert "no: the Pi has no clock battery" in page
    before = time.time()
    resp = st.post("/coach/clock", {"wall": "2026-05-01T12:11:12.345+02:00"}, page="/coach/health")
    assert resp.status_code == 302
    # The request station-clock.path waits for, in the data folder, in UTC.
    request = json.loads((tmp_path / "data" / clock_request.REQUEST_NAME).read_text())
    assert request["wall"] == "2026-05-01T10:11:12.345Z"
    assert abs(request["monotonic_ns"] - time.monotonic_ns()) < 30 * 10**9
    [event] = stored(st, "clock")
    assert (event["wall"], event["by"], event["applied"]) == ("2026-05-01T10:11:12.345Z", "kim", "requested")
    previous = datetime.fromisoformat(event["previous"].replace("Z", "+00:00"))
    assert abs(previous.timestamp() - before) < 60  # the station's wall clock just before
    page = health(st)
    assert "yes, by <b>kim</b> to 2026-05-01T10:11:12.345Z" in page
    # The privileged side takes the request as it was written.
    got = []
    clock_request.apply(tmp_path / "data" / clock_request.REQUEST_NAME, settime=got.append)
    assert got and abs(got[0] - 1777630272.345) < 5


def test_a_silly_phone_time_is_recorded_but_not_requested(st, tmp_path):
    st.post("/coach/clock", {"wall": "1999-01-01T00:00:00Z"}, page="/coach/health")
    assert not (tmp_path / "data" / clock_request.REQUEST_NAME).exists()
    [event] = stored(st, "clock")
    assert event["applied"] == "failed" and "outside" in event["message"]
    assert "could not be set" in health(st)


def test_a_request_nobody_takes_is_pointed_out(st, tmp_path):
    path = clock_request.request(tmp_path / "data", "2026-05-01T10:00:00Z")
    req = json.loads(path.read_text())
    req["monotonic_ns"] -= 60 * 10**9  # made a minute ago, still there
    path.write_text(json.dumps(req))
    assert "is station-clock.path running?" in health(st)


def test_a_wall_clock_jump_mid_session_changes_no_lap(st, monkeypatch):
    from station.sim.scenarios import build
    from station.sim.sensors import iter_events

    scenario = build("solo-forward", seed=3, minutes=6)
    events = list(iter_events(scenario.world, scenario.sensors, 3))
    half_s = events[-1]["t"] / 2
    st.feed(events, until_s=half_s)
    # Mid-session the coach sets the clock, and the wall clock jumps three hours.
    st.post("/coach/clock", {"wall": "2026-05-01T13:00:00Z"}, page="/coach/health")
    real_time, real_time_ns = time.time, time.time_ns
    monkeypatch.setattr(time, "time", lambda: real_time() + 3 * 3600)
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + 3 * 3600 * 10**9)
    st.feed([ev for ev in events if ev["t"] >= half_s])
    state = st.wait(lambda s: len(s.results.laps) >= 3, "the laps")
    with_clock = [(lap.bib, lap.run, lap.lap, lap.start_s, lap.end_s) for lap in state.results.laps]
    # The same events without the clock event, replayed: the same laps.
    without = replay_events(iter(events), st.config)
    assert with_clock == [(lap.bib, lap.run, lap.lap, lap.start_s, lap.end_s) for lap in without.laps]
    # And the station's own log, clock event included, replays to them too.
    exported = st.client.get("/coach/downloads/events.jsonl").data
    assert b'"type":"clock"' in exported
    replayed = replay_events(iter_lines(exported.splitlines()), st.config)
    assert [(lap.bib, lap.lap, lap.end_s) for lap in replayed.laps] == [
        (b, n, e) for b, _, n, _, e in with_clock]


# -- cameras and the checkpoint-gate link ---------------------------------------------------------

def test_camera_frame_rate_from_the_running_pipeline(tmp_path):
    from station.sensors.fakecam import FakeCamera
    from station.sensors.pipeline import CameraPipeline

    pipelines = []
    st = Station(tmp_path, hooks=Hooks(camera_fps=lambda: {p.camera_id: p.fps for p in pipelines}))
    try:
        st.setup_coach()
        pipelines.append(CameraPipeline("finish-cam", FakeCamera("finish-cam", lambda t: [],
                                                                 width=160, height=120, fps=20),
                                        st.worker))
        assert "no frames yet" in health(st)
        pipelines[0].start()
        deadline = time.monotonic() + 20
        tick = threading.Event()
        while not pipelines[0].fps:
            assert time.monotonic() < deadline, "the fake camera gave no frames"
            tick.wait(0.05)
        page = health(st)
        rate = float(page.split('<span class="fps">')[1].split(" frames/s")[0])
        # the config asks for 10; this one runs 20 (fewer on a loaded machine, never more)
        assert 0 < rate <= 40 and "(set to 10" in page
    finally:
        for p in pipelines:
            p.stop()
        st.close()


def test_checkpoint_link_status_is_shown(tmp_path):
    st = Station(tmp_path)
    bridge = GateBridge(st.worker, "web-test", port=1)  # never started: not connected
    bridge.gates.update({"g200": "online", "g300": "offline"})
    st.app.extensions["station"].hooks.link_status = bridge.status
    try:
        st.setup_coach()
        page = health(st)
        assert "Checkpoint gates (MQTT)" in page and "NOT CONNECTED" in page
        assert '<li class="okcard"><b>g200</b> online</li>' in page
        assert '<li class="fault"><b>g300</b> offline</li>' in page
    finally:
        st.close()
