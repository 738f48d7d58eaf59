"""Pass photos: the frame nearest the pass is kept as a small JPEG named by gate and time, and
the folder never grows past its limits."""

from __future__ import annotations

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
