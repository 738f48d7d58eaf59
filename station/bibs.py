"""`station bibs`: printable bib sheets, one A4 page per side (front tag 2n, back tag 2n+1).

    station bibs --config station.toml --out bibs.pdf            # every runner in the roster
    station bibs --config station.toml --out bibs.png --bib 7 9  # bibs-007-front.png, ...

Size. A tag is read reliably from about 14-18 px (its black square's side in the image).
The image size of a tag of side S at distance d is px = f * S / d, with the focal length in
pixels f = W / (2 tan(HFOV / 2)). On A4 (210 mm wide) the largest square that keeps the
white margin the detector needs (at least one bit cell all round) is 160 mm: 8 cells of
20 mm, 25 mm of white on each side. At 12 m that gives:
  - Camera Module 3 (66 deg) at 1280x720:  f =  985 px -> 13 px (too small; reads to ~9 m)
  - Camera Module 3 (66 deg) at 2304x1296: f = 1773 px -> 24 px
  - a 35 deg lens at 1280x720:             f = 2030 px -> 27 px
so for 12 m use the 2304x1296 mode or a narrower lens. The sheet prints at 300 dpi and
states the intended size; print at 100 % ("actual size"), never "fit to page".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
import unicodedata
import zlib
from pathlib import Path

from station.config import MAX_BIB, NOT_IN_NAMES, load_config

DPI = 300
PAGE_MM = (210.0, 297.0)            # A4 portrait
TAG_MM = 160.0                      # side of the black square (8 cells of 20 mm)
MARGIN_MM = 25.0                    # white around the tag: more than one cell
TEXT_TOP_MM = MARGIN_MM + TAG_MM + 22.0
NAME_MM = (9.0, 7.5, 6.0, 5.0, 4.0)  # a long name shrinks through these sizes, then is cut
NAME_WIDTH_MM = 170.0               # clear of the pin marks on both sides
NAME_MAX_CHARS = 200                # more never fits at the smallest size anyway


def mm(value: float) -> int:
    return round(value * DPI / 25.4)


@functools.lru_cache(maxsize=16)
def _font(size_px: int, bold: bool = True):
    from PIL import ImageFont

    for name in (("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"),
                 "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"):
        try:
            return ImageFont.truetype(name, size_px)
        except OSError:
            continue
    return ImageFont.load_default(size=size_px)


def tag_image(tag: int, side_px: int):
    """The tag's black square (with its 6x6 code) as a Pillow "L" image, side_px wide."""
    import cv2
    from PIL import Image

    dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_APRILTAG_36h11)
    cells = cv2.aruco.generateImageMarker(dictionary, tag, 8, borderBits=1)  # 1 px per cell
    # Nearest-neighbour: crisp cell edges, whatever the printer's resolution.
    return Image.fromarray(cells).resize((side_px, side_px), Image.NEAREST)


def printable(name: str) -> str:
    """The name as one line: control characters and line breaks become spaces. Config refuses
    them already; this keeps a sheet printable whatever reaches it."""
    name = "".join(" " if unicodedata.category(c) in NOT_IN_NAMES else c
                   for c in name[:NAME_MAX_CHARS])
    return " ".join(name.split())


def _fit_line(draw, name: str, side: str):
    """(text, font) of the name line, shrunk and then cut ("...") to fit the page width."""
    max_px = mm(NAME_WIDTH_MM)
    fonts = [_font(mm(size), bold=False) for size in NAME_MM]
    for font in fonts:
        text = f"{name}  ·  {side}" if name else side
        if draw.textlength(text, font=font) <= max_px:
            return text, font
    font = fonts[-1]
    keep, cut = 0, len(name)  # the longest prefix that fits, by bisection
    while keep < cut:
        mid = (keep + cut + 1) // 2
        if draw.textlength(f"{name[:mid].rstrip()}…  ·  {side}", font=font) <= max_px:
            keep = mid
        else:
            cut = mid - 1
    return f"{name[:keep].rstrip()}…  ·  {side}", font


