"""Pass photos: the frame that shows the pass best is kept as a small JPEG named by gate and
time, in the session's own folder; the ring of recent frames is small JPEGs, capped; the
folder never grows past its limits."""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from station.sensors.frames import Frame
from station.sensors.photos import PhotoKeeper

S = 1_000_000_000


@dataclass(frozen=True)
class Pass:
    gate: str
    t_s: float


def frame(t_ns: int, level: int, width: int = 1280) -> Frame:
    """A uniform frame whose grey level identifies it in the saved JPEG."""
    color = np.full((width * 9 // 16, width, 3), level, np.uint8)
    return Frame(t_ns, color[:, :, 0].copy(), color)


def level_of(path) -> float:
    return float(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).mean())


def level_of_jpeg(jpeg: bytes) -> float:
    return float(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE).mean())


def test_the_frame_nearest_the_pass_is_kept_small_and_named_by_gate_and_time(tmp_path):
    keeper = PhotoKeeper(tmp_path / "photos", {"finish": ["finish-cam"], "cp": ["cp-cam"]})
    base = 100 * S
    for i, level in enumerate((40, 90, 140, 190)):
        keeper.add("finish-cam", frame(base + i * S // 10, level))
    keeper.add("cp-cam", frame(base + S // 10, 250))  # another gate's camera: never used
    path = keeper.on_pass(Pass("finish", 12.3456), base + 2 * S // 10 + S // 100)  # nearest: #2
    assert path == tmp_path / "photos" / "finish_12.346.jpg"
    assert level_of(path) == pytest.approx(140, abs=3)
    assert cv2.imread(str(path)).shape[1] == 480
    assert keeper.path_for("finish", 12.346) == path
    assert keeper.photo("finish", "12.346") == path.read_bytes()
    assert keeper.photo("finish", 99.0) is None
    assert keeper.photo("../etc", "x") is None


def test_no_photo_when_no_frame_is_near_the_pass(tmp_path):
    keeper = PhotoKeeper(tmp_path, {"finish": ["finish-cam"]}, max_gap_s=1.0)
    keeper.add("finish-cam", frame(100 * S, 80))
    assert keeper.on_pass(Pass("finish", 5.0), 103 * S) is None
    assert keeper.on_pass(Pass("nocam", 5.0), 100 * S) is None
    assert keeper.count == 0


def test_the_ring_holds_only_recent_seconds(tmp_path):
    keeper = PhotoKeeper(tmp_path, {"finish": ["cam"]}, ring_s=2.0)
    for i in range(60):  # 6 s of frames at 10 fps
        keeper.add("cam", frame(100 * S + i * S // 10, i * 4, width=320))
    assert keeper.on_pass(Pass("finish", 1.0), 101 * S) is None  # long gone
    assert keeper.on_pass(Pass("finish", 2.0), 105 * S) is not None


def test_retention_limits_files_and_megabytes_oldest_first(tmp_path):
    keeper = PhotoKeeper(tmp_path, {"finish": ["cam"]}, max_files=3)
    rng = np.random.default_rng(0)
    for i in range(5):
        noisy = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
        keeper.add("cam", Frame(100 * S + i * S, noisy[:, :, 0].copy(), noisy))
        keeper.on_pass(Pass("finish", float(i)), 100 * S + i * S)
    names = sorted(p.name for p in tmp_path.glob("*.jpg"))
    assert names == ["finish_2.000.jpg", "finish_3.000.jpg", "finish_4.000.jpg"]
    size = (tmp_path / "finish_4.000.jpg").stat().st_size
    # A restarted station knows what is on the card and keeps the byte limit too.
    again = PhotoKeeper(tmp_path, {"finish": ["cam"]}, max_mb=2.5 * size / 1e6)
    assert again.count == 3
    noisy = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    again.add("cam", Frame(200 * S, noisy[:, :, 0].copy(), noisy))
    again.on_pass(Pass("finish", 9.0), 200 * S)
    assert again.bytes <= 2.5 * size
    assert (tmp_path / "finish_9.000.jpg").exists()
    assert not (tmp_path / "finish_2.000.jpg").exists()
    assert sum(p.stat().st_size for p in tmp_path.glob("*.jpg")) == again.bytes


def test_nothing_is_written_when_the_card_is_nearly_full(tmp_path):
    keeper = PhotoKeeper(tmp_path, {"finish": ["cam"]}, min_free_mb=10**12)  # more than any disk
    keeper.add("cam", frame(100 * S, 128))
    assert keeper.on_pass(Pass("finish", 1.0), 100 * S) is None
    assert keeper.skipped_low_disk == 1
    assert list(tmp_path.glob("*.jpg")) == []


def test_each_session_keeps_its_own_photos_and_the_dashboard_finds_the_current_ones(tmp_path):
    session = {"id": 1}
    keeper = PhotoKeeper(tmp_path, {"finish": ["cam"]}, session=lambda: session["id"])
    keeper.add("cam", frame(100 * S, 60))
    first = keeper.on_pass(Pass("finish", 42.0), 100 * S)
    assert first == tmp_path / "1" / "finish_42.000.jpg"
    # A new session's pass at the same gate and time must not overwrite the first photo.
    session["id"] = 2
    keeper.add("cam", frame(200 * S, 200))
    second = keeper.on_pass(Pass("finish", 42.0), 200 * S)
    assert second == tmp_path / "2" / "finish_42.000.jpg"
    assert level_of(first) == pytest.approx(60, abs=3)
    assert level_of(second) == pytest.approx(200, abs=3)
    assert keeper.photo("finish", "42.000") == second.read_bytes()  # the current session
    assert keeper.photo("finish", 42.0, session=1) == first.read_bytes()
    assert keeper.photo("finish", 42.0, session="../1") is None
    # Retention spans sessions after a restart, and an emptied session folder goes away.
    again = PhotoKeeper(tmp_path, {"finish": ["cam"]}, session=3, max_files=1)
    assert again.count == 2
    again.add("cam", frame(300 * S, 120))
    again.on_pass(Pass("finish", 1.0), 300 * S)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg")) == [
        "3/finish_1.000.jpg"]
    assert not (tmp_path / "1").exists() and not (tmp_path / "2").exists()


def test_the_ring_holds_small_jpegs_capped_by_count_and_bytes(tmp_path):
    keeper = PhotoKeeper(tmp_path, {"finish": ["cam"]}, ring_s=60, ring_frames=50, ring_mb=0.5,
                         min_step_s=0)  # every frame offered is kept: the caps do the work
    rng = np.random.default_rng(1)
    noisy = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)  # the worst case for JPEG
    for i in range(120):  # 40 fps for 3 s: what the demo's camera delivers at --speed 4
        keeper.add("cam", Frame(100 * S + i * S // 40, noisy[:, :, 0], noisy))
    frames, size = keeper.ring_stats["cam"]
    assert frames <= 50 and size <= 0.5e6
    assert size < frames * 480 * 270 * 3 / 4  # far smaller than the raw 480-px frames
    t_ns, jpeg = keeper.nearest("finish", 100 * S + 119 * S // 40)
    assert t_ns == 100 * S + 119 * S // 40 and jpeg[:2] == b"\xff\xd8"
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (270, 480, 3)
    assert keeper.snapshot("finish") is None  # frames from long ago are no live snapshot
    keeper.add("cam", frame(time.monotonic_ns(), 77, width=640))
    assert level_of_jpeg(keeper.snapshot("finish")) == pytest.approx(77, abs=3)


def test_the_photo_of_a_pass_without_a_bib_shows_who_it_was(tmp_path):
    # The finish camera faces oncoming runners from the finish line: at the crossing the
    # runner is beside its lens, out of the picture. The keeper keeps the frame from the
    # moment the runner fills it, so the coach sees the person even with no bib to read.
    from station.sensors.fakecam import background, render, world_scene
    from station.sensors.photos import photo_leads_s, shrink
    from station.sim.scenarios import build

    world = build("no-bib-solo", seed=0).world
    cam = world.config.cameras[0]
    assert (cam.looks, cam.covers_m[1] % world.config.length_m) == ("oncoming", 0)
    assert photo_leads_s(world.config)[cam.id] == pytest.approx(-1.5)
    speed = 4.0  # as in the demo: session seconds run 4x the monotonic clock
    keeper = PhotoKeeper.from_config(tmp_path, world.config, speed=speed)
    scene = world_scene(world, cam.id, cam.width, cam.height)
    t_pass = world.crossings("finish")[1][0]
    for t_s in np.arange(t_pass - 3.0, t_pass + 0.5, 0.1):
        color = render(scene(t_s), cam.width, cam.height)
        keeper.add(cam.id, Frame(int(t_s / speed * S), color[:, :, 0].copy(), color))
    t_ns = int(t_pass / speed * S)
    empty = shrink(background(cam.width, cam.height), 480).astype(int)

    def people(jpeg: bytes) -> float:
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)
        return float((np.abs(img - empty).max(axis=2) > 40).mean())

    at_crossing = keeper.nearest("finish", t_ns)[1]
    path = keeper.on_pass(Pass("finish", t_pass), t_ns)
    assert people(at_crossing) < 0.01       # the track is empty at the crossing itself
    assert people(path.read_bytes()) > 0.05  # the kept photo shows the runner, head to knees


def test_a_departing_camera_keeps_the_frame_after_the_pass_once_it_arrives(tmp_path):
    # Standing at the gate and looking away, the camera shows the runner's back once they
    # are a few metres past: that frame does not exist yet when the pass is decided.
    from station.config import parse_config
    from station.sensors.photos import photo_leads_s

    config = parse_config({
        "track": {"length_m": 400}, "gates": [{"id": "finish", "position_m": 0}],
        "cameras": [{"id": "back-cam", "gate": "finish", "covers_m": [0, 30],
                     "looks": "departing"}]})
    assert photo_leads_s(config) == {"back-cam": pytest.approx(1.5)}
    # Every frame kept, so the one exactly at the lead can be named below.
    keeper = PhotoKeeper.from_config(tmp_path, config, session=5, min_step_s=0)
    for i in range(11):  # frames up to 0.5 s after the pass at 100 s
        keeper.add("back-cam", frame(99 * S + i * S // 10, 10 + i))
    assert keeper.on_pass(Pass("finish", 7.0), 100 * S) is None  # not yet: waiting
    assert keeper.count == 0
    for i in range(11, 40):
        keeper.add("back-cam", frame(99 * S + i * S // 10, 10 + 5 * i))
    path = tmp_path / "5" / "finish_7.000.jpg"
    assert keeper.count == 1 and path.is_file()
    assert level_of(path) == pytest.approx(10 + 5 * 25, abs=3)  # the frame at 101.5 s


def test_the_ring_keeps_a_few_frames_a_second_not_every_frame(tmp_path):
    # Shrinking and encoding every frame would take the camera thread's time from tag
    # detection; a photo needs a frame every fifth of a second.
    keeper = PhotoKeeper(tmp_path, {"finish": ["cam"]}, ring_s=60, min_step_s=0.2)
    for i in range(30):  # 1 s at 30 fps
        keeper.add("cam", frame(100 * S + i * S // 30, i * 4, width=320))
    frames, _ = keeper.ring_stats["cam"]
    assert frames == 5  # at 0, 0.2, 0.4, 0.6 and 0.8 s (to the frame)
    t_ns, _ = keeper.nearest("finish", 100 * S + S // 2)
    assert abs(t_ns - (100 * S + S // 2)) <= S // 10
