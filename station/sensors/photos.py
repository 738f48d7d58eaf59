"""A photo of every pass: the frame nearest the pass time, kept as a small JPEG.

The camera pipelines `add()` every frame to a short ring buffer per camera (a few seconds,
already shrunk to `width_px`, so it costs ~20 MB at most). When the worker learns of a new
pass it calls `on_pass(pass, t_ns)`; the keeper picks the frame of that gate's cameras
nearest in time and writes `<folder>/<gate>_<t_s:.3f>.jpg`, the name the dashboard derives
from the pass (`path_for(gate, t_s)`), so no database link is needed.

Retention: at most `max_files` photos and `max_mb` megabytes, oldest deleted first, and
nothing is written while the card has less than `min_free_mb` free: the SD card never fills
because of photos.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections import deque
from pathlib import Path

import cv2

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def photo_name(gate: str, t_s: float) -> str:
    return f"{_UNSAFE.sub('_', gate)}_{t_s:.3f}.jpg"


class PhotoKeeper:
    def __init__(self, folder: str | Path, cameras_by_gate: dict[str, list[str]] | None = None, *,
                 ring_s: float = 5.0, max_gap_s: float = 1.0, width_px: int = 480,
                 jpeg_quality: int = 80, max_files: int = 2000, max_mb: float = 200,
                 min_free_mb: float = 256):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        # None: any camera's frame will do (one gate, or cameras not told apart).
        self.cameras_by_gate = (None if cameras_by_gate is None
                                else {g: list(c) for g, c in cameras_by_gate.items()})
        self.ring_ns = int(ring_s * 1e9)
        self.max_gap_ns = int(max_gap_s * 1e9)
        self.width_px, self.jpeg_quality = width_px, jpeg_quality
        self.max_files, self.max_bytes = max_files, int(max_mb * 1e6)
        self.min_free_bytes = int(min_free_mb * 1e6)
        self._rings: dict[str, deque] = {}
        self._lock = threading.Lock()
        # The photos already on the card (oldest first), so retention survives a restart.
        kept = sorted(self.folder.glob("*.jpg"), key=lambda p: p.stat().st_mtime)
        self._kept: deque[tuple[Path, int]] = deque((p, p.stat().st_size) for p in kept)
        self._bytes = sum(size for _, size in self._kept)
        self.skipped_low_disk = 0

    @classmethod
    def from_config(cls, folder, config, **kwargs) -> "PhotoKeeper":
        by_gate: dict[str, list[str]] = {}
        for cam in config.cameras:
            by_gate.setdefault(cam.gate, []).append(cam.id)
        return cls(folder, by_gate, **kwargs)

    # -- frames in (camera pipeline threads) ---------------------------------------------
    def add(self, camera_id: str, frame) -> None:
        image = frame.color if frame.color is not None else frame.gray
        h, w = image.shape[:2]
        if w > self.width_px:
            image = cv2.resize(image, (self.width_px, round(h * self.width_px / w)),
                               interpolation=cv2.INTER_AREA)
        with self._lock:
            ring = self._rings.setdefault(camera_id, deque(maxlen=200))
            ring.append((frame.t_ns, image))
            while ring and frame.t_ns - ring[0][0] > self.ring_ns:
                ring.popleft()

    def nearest(self, gate: str, t_ns: int):
        """(t_ns, image) of the gate's cameras' frame nearest `t_ns`, or None."""
        best = None
        with self._lock:
            cams = self._rings if self.cameras_by_gate is None else self.cameras_by_gate.get(gate, ())
            for cam in cams:
                for ft, image in self._rings.get(cam, ()):
                    gap = abs(ft - t_ns)
                    if gap <= self.max_gap_ns and (best is None or gap < best[0]):
                        best = (gap, ft, image)
        return None if best is None else best[1:]

    # -- passes in (the worker) ----------------------------------------------------------
    def on_pass(self, p, t_ns: int) -> Path | None:
        """Keep the photo of pass `p` (with `.gate` and `.t_s`) made at monotonic `t_ns`."""
        found = self.nearest(p.gate, t_ns)
        if found is None:
            return None
        path = self.folder / photo_name(p.gate, p.t_s)
        ok, buf = cv2.imencode(".jpg", found[1], [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            return None
        data = buf.tobytes()
        if not self._room_for(len(data)):
            self.skipped_low_disk += 1
            log.warning("photos: disk nearly full, photo of %s at %.3f not kept", p.gate, p.t_s)
            return None
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # a power cut leaves the old photo or the new one, never half
        self._kept.append((path, len(data)))
        self._bytes += len(data)
        self._prune()
        return path

    def path_for(self, gate: str, t_s: float | str) -> Path | None:
        try:
            path = self.folder / photo_name(gate, float(t_s))
        except ValueError:
            return None
        return path if path.is_file() else None

    def photo(self, gate: str, t_s: float | str) -> bytes | None:
        """The JPEG of the pass at (gate, t_s), for the dashboard's photo hook."""
        path = self.path_for(gate, t_s)
        try:
            return path.read_bytes() if path is not None else None
        except OSError:
            return None

    # -- retention -----------------------------------------------------------------------
    def _room_for(self, size: int) -> bool:
        try:
            free = shutil.disk_usage(self.folder).free
        except OSError:
            return False
        while free - size < self.min_free_bytes and self._kept:
            free += self._drop_oldest()
        return free - size >= self.min_free_bytes

    def _prune(self) -> None:
        while self._kept and (len(self._kept) > self.max_files or self._bytes > self.max_bytes):
            self._drop_oldest()

    def _drop_oldest(self) -> int:
        path, size = self._kept.popleft()
        self._bytes -= size
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        return size

    @property
    def count(self) -> int:
        return len(self._kept)

    @property
    def bytes(self) -> int:
        return self._bytes