def page(bib: int, side: str, name: str = ""):
    """One A4 page (300 dpi, 1-bit) for bib `bib`, side "front" (tag 2n) or "back" (2n+1).

    1-bit because everything on it is black on white: a page is 8.7 MB in memory (Pillow
    keeps a byte per pixel) and prints with crisp edges (a JPEG-compressed page would blur)."""
    from PIL import Image, ImageDraw

    tag = 2 * bib + (0 if side == "front" else 1)
    w, h = mm(PAGE_MM[0]), mm(PAGE_MM[1])
    img = Image.new("1", (w, h), 1)
    cell_px = mm(TAG_MM / 8)
    side_px = 8 * cell_px
    x0 = (w - side_px) // 2
    img.paste(tag_image(tag, side_px).convert("1", dither=0), (x0, mm(MARGIN_MM)))
    draw = ImageDraw.Draw(img)
    draw.text((w // 2, mm(TEXT_TOP_MM)), str(bib), font=_font(mm(48)), fill=0, anchor="mt")
    try:
        text, font = _fit_line(draw, printable(name), side.upper())
        draw.text((w // 2, mm(TEXT_TOP_MM + 52)), text, font=font, fill=0, anchor="mt")
    except (ValueError, OSError):
        # A name the font engine cannot lay out must not cost the runner a bib: the tag and
        # the number are what matter.
        draw.text((w // 2, mm(TEXT_TOP_MM + 52)), side.upper(), font=_font(mm(9), bold=False),
                  fill=0, anchor="mt")
    draw.text((w // 2, h - mm(6)),
              f"tag {tag} (AprilTag 36h11)  ·  black square {TAG_MM:.0f} mm: print at 100 %  ·  "
              f"wear on the {'chest' if side == 'front' else 'back'}, flat, pinned at 4 corners",
              font=_font(mm(3.2), bold=False), fill=0, anchor="mb")
    # Pin marks in the white, well outside the tag's margin.
    for cx, cy in ((mm(8), mm(8)), (w - mm(8), mm(8)), (mm(8), h - mm(14)), (w - mm(8), h - mm(14))):
        r = mm(2)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=0, width=mm(0.4))
    return img


def pages_for(bibs: list[tuple[int, str]]):
    """(bib, side, image) for every bib, front then back, made one at a time as asked for."""
    return ((bib, side, page(bib, side, name)) for bib, name in bibs for side in ("front", "back"))


def write(out: Path, bibs: list[tuple[int, str]]) -> list[Path]:
    """Write a multi-page PDF, or one PNG per page (`<stem>-<bib>-<side>.png`).

    One page is in memory at a time (~10 MB, whatever the roster's size): each is drawn,
    compressed and written before the next. The PDF is written beside `out` and renamed, so a
    failure leaves no half file."""
    suffix = out.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise ValueError(f"--out must end in .pdf or .png, not {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if suffix == ".pdf":
            part = out.with_name(out.name + ".part")
            try:
                with open(part, "wb") as fh:
                    # Not `img for ... in pages_for()`: its frame would hold the last page
                    # while the next is drawn.
                    write_pdf(fh, (page(bib, side, name) for bib, name in bibs
                                   for side in ("front", "back")))
                os.replace(part, out)
            finally:
                part.unlink(missing_ok=True)
            return [out]
        written = []
        for bib, side, img in pages_for(bibs):
            path = out.with_name(f"{out.stem}-{bib:03d}-{side}.png")
            img.save(path, dpi=(DPI, DPI))
            del img  # before the next page is drawn
            written.append(path)
        return written
    finally:
        release_memory()


def write_pdf(fh, images, title: str = "Track station bibs") -> int:
    """Write 1-bit page images (DPI) as a PDF to the binary file `fh`, one at a time; return
    the number of pages.

    Our own few lines because Pillow's PDF writer gathers every page (`append_images`) before
    it writes the first, and its `append=True` rewrites all earlier pages on every append.
    Each page is one image, its rows packed 8 pixels a byte and deflated (~11 KB a page)."""
    offsets: dict[int, int] = {}

    def obj(num: int, body: bytes, stream: bytes | None = None) -> None:
        offsets[num] = fh.tell()
        fh.write(b"%d 0 obj\n" % num + body)
        if stream is not None:
            fh.write(b"\nstream\n" + stream + b"\nendstream")
        fh.write(b"\nendobj\n")

    fh.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    kids = []
    num = 3  # 1: catalog, 2: page tree, written last when the pages are known
    for img in images:
        if img.mode != "1":
            img = img.convert("1", dither=0)
        w_pt, h_pt = img.width * 72 / DPI, img.height * 72 / DPI
        data = zlib.compress(img.tobytes(), 9)  # "1" raw: MSB first, rows padded to a byte
        obj(num, b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
            b"/BitsPerComponent 1 /Filter /FlateDecode /Length %d >>"
            % (img.width, img.height, len(data)), data)
        del img, data
        draw = b"q %.4f 0 0 %.4f 0 0 cm /Im Do Q" % (w_pt, h_pt)
        obj(num + 1, b"<< /Length %d >>" % len(draw), draw)
        obj(num + 2, b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.4f %.4f] /Resources "
            b"<< /XObject << /Im %d 0 R >> >> /Contents %d 0 R >>" % (w_pt, h_pt, num, num + 1))
        kids.append(num + 2)
        num += 3
    obj(2, b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % k for k in kids), len(kids)))
    obj(1, b"<< /Type /Catalog /Pages 2 0 R >>")
    safe_title = title.encode("ascii", "replace").translate(None, b"()\\")
    obj(num, b"<< /Title (%s) /Producer (station bibs) >>" % safe_title)
    xref = fh.tell()
    fh.write(b"xref\n0 %d\n0000000000 65535 f \n" % (num + 1))
    fh.write(b"".join(b"%010d 00000 n \n" % offsets[i] for i in range(1, num + 1)))
    fh.write(b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
             % (num + 1, num, xref))
    return len(kids)


def release_memory() -> None:
    """Hand freed page memory back to the system. glibc keeps large freed blocks in its heap
    (one heap per thread that allocated them: the web server's threads), so without this a
    station that printed sheets stays ~100 MB bigger. A no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


# -- station bibs ---------------------------------------------------------------------------

def add_arguments(parser) -> None:
    parser.add_argument("--config", help="station TOML; its [[runners]] give bibs and names")
    parser.add_argument("--out", required=True, help="FILE.pdf (all pages) or FILE.png (one per page)")
    parser.add_argument("--bib", type=int, nargs="+", metavar="N",
                        help="only these bibs (default: every runner in the config)")


def run(args) -> int:
    config = load_config(args.config) if args.config else None
    if args.bib:
        wanted = list(dict.fromkeys(args.bib))
    elif config is not None and config.runners:
        wanted = [r.bib for r in config.runners]
    else:
        print("station bibs: error: no bibs: give --bib N... or a --config with [[runners]]",
              file=sys.stderr)
        return 2
    bad = [b for b in wanted if not 1 <= b <= MAX_BIB]
    if bad:
        print(f"station bibs: error: --bib {bad[0]}: bibs are 1..{MAX_BIB}", file=sys.stderr)
        return 2
    bibs = [(b, config.runner_name(b) if config else "") for b in wanted]
    try:
        written = write(Path(args.out), bibs)
    except (ValueError, OSError) as exc:
        print(f"station bibs: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    print(f"{len(bibs)} runner(s), {2 * len(bibs)} A4 pages: tag {TAG_MM:.0f} mm, print at 100 %",
          file=sys.stderr)
    return 0
