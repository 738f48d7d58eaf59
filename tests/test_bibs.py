"""`station bibs`: A4 sheets whose tags the station's own detector reads back as the right
bib and side, at the printed size the sheet promises."""

from __future__ import annotations

import re

import cv2
import pytest

from station.bibs import DPI, TAG_MM
from station.cli import main
from station.sensors.tags import TagDetector

CONFIG = """
[track]
length_m = 400
[[gates]]
id = "finish"
position_m = 0
[[runners]]
bib = 7
name = "Ana"
[[runners]]
bib = 292
name = "Zoé"
"""


def read_page(path, width_px: int):
    """The page as a camera far away would see it: shrunk (area average) to width_px."""
    page = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    k = width_px / page.shape[1]
    return page, cv2.resize(page, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)


def test_png_pages_decode_to_each_runners_front_and_back(tmp_path, capsys):
    (tmp_path / "station.toml").write_text(CONFIG, encoding="utf-8")
    out = tmp_path / "sheets" / "bibs.png"
    assert main(["bibs", "--config", str(tmp_path / "station.toml"), "--out", str(out)]) == 0
    written = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[1] for p in written] == [
        "bibs-007-front.png", "bibs-007-back.png", "bibs-292-front.png", "bibs-292-back.png"]
    detector = TagDetector()
    expect = {"007-front": (14, 7, "front"), "007-back": (15, 7, "back"),
              "292-front": (584, 292, "front"), "292-back": (585, 292, "back")}
    for path in written:
        key = re.search(r"(\d{3}-\w+)\.png$", path).group(1)
        page, small = read_page(path, 150)  # the tag is then ~114 px
        assert page.shape == (round(297 * DPI / 25.4), round(210 * DPI / 25.4))  # A4 at 300 dpi
        found = detector.detect(small)
        assert [(d.tag, d.bib, d.side) for d in found] == [expect[key]]
        # The black square is the promised size on paper.
        square_mm = found[0].px * page.shape[1] / small.shape[1] / DPI * 25.4
        assert square_mm == pytest.approx(TAG_MM, rel=0.03)


def test_a_far_away_sheet_still_reads_at_the_size_it_was_designed_for(tmp_path):
    out = tmp_path / "b.png"
    assert main(["bibs", "--out", str(out), "--bib", "42"]) == 0
    page, _ = read_page(tmp_path / "b-042-back.png", 10)
    # Shrink until the black square is ~18 px, as at 12 m with a 2304 px wide camera: read.
    k = 18 / (TAG_MM / 25.4 * DPI)
    far = cv2.resize(page, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    pad = cv2.copyMakeBorder(far, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=90)  # a dark shirt
    assert [d.tag for d in TagDetector().detect(pad)] == [85]


def test_pdf_has_two_a4_pages_per_runner(tmp_path):
    out = tmp_path / "bibs.pdf"
    assert main(["bibs", "--out", str(out), "--bib", "3", "4", "5"]) == 0
    data = out.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 6
    # A4 in points (1/72 in): 595 x 842.
    boxes = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", data)
    assert boxes and all(abs(float(w) - 595.3) < 1 and abs(float(h) - 841.9) < 1 for w, h in boxes)


def test_bad_requests_are_clear_errors(tmp_path, capsys):
    assert main(["bibs", "--out", str(tmp_path / "x.png"), "--bib", "293"]) == 2
    assert "--bib 293: bibs are 1..292" in capsys.readouterr().err
    assert main(["bibs", "--out", str(tmp_path / "x.png")]) == 2
    assert "no bibs" in capsys.readouterr().err
    assert main(["bibs", "--out", str(tmp_path / "x.svg"), "--bib", "1"]) == 2
    assert "must end in .pdf or .png" in capsys.readouterr().err
