"""`station bibs`: A4 sheets whose tags the station's own detector reads back as the right
bib and side, at the printed size the sheet promises."""

from __future__ import annotations

import re
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, PdfParser

from station import bibs
from station.bibs import DPI, PAGE_MM, TAG_MM, mm
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


def pdf_pages(path):
    """Each page of a bibs PDF as (MediaBox, 8-bit numpy image), read with Pillow's PDF parser
    and decoded as PDF says (DeviceGray, 1 bit: 1 is white)."""
    pdf = PdfParser.PdfParser(buf=path.read_bytes())
    for ref in pdf.pages:
        page = pdf.read_indirect(ref)
        (image_ref,) = page[b"Resources"][b"XObject"].values()
        stream = pdf.read_indirect(image_ref)
        d = stream.dictionary
        assert (d.Filter, d.BitsPerComponent, d.ColorSpace) == (
            PdfParser.PdfName("FlateDecode"), 1, PdfParser.PdfName("DeviceGray"))
        img = Image.frombytes("1", (d.Width, d.Height), zlib.decompress(stream.buf))
        yield page[b"MediaBox"], np.asarray(img.convert("L"))


def test_pdf_pages_hold_each_runners_front_and_back_in_order(tmp_path):
    (tmp_path / "station.toml").write_text(CONFIG, encoding="utf-8")
    out = tmp_path / "bibs.pdf"
    assert main(["bibs", "--config", str(tmp_path / "station.toml"), "--out", str(out)]) == 0
    assert not list(tmp_path.glob("*.part"))
    detector = TagDetector()
    found = []
    for box, page in pdf_pages(out):
        assert box[2:] == pytest.approx([595.3, 841.9], abs=1)  # A4 in points
        assert page.shape == (mm(PAGE_MM[1]), mm(PAGE_MM[0]))   # at 300 dpi
        small = cv2.resize(page, None, fx=150 / page.shape[1], fy=150 / page.shape[1],
                           interpolation=cv2.INTER_AREA)
        found += [(d.tag, d.bib, d.side) for d in detector.detect(small)]
    assert found == [(14, 7, "front"), (15, 7, "back"), (584, 292, "front"), (585, 292, "back")]


PEAK_RSS = r"""
import sys, tempfile
from pathlib import Path
import cv2, PIL.Image, PIL.ImageDraw, PIL.ImageFont  # libraries loaded: not the sheet's cost
from station import bibs

def kib(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field))

base = kib("VmRSS")
with tempfile.TemporaryDirectory() as tmp:
    bibs.write(Path(tmp) / "one.pdf", [(1, "Ana")])
    one = kib("VmHWM")
    bibs.write(Path(tmp) / "ten.pdf", [(b, f"Runner {b}") for b in range(1, 11)])
    ten = kib("VmHWM")
print((one - base) // 1024, (ten - base) // 1024)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_sheet_keeps_one_page_in_memory_whatever_the_roster(tmp_path):
    # Peak resident memory of a fresh process, so nothing else in the test run counts. Drawing
    # every page first took ~35 MB a runner (240 MB for 7, 1.3 GB for 40): a station on a Pi
    # must stay under ~150 MB. One page is 8.7 MB.
    run = subprocess.run([sys.executable, "-c", PEAK_RSS], capture_output=True, text=True,
                         timeout=120, check=True)
    one_mb, ten_mb = map(int, run.stdout.split())
    assert ten_mb < 80, (one_mb, ten_mb)
    assert ten_mb - one_mb < 17, (one_mb, ten_mb)  # does not grow with the roster


NAMES = ["Ana\nMaria", "tab\there", "nul\x00", "x" * 5000, "W" * 70, "محمد علي", "שרה כהן",
         "🏃\u200d♀️ Zoé 🇫🇷 𓀀", "Z̷̢͔a̸l̵g̶o̷", "\u202eevil", "王小明", "\ufeff", " ", "\U0010ffff",
         "\u2028", "=cmd()"]


@pytest.mark.parametrize("name", NAMES, ids=range(len(NAMES)))
def test_any_name_prints_within_the_page(name):
    img = bibs.page(5, "front", name)
    w = img.width
    band = np.asarray(img.crop((0, mm(bibs.TEXT_TOP_MM + 50), w, mm(bibs.TEXT_TOP_MM + 66))))
    ink = np.flatnonzero((~band).any(axis=0))  # columns with black in the name line
    assert ink.size  # at least the side is printed
    # Long names shrink, then are cut: nothing runs off the paper or into the pin marks.
    assert ink[0] >= mm(15) and ink[-1] <= w - mm(15)


def test_a_roster_with_a_multiline_name_still_prints_every_page(tmp_path):
    out = tmp_path / "bibs.pdf"
    assert bibs.write(out, [(1, "Ana\nMaria"), (2, "Ben")]) == [out]
    assert [p.shape for _, p in pdf_pages(out)] == [(mm(PAGE_MM[1]), mm(PAGE_MM[0]))] * 4
