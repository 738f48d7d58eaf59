"""The fake camera: renders AprilTag bibs on a track-like picture, and can fail on purpose.

Used by tests, benchmarks and `station run --simulate`, so the real detector and pipeline
run on frames that look like the track: a red track with lane lines, grass, runners' shirts
with a paper bib (tag 36h11 + number) on them, clutter that looks like tags (checkerboards,
black squares with random bits, stripes, text), and the camera's defects (motion blur, noise,
dim or bright light, JPEG). A *scene* is a callable `t_s -> [TagSpec | Figure, ...]`: a
TagSpec is a bibbed torso alone (detector tests and benchmarks), a Figure a whole runner (head,
arms, legs, a shirt of their own colour) with or without a bib, so the photo of a pass shows
who it was, even someone with no bib.

Failures to simulate (`FakeCamera.fail`): "missing" (start() raises CameraMissing),
"error" (capture raises CameraError), "hang" (capture blocks until `fail` changes).
"""

from __future__ import annotations

import functools
import math
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from station.sensors.frames import CameraError, CameraMissing, Frame, ThreadedCamera

DICTIONARY = cv2.aruco.DICT_APRILTAG_36h11
# A printed bib (see station/bibs.py): A4 paper 210 x 297 mm, a 160 mm black square 25 mm
# from the top and the sides. Used to draw the paper around a tag at the right proportions.
PAPER_W, PAPER_H, TAG_MM, MARGIN_MM = 210.0, 297.0, 160.0, 25.0


@dataclass(frozen=True)
class TagSpec:
    """One tag to draw. `px` is the side of its black square in pixels (what the detector
    reports); `angle_deg` turns it in the image plane; `tilt_deg` turns the runner's body
    away from the camera (the tag gets narrower and slightly keystoned)."""

    tag: int
    x: float
    y: float
    px: float
    angle_deg: float = 0.0
    tilt_deg: float = 0.0
    shirt_bgr: tuple[int, int, int] = (40, 40, 160)
    number: int | None = None  # printed under the tag; default tag // 2
    blur_px: float = 0.0       # motion blur of this runner (the background stays sharp)
    blur_deg: float = 0.0


@dataclass(frozen=True)
class Look:
    """The camera's defects for one frame."""

    blur_px: float = 0.0        # blur of the whole frame (camera shake), streak length
    blur_deg: float = 0.0       # its direction
    noise: float = 0.0          # sensor noise, grey-level sigma
    gain: float = 1.0           # <1 dim (dusk, shade), >1 bright (overexposed sun)
    jpeg: int | None = None     # JPEG quality, None for no compression
    clutter: int = 0            # how many tag-like distractors
    seed: int = 0


@dataclass(frozen=True)
class Figure:
    """A runner seen by the camera. (`x`, `y`) is the middle of the chest, where the bib's
    tag sits, in pixels; `px` the side a 15 cm tag would have there (it sets the figure's
    size: px / 0.15 pixels per metre). `tag` None: no bib (or a covered one). `facing`:
    True when the camera sees their front (the face, the front tag), False their back."""

    x: float
    y: float
    px: float
    shirt_bgr: tuple[int, int, int] = (40, 40, 160)
    tag: int | None = None
    facing: bool = True
    skin_bgr: tuple[int, int, int] = (120, 160, 205)
    hair_bgr: tuple[int, int, int] = (30, 40, 50)
    shorts_bgr: tuple[int, int, int] = (40, 35, 30)
    stride: float = 0.5   # 0..1, where the legs are in their swing


# Shirt, skin and hair colours given to simulated runners (BGR), picked by runner key.
SHIRTS = ((40, 40, 190), (170, 90, 30), (40, 150, 40), (30, 200, 230), (20, 120, 240),
          (140, 50, 120), (150, 150, 30), (225, 225, 225), (40, 40, 40), (200, 120, 200))
