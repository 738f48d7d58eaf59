"""What every camera hands the station: stamped frames from a capture thread.

A camera adapter (the real picamera2 one in `camera.py`, the fake one in `fakecam.py`) only
implements `_open()`, `_capture()` and `_close()`. This base class runs `_capture()` in its
own thread and keeps the newest frame in a one-slot mailbox, so a slow detector never makes
the camera queue up stale frames, and a camera that hangs inside its driver cannot hang the
reader: `read(timeout_s)` returns None instead and the pipeline reports the stall.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np


class CameraError(RuntimeError):
    """The camera failed while running (driver error, lost connection)."""


class CameraMissing(CameraError):
    """The camera is not there at start-up (not connected, wrong index, library absent)."""


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    `t_ns` is the moment the sensor exposed it, on the `time.monotonic_ns()` clock (the same
    clock the beam callbacks stamp), so tag reads and beam edges can be compared directly.
    `gray` is what the tag detector reads; `color` (BGR, may be smaller) is for photos.
    """

    t_ns: int
    gray: np.ndarray
    color: np.ndarray | None = None
    seq: int = 0


class ThreadedCamera:
    """Base of camera adapters: a capture thread feeding a newest-frame mailbox."""

    def __init__(self, camera_id: str):
        self.camera_id = camera_id
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._error: BaseException | None = None
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- to implement -------------------------------------------------------------------
    def _open(self) -> None:
        """Acquire the device; raise CameraMissing if it is not there."""

    def _capture(self) -> Frame:
        """Block until the next frame and return it; raise CameraError on failure."""
        raise NotImplementedError

    def _close(self) -> None:
        """Release the device (called from stop(), also after an error)."""

    # -- public -------------------------------------------------------------------------
    def start(self) -> None:
        """Open the camera and start capturing. Raises CameraMissing if it is not there."""
        self._stop = threading.Event()  # a fresh one: an old, stuck thread keeps its own
        with self._cond:
            self._frame, self._error = None, None
        self._open()
        self._thread = threading.Thread(target=self._loop, args=(self._stop,),
                                        name=f"capture-{self.camera_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        with self._cond:
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            # A capture stuck in a hung driver is a daemon thread: we do not wait for it forever.
            thread.join(timeout_s)
        try:
            self._close()
        except Exception:  # noqa: BLE001 - closing a broken camera must not raise again
            pass

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def read(self, timeout_s: float) -> Frame | None:
        """The next frame newer than the last one read, or None after `timeout_s`.

        Raises the CameraError that stopped the capture thread, once.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._frame is None and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(left)
            if self._error is not None:
                error, self._error = self._error, None
                raise error if isinstance(error, CameraError) else CameraError(str(error))
            frame, self._frame = self._frame, None
            return frame

    def _superseded(self) -> bool:
        """True in a capture thread that stop() has let go of (it may be stuck in a driver
        and come back much later: it must then leave without touching anything)."""
        return self._thread is not threading.current_thread()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                frame = self._capture()
            except BaseException as exc:  # noqa: BLE001 - handed to the reader, who reports it
                if stop.is_set():
                    return
                with self._cond:
                    self._error = exc if isinstance(exc, CameraError) else CameraError(
                        f"{type(exc).__name__}: {exc}")
                    self._cond.notify_all()
                return
            if frame is None or stop.is_set():
                continue
            with self._cond:
                self._seq += 1
                if frame.seq == 0:
                    frame = Frame(frame.t_ns, frame.gray, frame.color, self._seq)
                self._frame = frame
                self._cond.notify_all()
