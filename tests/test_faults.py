"""Faults injected into a running station (issue 5): a camera that raises, a camera that
hangs, a buzzer whose pin fails, a beam stuck broken and a locked database each show as a
clear fault on the dashboard and in the log, while laps keep being counted.

The station is real (SQLite store, worker, engine, Flask app); the faults come from the real
sensor classes on their fakes: the fake camera told to fail, a MockFactory pin that raises.
"""

from __future__ import annotations

import sqlite3
import pytest
from gpiozero.pins.mock import MockPin
from webkit import Station

from station.sensors.buzzer import StationBuzzer
from station.sensors.fakecam import FakeCamera
from station.sensors.pipeline import CameraPipeline

BUZZER_PIN = 6


class FailingPin(MockPin):
    """A buzzer pin whose driver fails while `broken` (a pulled wire)."""

    broken = False

    def _set_state(self, value):
        if FailingPin.broken:
            raise OSError(5, "Input/output error")
        super()._set_state(value)


@pytest.fixture
def station(tmp_path, mock_factory):
    st = Station(tmp_path)
    mock_factory.pin(BUZZER_PIN, pin_class=FailingPin)
    FailingPin.broken = False
    st.buzzer = StationBuzzer(BUZZER_PIN, st.worker, pin_factory=mock_factory)
    st.worker.buzzer = st.buzzer  # as `station run` wires it
    # The camera looks at an empty track: its faults, not its reads, are under test here
    # (camera-timed passes during a blocked beam are the engine's tests).
    st.camera = FakeCamera("finish-cam", lambda t: [], width=640, height=360, fps=20)
    st.pipeline = CameraPipeline("finish-cam", st.camera, st.worker, retry_s=0.05,
                                 stall_s=0.3, restart_s=0.5).start()
    st.setup_coach()
    yield st
    st.pipeline.stop()
    st.buzzer.close()
    st.close()


def open_faults(state) -> set[str]:
    engine = {f.kind for f in state.results.faults if f.end_s is None}
    return engine | {f.kind for f in state.faults}


def health(st) -> str:
    return st.client.get("/coach/health").get_data(as_text=True)


def laps_of_ana(state) -> int:
    return len([lap for lap in state.results.laps if lap.bib == 7])


def test_each_fault_shows_on_the_dashboard_and_in_the_log_while_laps_are_counted(station):
    st = station
    st.feed_example("solo-forward", until_s=200)
    laps_before = laps_of_ana(st.wait(lambda s: laps_of_ana(s) == 2, "Ana's first two laps"))

    # The camera raises, then hangs: each a fault with its reason, shown on the health page.
    st.camera.set_fail("error")
    st.wait(lambda s: "camera_error" in open_faults(s), "camera_error")
    assert "camera error" in health(st)
    st.camera.set_fail("hang")
    st.wait(lambda s: "camera_stalled" in open_faults(s), "camera_stalled")
    page = health(st)
    assert "camera stalled" in page and "no frame for" in page

    # The buzzer's pin fails when it is next driven: a fault, never an exception.
    FailingPin.broken = True
    st.buzzer.alarm_on()
    st.wait(lambda s: "buzzer_failed" in open_faults(s), "buzzer_failed")
    assert "buzzer failed" in health(st)

    # Someone stands in the beam: broken for longer than blocked_after_s, no pass.
    now_s = st.worker.now_s()
    stuck_ns = st.worker.session.origin_ns + int((now_s - 30) * 1e9)
    st.worker.submit("beam", stuck_ns, gate="finish", broken=True)
    state = st.wait(lambda s: "beam_blocked" in open_faults(s), "beam_blocked")
    assert "beam blocked" in health(st)
    assert not [p for p in state.results.passes if p.t_s > now_s - 30]  # a stuck beam is no pass

    # Another program holds the database: the worker holds events, shows sqlite_busy.
    other = sqlite3.connect(st.store.path, isolation_level=None, timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    try:
        st.worker.submit_now("checkin", bib=4)
        st.wait(lambda s: "sqlite_busy" in open_faults(s), "sqlite_busy")
        page = health(st)
        assert "sqlite busy" in page and "waiting for the database" in page.lower()
    finally:
        other.execute("COMMIT")
        other.close()
    st.wait(lambda s: "sqlite_busy" not in open_faults(s) and 4 in s.results.checked_in,
            "the held check-in stored once the database is free")

    # Laps go on being counted through all of it: the rest of Ana's session arrives.
    st.feed_example("solo-forward")
    state = st.wait(lambda s: laps_of_ana(s) == 6, "all six of Ana's laps")
    assert laps_of_ana(state) > laps_before
    assert {"camera_stalled", "buzzer_failed", "beam_blocked"} <= open_faults(state)

    # And the log says it all: a replay of the exported log finds the same faults.
    logged = {e["kind"] for e in st.store.events(st.worker.session.id) if e["type"] == "fault"}
    assert {"camera_error", "camera_stalled", "buzzer_failed", "sqlite_busy"} <= logged