SKINS = ((120, 160, 205), (90, 130, 180), (60, 95, 140), (45, 65, 100), (150, 185, 225))
HAIRS = ((30, 40, 50), (20, 20, 25), (60, 110, 150), (40, 70, 110), (170, 170, 175))
TAG_SIDE_M = 0.15  # the world's printed tag side (station/sim/world.py)


def figure_for(key: str, x: float, y: float, px: float, tag: int | None, facing: bool,
               t_s: float = 0.0) -> Figure:
    """A Figure with colours that stay the same for one runner `key` in every frame."""
    h = zlib.crc32(key.encode())
    return Figure(x, y, px, SHIRTS[h % len(SHIRTS)], tag, facing,
                  SKINS[(h >> 8) % len(SKINS)], HAIRS[(h >> 16) % len(HAIRS)],
                  stride=(t_s * 1.4 + (h >> 24) / 256) % 1.0)


def draw_figure(frame: np.ndarray, fig: Figure, bib: bool = True) -> None:
    """Draw a runner (legs, torso, arms, head) in place, then (`bib`) their bib on the chest
    or the back. Flat polygons and lines clipped by OpenCV: well under a millisecond."""
    m = fig.px / TAG_SIDE_M  # pixels per metre at the runner's distance
    fh, fw = frame.shape[:2]
    if m <= 0 or fig.x + 0.6 * m < 0 or fig.x - 0.6 * m > fw or fig.y - 0.6 * m > fh \
            or fig.y + 1.4 * m < 0:
        return

    def pt(dx_m: float, dy_m: float) -> tuple[int, int]:
        # Metres from the chest point (y up) to pixels; 4 fractional bits for smooth edges.
        return (int(round((fig.x + dx_m * m) * 16)), int(round((fig.y - dy_m * m) * 16)))

    def poly(points, color) -> None:
        cv2.fillConvexPoly(frame, np.array([pt(*p) for p in points], np.int32), color,
                           cv2.LINE_AA, 4)

    def limb(a, b, width_m: float, color) -> None:
        cv2.line(frame, pt(*a), pt(*b), color, max(1, int(round(width_m * m))), cv2.LINE_AA, 4)

    # Legs, from the hips (0.32 m below the chest) to the ground (1.3 m below): a stride.
    swing = math.sin(2 * math.pi * fig.stride) * 0.16
    for side, phase in ((-1, 1), (1, -1)):
        hip, knee = (side * 0.09, -0.40), (side * 0.08 + phase * swing * 0.5, -0.82)
        foot = (side * 0.07 + phase * swing, -1.28 + max(0.0, phase * swing) * 0.4)
        limb(hip, knee, 0.13, fig.skin_bgr)
        limb(knee, foot, 0.10, fig.skin_bgr)
    poly([(-0.19, -0.30), (0.19, -0.30), (0.20, -0.48), (-0.20, -0.48)], fig.shorts_bgr)
    # Torso: shoulders 0.44 m wide narrowing to the hips, in the runner's shirt.
    poly([(-0.22, 0.20), (0.22, 0.20), (0.18, -0.32), (-0.18, -0.32)], fig.shirt_bgr)
    # Arms hang beside the torso (bent, swinging), never across the bib.
    for side, phase in ((-1, -1), (1, 1)):
        shoulder, elbow = (side * 0.23, 0.16), (side * 0.28 + phase * swing * 0.3, -0.12)
        hand = (side * 0.26 + phase * swing * 0.6, -0.30)
        limb(shoulder, elbow, 0.09, fig.shirt_bgr)
        limb(elbow, hand, 0.075, fig.skin_bgr)
    # Neck and head: a face from the front, hair from behind.
    limb((0, 0.20), (0, 0.28), 0.09, fig.skin_bgr)
    centre, axes = pt(0, 0.39), (int(0.095 * m * 16), int(0.12 * m * 16))
    cv2.ellipse(frame, centre, axes, 0, 0, 360, fig.skin_bgr if fig.facing else fig.hair_bgr,
                -1, cv2.LINE_AA, 4)
    if fig.facing:  # hair on top of the face
        cv2.ellipse(frame, centre, axes, 0, 180, 360, fig.hair_bgr, -1, cv2.LINE_AA, 4)
    if bib and fig.tag is not None:
        draw_tag(frame, _bib_of(fig))


