"""The camera pipeline on the fake camera: tags read from rendered frames reach the log,
stamped with the frame's capture time; a missing, failing or hung camera is a fault that
closes when frames flow again, and the beam keeps counting meanwhile."""

from __future__ import annotations

import time

import pytest
from sensorlog import EventLog, faults

from station.config import Gate
from station.sensors.beam import BeamGate
from station.sensors.camera import PiCamera, boottime_offset_ns, sensor_to_monotonic_ns
from station.sensors.fakecam import FakeCamera, TagSpec
from station.sensors.pipeline import CameraPipeline

W, H = 640, 360
BIBS = [TagSpec(14, 200, 180, 48), TagSpec(9, 440, 200, 36, angle_deg=20)]  # 7 front, 4 back


@pytest.fixture
def log(tmp_path):
    log = EventLog(tmp_path)
    yield log
    log.close()


@pytest.fixture
def pipelines():
    started = []
    yield started
    for p in started:
        p.stop()


def start(pipelines, camera, sink, **kw) -> CameraPipeline:
    kw.setdefault("retry_s", 0.05)
    p = CameraPipeline(camera.camera_id, camera, sink, **kw).start()
    pipelines.append(p)
    return p


def tags(events):
    return [e for e in events if e["type"] == "tag"]


def test_tags_in_frames_reach_the_log_stamped_with_the_capture_time(log, pipelines):
    stamps = []

    def scene_time(t_ns):
        stamps.append(t_ns)
        return 0.0

    cam = FakeCamera("finish-cam", lambda t: BIBS, width=W, height=H, fps=20, scene_time=scene_time)
    start(pipelines, cam, log.worker)
    events = log.wait(lambda evs: {e["tag"] for e in tags(evs)} >= {14, 9}, "both bibs read")
    read = tags(events)
    assert {e["camera"] for e in read} == {"finish-cam"}
    assert {e["tag"] for e in read} == {14, 9}  # nothing else in the picture is a tag
    by_tag = {e["tag"]: e for e in read}
    assert by_tag[14]["px"] == pytest.approx(48, rel=0.1)
    assert by_tag[9]["px"] == pytest.approx(36, rel=0.1)
    # t is the frame's capture time (when the fake sensor exposed it), not when it was read.
    captured = {round(log.t_of(ns), 4) for ns in list(stamps)}
    assert all(e["t"] in captured for e in read)


def test_a_missing_camera_is_a_fault_and_the_beam_still_counts(mock_factory, log, pipelines):
    BeamGate(Gate("finish", 0, pin=17), log, pin_factory=mock_factory)
    cam = FakeCamera("finish-cam", lambda t: BIBS, width=W, height=H, fps=20, fail="missing")
    start(pipelines, cam, log)
    events = log.wait(lambda evs: faults(evs, "camera_missing"), "camera_missing")
    fault = faults(events, "camera_missing")[0]
    assert fault["active"] is True and fault["source"] == "finish-cam"
    assert "no camera connected" in fault["message"]
    pin = mock_factory.pin(17)
    pin.drive_low()
    pin.drive_high()
    log.wait(lambda evs: len([e for e in evs if e["type"] == "beam"]) == 2, "beam edges")
    assert tags(log.events) == []
    cam.set_fail(None)  # plugged in: the pipeline retries and finds it
    events = log.wait(lambda evs: len(faults(evs, "camera_missing")) == 2 and tags(evs),
                      "the fault to close and tags to flow")
    assert faults(events, "camera_missing")[1]["active"] is False
    assert len(faults(events, "camera_missing")) == 2  # reported once, not at every retry


def test_a_camera_that_raises_is_a_fault_until_frames_flow_again(log, pipelines):
    cam = FakeCamera("finish-cam", lambda t: BIBS, width=W, height=H, fps=20)
    start(pipelines, cam, log)
    log.wait(lambda evs: tags(evs), "first tags")
    cam.set_fail("error")
    events = log.wait(lambda evs: faults(evs, "camera_error"), "camera_error")
    assert faults(events, "camera_error")[0]["active"] is True
    assert "capture failed" in faults(events, "camera_error")[0]["message"]
    cam.set_fail(None)
    events = log.wait(lambda evs: len(faults(evs, "camera_error")) == 2, "camera_error closed")
    assert faults(events, "camera_error")[1]["active"] is False
    n = len(tags(events))
    log.wait(lambda evs: len(tags(evs)) > n, "tags after recovery")


def test_a_hung_camera_is_reported_as_stalled(log, pipelines):
    cam = FakeCamera("finish-cam", lambda t: BIBS, width=W, height=H, fps=20)
    p = start(pipelines, cam, log, stall_s=0.3, restart_s=0.5)
    log.wait(lambda evs: tags(evs), "first tags")
    cam.set_fail("hang")
    events = log.wait(lambda evs: faults(evs, "camera_stalled"), "camera_stalled")
    fault = faults(events, "camera_stalled")[0]
    assert fault["active"] is True and "no frame for" in fault["message"]
    cam.set_fail(None)
    events = log.wait(lambda evs: len(faults(evs, "camera_stalled")) == 2, "stall closed")
    assert faults(events, "camera_stalled")[1]["active"] is False
    assert p.faults == {}


def test_without_picamera2_the_pi_camera_is_missing_with_a_clear_message(log, pipelines):
    pytest.importorskip("cv2")
    try:
        import picamera2  # noqa: F401
        pytest.skip("picamera2 is installed here")
    except ImportError:
        pass
    start(pipelines, PiCamera("finish-cam", width=W, height=H), log)
    events = log.wait(lambda evs: faults(evs, "camera_missing"), "camera_missing")
    assert "picamera2 is not installed" in faults(events, "camera_missing")[0]["message"]


def test_sensor_timestamps_map_from_boottime_to_monotonic():
    offset = boottime_offset_ns()
    assert offset >= -1_000_000  # BOOTTIME is never behind MONOTONIC (1 ms slack for reading)
    now = time.monotonic_ns()
    exposed = now - 30_000_000  # exposed 30 ms ago
    assert sensor_to_monotonic_ns(exposed + offset, offset, now, 100_000_000) == exposed
    # A stamp on some other clock (future, or hours old) is not trusted.
    assert sensor_to_monotonic_ns(now + 10**12, offset, now, 100_000_000) == now - 100_000_000
    assert sensor_to_monotonic_ns(now - 10**13, offset, now, 100_000_000) == now - 100_000_000
