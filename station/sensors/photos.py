"""A photo of every pass: the camera's frame that shows the passing runner, kept as a small JPEG.

The camera pipelines `add()` every frame to a short ring per camera. A pass is decided a few
seconds after the crossing, so the ring must cover those seconds at the full frame rate; it
holds each frame already shrunk to `width_px` and JPEG-encoded (~25 KB instead of ~390 KB of
480-px BGR), capped by age (`ring_s`), count (`ring_frames`) and bytes (`ring_mb`). Encoding
happens once, on the camera's thread; keeping a photo is then only a file write, so the
worker thread never encodes.

When the worker learns of a new pass it calls `on_pass(pass, t_ns)`; the keeper picks the
frame of that gate's cameras nearest the moment they see the passing runner best and writes
it to `<folder>/<session>/<gate>_<t_s:.3f>.jpg` (`session`: the session id the keeper is told
of, so a new session never overwrites an old one's photo at the same gate and time). The
dashboard finds it from the pass alone (`photo(gate, t_s)`, the current session by default),
so no database link is needed.

That moment is not always the pass itself: a camera that faces oncoming runners from the
finish line has the runner beside its lens at the crossing, out of the picture. The runner
fills the frame a few metres before (`PHOTO_AT_M`), so `from_config` gives each camera a lead:
for a camera standing `d` metres from its gate, `(PHOTO_AT_M - d) / RUNNER_MPS` seconds before
the pass (oncoming) or after it (departing), none when `d >= PHOTO_AT_M`.

Retention: at most `max_files` photos and `max_mb` megabytes over all sessions, oldest
deleted first, and nothing is written while the card has less than `min_free_mb` free: the
SD card never fills because of photos.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import cv2

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
PHOTO_AT_M = 6.0   # a runner this far from the lens: head to knees in the picture
RUNNER_MPS = 4.0   # a steady runner's speed, to turn that distance into a lead


def photo_name(gate: str, t_s: float) -> str:
    return f"{_UNSAFE.sub('_', gate)}_{t_s:.3f}.jpg"


def shrink(image, width_px: int):
    """`image` at most `width_px` wide. Halvings first (INTER_AREA at exactly 2x is several
    times cheaper than at 2.67x), then one area resize: ~1.3 ms for a 720p frame, not ~3.5."""
    h, w = image.shape[:2]
    while w >= 2 * width_px:
        w, h = w // 2, h // 2
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    if w > width_px:
        image = cv2.resize(image, (width_px, max(1, round(h * width_px / w))),
                           interpolation=cv2.INTER_AREA)
    return image


def photo_leads_s(config) -> dict[str, float]:
    """camera id -> seconds from a pass to that camera's best view of the runner."""
    leads = {}
    for cam in config.cameras:
        gate_m = config.gate(cam.gate).position_m
        a, b = cam.covers_m
        if cam.looks == "oncoming":  # stands at b, the runner comes towards it
            away_m = (b - gate_m) % config.length_m
        else:  # stands at a, the runner goes away from it
            away_m = (gate_m - a) % config.length_m
        lead = max(0.0, PHOTO_AT_M - away_m) / RUNNER_MPS
        leads[cam.id] = -lead if cam.looks == "oncoming" else lead
    return leads