def _bib_of(fig: Figure) -> TagSpec:
    return TagSpec(fig.tag, fig.x, fig.y, fig.px, shirt_bgr=fig.shirt_bgr)


@functools.lru_cache(maxsize=8)
def _marker(tag: int, cell: int) -> np.ndarray:
    dictionary = cv2.aruco.getPredefinedDictionary(DICTIONARY)
    return cv2.aruco.generateImageMarker(dictionary, tag, 8 * cell, borderBits=1)


@functools.lru_cache(maxsize=4)
def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A track seen from beside it: sky, grass, red track with white lane lines."""
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.uint8)
    horizon = int(height * 0.25)
    img[:horizon] = (210, 190, 160)  # pale sky (BGR)
    img[horizon:int(height * 0.4)] = (60, 130, 70)  # grass
    img[int(height * 0.4):] = (60, 70, 170)  # red tartan
    # Lane lines converge to a vanishing point, as seen from the finish line.
    vx, vy = width * 0.8, horizon
    for k in range(-6, 10):
        x0 = width * (0.1 * k)
        cv2.line(img, (int(x0), height), (int(vx), int(vy) + int(height * 0.15)),
                 (235, 235, 235), max(1, width // 400), cv2.LINE_AA)
    # Surface texture (tartan grain, grass): spatially smooth, unlike sensor noise.
    texture = cv2.GaussianBlur(rng.normal(0, 12, (height, width)).astype(np.float32), (0, 0), 1.5)
    return np.clip(img + texture[:, :, None], 0, 255).astype(np.uint8)


def _bib_image(spec: TagSpec) -> tuple[np.ndarray, np.ndarray, tuple[float, float], int]:
    """The paper bib (BGR) on a shirt, its opacity mask, the tag centre and its side."""
    # Small tags: draw at about twice the final size, then resize with INTER_AREA (no
    # aliasing). Big ones (a runner close to the lens) need no more pixels than they get:
    # drawing those twice as large made one frame cost tens of milliseconds.
    cell = max(2, int(math.ceil(spec.px / 8 * (2 if spec.px < 96 else 1))))
    mm = 8 * cell / TAG_MM
    shirt_w, shirt_h = int(PAPER_W * 1.8 * mm), int(PAPER_H * 1.35 * mm)
    img = np.empty((shirt_h, shirt_w, 3), np.uint8)
    img[:] = spec.shirt_bgr
    px0, py0 = int((shirt_w - PAPER_W * mm) / 2), int(PAPER_H * 0.1 * mm)
    img[py0:py0 + int(PAPER_H * mm), px0:px0 + int(PAPER_W * mm)] = (245, 245, 245)
    marker = _marker(spec.tag, cell)
    tx, ty = px0 + int(MARGIN_MM * mm), py0 + int(MARGIN_MM * mm)
    img[ty:ty + marker.shape[0], tx:tx + marker.shape[1]] = marker[:, :, None]
    number = str(spec.tag // 2 if spec.number is None else spec.number)
    scale = 60 * mm / 22
    cv2.putText(img, number, (tx, ty + marker.shape[0] + int(70 * mm)), cv2.FONT_HERSHEY_SIMPLEX,
                scale, (20, 20, 20), max(1, int(scale * 2)), cv2.LINE_AA)
    mask = np.full(img.shape[:2], 255, np.uint8)
    # The shirt's outline is rounded at the shoulders, not a perfect rectangle.
    r = shirt_w // 5
    cv2.circle(mask, (0, 0), r, 0, -1)
    cv2.circle(mask, (shirt_w, 0), r, 0, -1)
    centre = (tx + marker.shape[1] / 2, ty + marker.shape[0] / 2)
    return img, mask, centre, 8 * cell


def draw_tag(frame: np.ndarray, spec: TagSpec) -> None:
    """Draw one bibbed runner's torso onto `frame` (BGR, in place)."""
    img, mask, (cx, cy), side = _bib_image(spec)
    # Resize so the black square is `px` wide (area filter: a real lens averages too).
    k = spec.px / side
    # (Near 1:1 the area filter is no better than bilinear, and several times slower.)
    how = cv2.INTER_AREA if k < 0.7 else cv2.INTER_LINEAR
    small = cv2.resize(img, None, fx=k, fy=k, interpolation=how)
    small_mask = cv2.resize(mask, (small.shape[1], small.shape[0]), interpolation=how)
    cx, cy = cx * small.shape[1] / img.shape[1], cy * small.shape[0] / img.shape[0]
    h, w = small.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]]) - np.float32([cx, cy])
    # Body turned by tilt: narrower, and the far side a little shorter (perspective).
    c = math.cos(math.radians(spec.tilt_deg))
    s = math.sin(math.radians(spec.tilt_deg))
    dst = src.copy()
    dst[:, 0] *= c
    dst[:, 1] *= 1 - 0.08 * s * np.sign(dst[:, 0]) * np.abs(dst[:, 0]) / (w / 2)
    a = math.radians(spec.angle_deg)
    rot = np.float32([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    dst = dst @ rot.T + np.float32([spec.x, spec.y])
    x0, y0 = np.floor(dst.min(axis=0)).astype(int)
    x1, y1 = np.ceil(dst.max(axis=0)).astype(int)
    fh, fw = frame.shape[:2]
    bx0, by0, bx1, by1 = max(0, x0), max(0, y0), min(fw, x1), min(fh, y1)
    if bx0 >= bx1 or by0 >= by1:
        return
    homography = cv2.getPerspectiveTransform(np.float32(src + np.float32([cx, cy])),
                                             np.float32(dst - np.float32([bx0, by0])))
    size = (bx1 - bx0, by1 - by0)
    warped = cv2.warpPerspective(small, homography, size, flags=cv2.INTER_LINEAR)
    alpha = cv2.warpPerspective(small_mask, homography, size, flags=cv2.INTER_LINEAR)
    if spec.blur_px >= 1.0:
        kernel = motion_kernel(spec.blur_px, spec.blur_deg)
        warped = cv2.filter2D(warped, -1, kernel)
        alpha = cv2.filter2D(alpha, -1, kernel)
    roi = frame[by0:by1, bx0:bx1]
    if spec.blur_px >= 1.0:  # a streaked outline: blend
        alpha = (alpha.astype(np.float32) / 255)[:, :, None]
        roi[:] = (warped * alpha + roi * (1 - alpha)).astype(np.uint8)
    else:  # the shirt's outline only (the tag's own edges are inside `warped`): copy
        cv2.copyTo(warped, cv2.threshold(alpha, 127, 255, cv2.THRESH_BINARY)[1], roi)


def motion_kernel(length_px: float, angle_deg: float) -> np.ndarray:
    """A line kernel `length_px` long: the streak of a moving subject in one exposure."""
    n = max(3, int(math.ceil(length_px)) | 1)
    kernel = np.zeros((n, n), np.float32)
    c = (n - 1) / 2
    half = length_px / 2
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    for k in np.linspace(-half, half, 4 * n):
        kernel[int(round(c + k * dy)), int(round(c + k * dx))] += 1
    return kernel / kernel.sum()


def draw_clutter(frame: np.ndarray, count: int, rng: np.random.Generator) -> None:
    """Things at a track that look a little like tags: they must never be read as tags."""
    fh, fw = frame.shape[:2]
    for _ in range(count):
        size = int(rng.uniform(16, 90))
        x, y = int(rng.uniform(0, fw - size)), int(rng.uniform(fh * 0.2, fh - size))
        kind = rng.integers(0, 5)
        patch = np.full((size, size), 240, np.uint8)
        if kind == 0:  # black square with random bits: the closest thing to a wrong tag
            bits = rng.integers(0, 2, (6, 6)).astype(np.uint8) * 255
            code = np.zeros((8, 8), np.uint8)
            code[1:7, 1:7] = bits
            inner = cv2.resize(code, (size * 8 // 10, size * 8 // 10), interpolation=cv2.INTER_NEAREST)
            o = (size - inner.shape[0]) // 2
            patch[o:o + inner.shape[0], o:o + inner.shape[1]] = inner
        elif kind == 1:  # checkerboard (calibration board, chequered flag)
            n = int(rng.integers(3, 8))
            cells = (np.indices((n, n)).sum(axis=0) % 2 * 255).astype(np.uint8)
            patch = cv2.resize(cells, (size, size), interpolation=cv2.INTER_NEAREST)
        elif kind == 2:  # plain black square (a bag, a sign)
            o = size // 8
            patch[o:-o, o:-o] = 15
        elif kind == 3:  # stripes (a barcode, a fence)
            for i in range(0, size, max(2, size // 10)):
                patch[:, i:i + max(1, size // 20)] = 20
        else:  # printed text (sponsor logos, numbers)
            cv2.putText(patch, str(int(rng.integers(0, 999))), (1, size * 2 // 3),
                        cv2.FONT_HERSHEY_SIMPLEX, size / 40, 10, max(1, size // 15))
        angle = rng.uniform(-45, 45)
        m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
        patch = cv2.warpAffine(patch, m, (size, size), borderValue=240)
        frame[y:y + size, x:x + size] = patch[:, :, None]


def render(tags: Sequence[TagSpec | Figure], width: int = 1280, height: int = 720,
           look: Look = Look(), bg_seed: int = 0) -> np.ndarray:
    """One BGR frame with the given tags and figures drawn on the track (in the order
    given: far ones first), with the look's defects."""
    frame = background(width, height, bg_seed).copy()
    rng = np.random.default_rng(look.seed)
    if look.clutter:
        draw_clutter(frame, look.clutter, rng)
    # Bodies first, then every bib over them: the simulated world decides which tags a
    # camera sees and does not model one runner hiding another (its truth counts those
    # tags as seen), so a nearer runner's legs or arms must not hide a bib behind them.
    for spec in tags:
        if isinstance(spec, Figure):
            draw_figure(frame, spec, bib=False)
    for spec in tags:
        if isinstance(spec, Figure):
            if spec.tag is not None:
                draw_tag(frame, _bib_of(spec))
        else:
            draw_tag(frame, spec)
    if look.blur_px >= 1.0:  # the whole picture: camera shake on a windy pole
        frame = cv2.filter2D(frame, -1, motion_kernel(look.blur_px, look.blur_deg))
    if look.gain != 1.0 or look.noise:
        out = frame.astype(np.float32) * look.gain
        if look.noise:
            out += rng.normal(0, look.noise, frame.shape[:2])[:, :, None]
        frame = np.clip(out, 0, 255).astype(np.uint8)
    if look.jpeg:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(look.jpeg)])
        frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return frame


Scene = Callable[[float], Sequence[TagSpec | Figure]]


class FakeCamera(ThreadedCamera):
    """A camera that renders `scene(t_s)` at `fps`, stamped on the monotonic clock.

    `t_s` is `scene_time(t_ns)`: by default seconds since start(); the simulation passes its
    own mapping (session clock x speed). `fps=None` renders as fast as it can (tests).
    """

    def __init__(self, camera_id: str, scene: Scene, *, width: int = 1280, height: int = 720,
                 fps: float | None = 10, look: Look = Look(),
                 scene_time: Callable[[int], float] | None = None, fail: str | None = None):
        super().__init__(camera_id)
        self.scene, self.width, self.height, self.fps, self.look = scene, width, height, fps, look
        self.scene_time = scene_time
        self.fail = fail
        self.frames_rendered = 0
        self._t0_ns = 0
        self._next_ns = 0
        self._released = threading.Event()

    def set_fail(self, fail: str | None) -> None:
        """Change the simulated failure; releases a capture stuck in "hang"."""
        self.fail = fail
        if fail != "hang":
            self._released.set()

    def _open(self) -> None:
        if self.fail == "missing":
            raise CameraMissing(f"camera {self.camera_id!r}: no camera connected (simulated)")
        self._t0_ns = self._next_ns = time.monotonic_ns()

    def _capture(self) -> Frame:
        if self.fail == "error":
            raise CameraError(f"camera {self.camera_id!r}: capture failed (simulated)")
        if self.fail == "hang":
            self._released.clear()
            while self.fail == "hang" and not self._superseded():
                self._released.wait(0.05)
            return None
        if self.fps:
            # Paced like a sensor: one frame every 1/fps, skipping frames if we fell behind.
            period_ns = int(1e9 / self.fps)
            now = time.monotonic_ns()
            if self._next_ns > now and self._stop.wait((self._next_ns - now) / 1e9):
                return None
            self._next_ns = max(self._next_ns + period_ns, time.monotonic_ns())
        t_ns = time.monotonic_ns()
        t_s = self.scene_time(t_ns) if self.scene_time else (t_ns - self._t0_ns) / 1e9
        color = render(self.scene(t_s), self.width, self.height, self.look)
        self.frames_rendered += 1
        return Frame(t_ns, cv2.cvtColor(color, cv2.COLOR_BGR2GRAY), color)


def world_scene(world, camera_id: str, width: int = 1280, height: int = 720,
                people: bool = True) -> Scene:
    """Adapt the simulated world (station/sim) to a scene: `world.visible_tags(camera_id, t_s)`
    gives the tags in view; anything with tag/x/y/px (attributes or dict keys) is drawn.
    With `people`, a sighting of a runner (one with a `runner` key) is drawn as their whole
    Figure, the tag on the chest or the back, and runners in view without a readable bib
    (none worn, or covered) are drawn too, from `world.view` (the same geometry)."""

    def get(item, name, default=None):
        if isinstance(item, dict):
            return item.get(name, default)
        return getattr(item, name, default)

    def pixels(x, y):
        # The world may give positions as fractions of the frame.
        if 0 <= x <= 1 and 0 <= y <= 1:
            return x * width, y * height
        return x, y

    def scene(t_s: float) -> list[TagSpec | Figure]:
        out: list[TagSpec | Figure] = []
        seen: set[str] = set()
        for item in world.visible_tags(camera_id, t_s):
            if isinstance(item, (TagSpec, Figure)):
                out.append(item)
                continue
            x, y = get(item, "x"), get(item, "y")
            if x is None or y is None:
                continue
            x, y = pixels(x, y)
            tag, px, key = int(get(item, "tag")), float(get(item, "px", 40)), get(item, "runner")
            if people and key is not None:
                # An even tag is the front one: the camera sees the runner's front.
                out.append(figure_for(str(key), x, y, px, tag, tag % 2 == 0, t_s))
                seen.add(str(key))
            else:
                out.append(TagSpec(tag, x, y, px, float(get(item, "angle_deg", 0.0)),
                                   float(get(item, "tilt_deg", 0.0))))
        if people and hasattr(world, "view"):
            out.extend(_unread_people(world, camera_id, t_s, seen, pixels))
        # Far runners first, so nearer ones are drawn over them, as a lens would see it.
        out.sort(key=lambda s: s.px)
        return out

    return scene


def _unread_people(world, camera_id: str, t_s: float, seen: set[str], pixels) -> list[Figure]:
    """Figures of the runners in view whose bib the camera cannot read (none, or covered)."""
    out = []
    for r in getattr(world, "runners", ()):
        if r.key in seen:
            continue
        for stint in r.stints:
            if not stint.t0 <= t_s <= stint.t1:
                continue
            vis, front, _, _, px, u, v = world.view(camera_id, r, stint, np.array([t_s]))
            if vis[0]:
                x, y = pixels(float(u[0]), float(v[0]))
                out.append(figure_for(r.key, x, y, float(px[0]), None, bool(front[0]), t_s))
    return out
