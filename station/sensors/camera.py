"""The Raspberry Pi camera (picamera2), as a `ThreadedCamera` of stamped frames.

picamera2 comes from apt on the Pi (python3-picamera2, with a venv made with
--system-site-packages) and is imported only inside this module's functions, so the rest of
the station (and every test) runs without it.

Streams: the *main* stream is YUV420 at the configured size (`cameras[].width/height`); the
detector reads its Y plane directly (grey, no colour conversion: the cheapest possible
frame). A *lores* stream (YUV420, 640 px wide) feeds the pass photos. We detect on the full
size, not on lores, because a bib 12 m away is only ~14-25 px wide: halving the resolution
would lose exactly the runners the coach cannot see either.

Time: libcamera's `SensorTimestamp` (start of exposure of the first line) is in nanoseconds
on CLOCK_BOOTTIME. Our clock is CLOCK_MONOTONIC (`time.monotonic_ns()`), which differs from
BOOTTIME only by the time spent suspended; we measure that offset (reading both clocks
back to back, keeping the tightest of a few tries) at start and every minute, and subtract
it: `t_ns = SensorTimestamp - (boottime - monotonic)`. A Pi never suspends, so the offset is
normally 0; the sanity check below catches a driver that stamps on another clock.
"""

from __future__ import annotations

import logging
import time

from station.sensors.frames import CameraError, CameraMissing, Frame, ThreadedCamera

log = logging.getLogger(__name__)

LORES_WIDTH = 640
OFFSET_REFRESH_NS = 60 * 1_000_000_000


def boottime_offset_ns(tries: int = 5) -> int:
    """CLOCK_BOOTTIME - CLOCK_MONOTONIC, in ns (the tightest of `tries` readings)."""
    best = None
    for _ in range(tries):
        a = time.monotonic_ns()
        b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        c = time.monotonic_ns()
        if best is None or c - a < best[0]:
            best = (c - a, b - (a + c) // 2)
    return best[1]


def sensor_to_monotonic_ns(sensor_ns: int, offset_ns: int, now_ns: int,
                           frame_period_ns: int) -> int:
    """Map a SensorTimestamp (BOOTTIME) to the monotonic clock. A result in the future or
    more than 2 s old means the stamp is on another clock: then the best we can say is
    "one frame period before it reached us"."""
    t_ns = sensor_ns - offset_ns
    if t_ns > now_ns or now_ns - t_ns > 2_000_000_000:
        return now_ns - frame_period_ns
    return t_ns


class PiCamera(ThreadedCamera):
    """A picamera2 camera (`config.Camera`: index, width, height, fps)."""

    def __init__(self, camera_id: str, *, index: int = 0, width: int = 1280, height: int = 720,
                 fps: float = 10, photos: bool = True):
        super().__init__(camera_id)
        self.index, self.width, self.height, self.fps = index, width, height, fps
        self.photos = photos
        self._cam = None
        self._offset_ns = 0
        self._offset_at_ns = 0
        self._lores_size = (LORES_WIDTH, (LORES_WIDTH * height // width) // 2 * 2)

    @classmethod
    def from_config(cls, camera) -> "PiCamera":
        return cls(camera.id, index=camera.index, width=camera.width, height=camera.height,
                   fps=camera.fps)

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraMissing(f"camera {self.camera_id!r}: picamera2 is not installed ({exc}); "
                                "on the Pi: sudo apt install python3-picamera2") from None
        try:
            found = Picamera2.global_camera_info()
        except Exception as exc:  # noqa: BLE001
            raise CameraMissing(f"camera {self.camera_id!r}: libcamera failed: {exc!r}") from None
        if self.index >= len(found):
            raise CameraMissing(f"camera {self.camera_id!r}: no camera at index {self.index} "
                                f"({len(found)} connected): check the ribbon cable")
        try:
            cam = Picamera2(self.index)
            streams = {"main": {"size": (self.width, self.height), "format": "YUV420"}}
            if self.photos:
                streams["lores"] = {"size": self._lores_size, "format": "YUV420"}
            period_us = int(1e6 / self.fps)
            config = cam.create_video_configuration(
                **streams, buffer_count=4,
                controls={"FrameDurationLimits": (period_us, period_us)})
            cam.configure(config)
            cam.start()
        except Exception as exc:  # noqa: BLE001 - libcamera raises many kinds
            raise CameraMissing(f"camera {self.camera_id!r}: cannot start: {exc!r}") from None
        self._cam = cam
        self._refresh_offset()

    def _refresh_offset(self) -> None:
        self._offset_ns = boottime_offset_ns()
        self._offset_at_ns = time.monotonic_ns()

    def _capture(self) -> Frame:
        import cv2

        cam = self._cam
        if cam is None:
            raise CameraError(f"camera {self.camera_id!r} is not open")
        try:
            request = cam.capture_request()
        except Exception as exc:  # noqa: BLE001
            raise CameraError(f"camera {self.camera_id!r}: capture failed: {exc!r}") from None
        try:
            now_ns = time.monotonic_ns()
            if now_ns - self._offset_at_ns > OFFSET_REFRESH_NS:
                self._refresh_offset()
            meta = request.get_metadata()
            sensor_ns = meta.get("SensorTimestamp")
            period_ns = int(1e9 / self.fps)
            t_ns = (sensor_to_monotonic_ns(int(sensor_ns), self._offset_ns, now_ns, period_ns)
                    if sensor_ns else now_ns - period_ns)
            # Copies: the buffers go back to libcamera on release().
            yuv = request.make_array("main")
            gray = yuv[:self.height, :self.width].copy()
            color = None
            if self.photos:
                lores = request.make_array("lores")
                lw, lh = self._lores_size
                if lores.shape[1] == lw:
                    color = cv2.cvtColor(lores[:lh * 3 // 2], cv2.COLOR_YUV2BGR_I420)
                else:  # padded rows: keep the grey plane rather than a garbled colour one
                    color = lores[:lh, :lw].copy()
        finally:
            request.release()
        return Frame(t_ns, gray, color)

    def _close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()