class PhotoKeeper:
    """`session`: a callable giving the current session id (or a fixed id); None keeps the
    photos directly in `folder`. `lead_s`: camera id -> seconds of session time from the
    pass to the frame to keep (negative: before); `speed`: session seconds per monotonic
    second (1 on a Pi; the simulation's --speed)."""

    def __init__(self, folder: str | Path, cameras_by_gate: dict[str, list[str]] | None = None, *,
                 session: Callable[[], object] | object | None = None,
                 lead_s: dict[str, float] | None = None, speed: float = 1.0,
                 ring_s: float = 6.0, ring_frames: int = 240, ring_mb: float = 8.0,
                 max_gap_s: float = 1.0, min_step_s: float = 0.2, width_px: int = 480,
                 jpeg_quality: int = 80,
                 max_files: int = 2000, max_mb: float = 200, min_free_mb: float = 256):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        # None: any camera's frame will do (one gate, or cameras not told apart).
        self.cameras_by_gate = (None if cameras_by_gate is None
                                else {g: list(c) for g, c in cameras_by_gate.items()})
        self._session = session
        self.lead_ns = {cam: int(lead / speed * 1e9) for cam, lead in (lead_s or {}).items()}
        self.ring_ns = int(ring_s * 1e9)
        self.ring_frames, self.ring_bytes = ring_frames, int(ring_mb * 1e6)
        self.max_gap_ns = int(max_gap_s * 1e9)
        # A photo of a pass needs a frame every fifth of a second, not every frame: frames
        # closer than this to the last one kept are not shrunk and encoded (the camera
        # thread's time belongs to tag detection).
        self.min_step_ns = int(min_step_s / speed * 1e9)
        self.width_px, self.jpeg_quality = width_px, jpeg_quality
        self.max_files, self.max_bytes = max_files, int(max_mb * 1e6)
        self.min_free_bytes = int(min_free_mb * 1e6)
        self._rings: dict[str, deque[tuple[int, bytes]]] = {}
        self._ring_size: dict[str, int] = {}
        self._lock = threading.Lock()         # the rings and the pending passes
        self._files_lock = threading.Lock()   # the photos on the card
        # Passes whose best frame is still to come: (gate, t_s, t_ns, session); a camera
        # that died leaves them here, so only the newest few are kept.
        self._pending: deque[tuple[str, float, int, object]] = deque(maxlen=32)
        # The photos already on the card (oldest first), so retention survives a restart;
        # `*.jpg` at the top are from before photos were kept per session.
        kept = [*self.folder.glob("*.jpg"), *self.folder.glob("*/*.jpg")]
        kept.sort(key=lambda p: p.stat().st_mtime)
        self._kept: deque[tuple[Path, int]] = deque((p, p.stat().st_size) for p in kept)
        self._bytes = sum(size for _, size in self._kept)
        self.skipped_low_disk = 0

    @classmethod
    def from_config(cls, folder, config, **kwargs) -> "PhotoKeeper":
        by_gate: dict[str, list[str]] = {}
        for cam in config.cameras:
            by_gate.setdefault(cam.gate, []).append(cam.id)
        kwargs.setdefault("lead_s", photo_leads_s(config))
        return cls(folder, by_gate, **kwargs)

    # -- frames in (camera pipeline threads) ---------------------------------------------
    def add(self, camera_id: str, frame) -> None:
        ring = self._rings.get(camera_id)
        jpeg = None
        if not ring or frame.t_ns - ring[-1][0] >= self.min_step_ns:
            image = frame.color if frame.color is not None else frame.gray
            ok, buf = cv2.imencode(".jpg", shrink(image, self.width_px),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            jpeg = buf.tobytes() if ok else None
        with self._lock:
            if jpeg is not None:
                ring = self._rings.setdefault(camera_id, deque())
                size = self._ring_size.get(camera_id, 0) + len(jpeg)
                ring.append((frame.t_ns, jpeg))
                while ring and (frame.t_ns - ring[0][0] > self.ring_ns
                                or len(ring) > self.ring_frames or size > self.ring_bytes):
                    size -= len(ring.popleft()[1])
                self._ring_size[camera_id] = size
            # Due once its frames are in, or (a camera that stopped) when it is too late.
            late_ns = max(self.lead_ns.values(), default=0) + 2 * self.max_gap_ns
            due = [w for w in self._pending
                   if not self._waiting(w[0], w[2]) or frame.t_ns > w[2] + late_ns]
            for w in due:
                self._pending.remove(w)
        for gate, t_s, t_ns, session in due:
            self._keep(gate, t_s, t_ns, session)

    def _cams(self, gate: str):
        return list(self._rings) if self.cameras_by_gate is None else self.cameras_by_gate.get(gate, ())

    def nearest(self, gate: str, t_ns: int, lead: bool = False) -> tuple[int, bytes] | None:
        """(t_ns, JPEG bytes) of the gate's cameras' frame nearest `t_ns` (with `lead`: each
        camera's best view of a pass at `t_ns`), or None."""
        best = None
        with self._lock:
            for cam in self._cams(gate):
                want_ns = t_ns + (self.lead_ns.get(cam, 0) if lead else 0)
                for ft, jpeg in self._rings.get(cam, ()):
                    gap = abs(ft - want_ns)
                    if gap <= self.max_gap_ns and (best is None or gap < best[0]):
                        best = (gap, ft, jpeg)
        return None if best is None else best[1:]

    def snapshot(self, gate: str) -> bytes | None:
        """The gate's cameras' newest frame (JPEG), if it is under `max_gap_s` old: the live
        snapshot on the health page (a stalled camera shows none, not an old picture)."""
        found = self.nearest(gate, time.monotonic_ns())
        return None if found is None else found[1]

    @property
    def ring_stats(self) -> dict[str, tuple[int, int]]:
        """camera id -> (frames, bytes) held in its ring (for benchmarks and health)."""
        with self._lock:
            return {c: (len(r), self._ring_size.get(c, 0)) for c, r in self._rings.items()}

    # -- passes in (the worker) ----------------------------------------------------------
    @property
    def session(self) -> str | None:
        s = self._session() if callable(self._session) else self._session
        return None if s is None else _UNSAFE.sub("_", str(s))

    def _dir(self, session=None) -> Path:
        s = self.session if session is None else _UNSAFE.sub("_", str(session))
        return self.folder if s is None else self.folder / s

    def on_pass(self, p, t_ns: int) -> Path | None:
        """Keep the photo of pass `p` (with `.gate` and `.t_s`) made at monotonic `t_ns`.

        A camera that sees the runner best after the pass (departing) may not have that
        frame yet: the photo is then kept from `add()` once it arrives, and None returned."""
        session = self.session
        with self._lock:
            if self._waiting(p.gate, t_ns):
                self._pending.append((p.gate, p.t_s, t_ns, session))
                return None
        return self._keep(p.gate, p.t_s, t_ns, session)

    def _waiting(self, gate: str, t_ns: int) -> bool:
        """(Under the lock.) A camera of the gate has yet to deliver the frame it would
        show the pass in."""
        for cam in self._cams(gate):
            lead_ns, ring = self.lead_ns.get(cam, 0), self._rings.get(cam)
            if lead_ns > 0 and ring and ring[-1][0] < t_ns + lead_ns:
                return True
        return False

    def _keep(self, gate: str, t_s: float, t_ns: int, session) -> Path | None:
        found = self.nearest(gate, t_ns, lead=True)
        if found is None:
            return None
        data = found[1]
        with self._files_lock:
            if not self._room_for(len(data)):
                self.skipped_low_disk += 1
                log.warning("photos: disk nearly full, photo of %s at %.3f not kept", gate, t_s)
                return None
            folder = self._dir(session)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / photo_name(gate, t_s)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)  # a power cut leaves the old photo or the new one, never half
            self._kept.append((path, len(data)))
            self._bytes += len(data)
            self._prune()
        return path

    def path_for(self, gate: str, t_s: float | str, session=None) -> Path | None:
        """The photo of the pass at (gate, t_s) of `session` (default: the current one)."""
        try:
            path = self._dir(session) / photo_name(gate, float(t_s))
        except ValueError:
            return None
        return path if path.is_file() else None

    def photo(self, gate: str, t_s: float | str, session=None) -> bytes | None:
        """The JPEG of the pass at (gate, t_s), for the dashboard's photo hook."""
        path = self.path_for(gate, t_s, session)
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
        if path.parent != self.folder:
            try:
                path.parent.rmdir()  # an old session's folder, once its last photo is gone
            except OSError:
                pass
        return size

    @property
    def count(self) -> int:
        return len(self._kept)

    @property
    def bytes(self) -> int:
        return self._bytes
