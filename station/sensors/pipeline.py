"""One camera's pipeline: frames -> tag detector -> `tag` events, and the camera's health.

A thread per camera reads the newest frame, detects tags and submits one
`tag` event per tag, stamped with the frame's capture time (not the time detection ended).
It also hands frames to the photo keeper.

Health is reported as `fault` events (docs/ARCHITECTURE.md): `camera_missing` (cannot open
it; retried every `retry_s`), `camera_error` (it raised while running; reopened after
`retry_s`), `camera_stalled` (no frame for `stall_s`; restarted every `restart_s` while it
lasts). Each fault closes (`active: false`) when frames flow again. None of this stops the
station: laps are still counted from the beam.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from station.sensors.frames import CameraError, CameraMissing, ThreadedCamera

log = logging.getLogger(__name__)


class CameraPipeline:
    """`CameraPipeline(camera_id, camera, sink)`: sink is the worker or its `submit`."""

    def __init__(self, camera_id: str, camera: ThreadedCamera, sink, *, detector=None, photos=None,
                 stall_s: float = 3.0, retry_s: float = 2.0, restart_s: float = 10.0,
                 read_timeout_s: float = 0.2):
        if detector is None:
            from station.sensors.tags import TagDetector
            detector = TagDetector()
        from station.sensors.beam import submitter

        self.camera = camera
        self.camera_id = camera_id
        self.submit = submitter(sink)
        self.detector = detector
        self.photos = photos
        self.stall_s, self.retry_s, self.restart_s = stall_s, retry_s, restart_s
        self.read_timeout_s = read_timeout_s
        self.faults: dict[str, str] = {}     # open faults: kind -> message
        self.frames = 0
        self.tags = 0
        self.detect_ms = 0.0                  # last frame's detection time
        self._frame_ns: deque[int] = deque(maxlen=32)  # arrival of the last frames, for `fps`
        self._open = False
        self._last_frame_ns = 0
        self._last_restart_ns = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "CameraPipeline":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"pipeline-{self.camera_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 3.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self._close_camera()

    def __repr__(self) -> str:
        return self.camera_id

    @property
    def fps(self) -> float | None:
        """Frames per second over the last few frames (read-only, for the health page):
        None before two frames, 0.0 while stalled."""
        times = tuple(self._frame_ns)
        if len(times) < 2:
            return None
        if time.monotonic_ns() - times[-1] > self.stall_s * 1e9:
            return 0.0
        return round((len(times) - 1) * 1e9 / max(1, times[-1] - times[0]), 1)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - a bug here must not end the camera for good
                log.exception("camera %s: pipeline step failed", self.camera_id)
                self._stop.wait(self.retry_s)

    # -- one step ----------------------------------------------------------------------
    def step(self) -> None:
        """Open the camera if needed, then read and process at most one frame."""
        now = time.monotonic_ns()
        if not self._open:
            try:
                self.camera.start()
            except CameraMissing as exc:
                self._fault("camera_missing", str(exc))
                self._stop.wait(self.retry_s)
                return
            except Exception as exc:  # noqa: BLE001
                self._fault("camera_error", f"cannot start: {exc}")
                self._stop.wait(self.retry_s)
                return
            self._open = True
            self._clear("camera_missing")
            self._last_frame_ns = self._last_restart_ns = time.monotonic_ns()
        try:
            frame = self.camera.read(self.read_timeout_s)
        except CameraError as exc:
            self._fault("camera_error", str(exc))
            self._close_camera()
            self._stop.wait(self.retry_s)
            return
        now = time.monotonic_ns()
        if frame is None:
            if now - self._last_frame_ns > self.stall_s * 1e9:
                self._fault("camera_stalled",
                            f"no frame for {(now - self._last_frame_ns) / 1e9:.1f} s")
                if now - self._last_restart_ns > self.restart_s * 1e9:
                    # A hung driver sometimes recovers when the camera is reopened.
                    self._last_restart_ns = now
                    self._close_camera()
            return
        self._last_frame_ns = now
        self._frame_ns.append(now)
        self._clear("camera_error")
        self._clear("camera_stalled")
        self.frames += 1
        t0 = time.perf_counter()
        detections = self.detector.detect(frame.gray)
        self.detect_ms = (time.perf_counter() - t0) * 1000
        for d in detections:
            self.submit("tag", frame.t_ns, camera=self.camera_id, tag=d.tag, px=d.px)
        self.tags += len(detections)
        if self.photos is not None:
            try:
                self.photos.add(self.camera_id, frame)
            except Exception:  # noqa: BLE001 - a photo is a nicety, never worth a lost tag
                log.exception("camera %s: photo ring failed", self.camera_id)

    def _close_camera(self) -> None:
        if self._open:
            self._open = False
            self.camera.stop()

    # -- faults ------------------------------------------------------------------------
    def _fault(self, kind: str, message: str) -> None:
        if kind in self.faults:
            return
        log.warning("camera %s: %s: %s", self.camera_id, kind, message)
        self.faults[kind] = message
        self.submit("fault", time.monotonic_ns(), kind=kind, source=self.camera_id,
                         active=True, message=message)

    def _clear(self, kind: str) -> None:
        if self.faults.pop(kind, None) is not None:
            log.info("camera %s: %s cleared", self.camera_id, kind)
            self.submit("fault", time.monotonic_ns(), kind=kind, source=self.camera_id,
                             active=False, message="frames are flowing again")
