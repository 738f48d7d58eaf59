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

import sys
from pathlib import Path

from station.config import MAX_BIB, load_config

DPI = 300
PAGE_MM = (210.0, 297.0)            # A4 portrait
TAG_MM = 160.0                      # side of the black square (8 cells of 20 mm)
MARGIN_MM = 25.0                    # white around the tag: more than one cell
TEXT_TOP_MM = MARGIN_MM + TAG_MM + 22.0


def mm(value: float) -> int:
    return round(value * DPI / 25.4)


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


def page(bib: int, side: str, name: str = ""):
    """One A4 page (300 dpi, "L") for bib `bib`, side "front" (tag 2n) or "back" (2n+1)."""
    from PIL import Image, ImageDraw

    tag = 2 * bib + (0 if side == "front" else 1)
    w, h = mm(PAGE_MM[0]), mm(PAGE_MM[1])
    img = Image.new("L", (w, h), 255)
    cell_px = mm(TAG_MM / 8)
    side_px = 8 * cell_px
    x0 = (w - side_px) // 2
    img.paste(tag_image(tag, side_px), (x0, mm(MARGIN_MM)))
    draw = ImageDraw.Draw(img)
    number = _font(mm(48))
    draw.text((w // 2, mm(TEXT_TOP_MM)), str(bib), font=number, fill=0, anchor="mt")
    small = _font(mm(9), bold=False)
    line = f"{name}  ·  {side.upper()}" if name else side.upper()
    draw.text((w // 2, mm(TEXT_TOP_MM + 52)), line, font=small, fill=0, anchor="mt")
    tiny = _font(mm(3.2), bold=False)
    draw.text((w // 2, h - mm(6)),
              f"tag {tag} (AprilTag 36h11)  ·  black square {TAG_MM:.0f} mm: print at 100 %  ·  "
              f"wear on the {'chest' if side == 'front' else 'back'}, flat, pinned at 4 corners",
              font=tiny, fill=90, anchor="mb")
    # Pin marks in the white, well outside the tag's margin.
    for cx, cy in ((mm(8), mm(8)), (w - mm(8), mm(8)), (mm(8), h - mm(14)), (w - mm(8), h - mm(14))):
        r = mm(2)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=120, width=mm(0.4))
    return img


def pages_for(bibs: list[tuple[int, str]]):
    """[(bib, side, image)] for every bib, front then back."""
    return [(bib, side, page(bib, side, name)) for bib, name in bibs for side in ("front", "back")]


def write(out: Path, bibs: list[tuple[int, str]]) -> list[Path]:
    """Write a multi-page PDF, or one PNG per page (`<stem>-<bib>-<side>.png`)."""
    pages = pages_for(bibs)
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".pdf":
        # 1-bit pages: crisp edges and small files (a JPEG-compressed page would blur them).
        images = [img.convert("1", dither=0) for _, _, img in pages]
        images[0].save(out, "PDF", save_all=True, append_images=images[1:], resolution=DPI,
                       title="Track station bibs")
        return [out]
    if suffix == ".png":
        written = []
        for bib, side, img in pages:
            path = out.with_name(f"{out.stem}-{bib:03d}-{side}.png")
            img.save(path, dpi=(DPI, DPI))
            written.append(path)
        return written
    raise ValueError(f"--out must end in .pdf or .png, not {out.name!r}")


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
