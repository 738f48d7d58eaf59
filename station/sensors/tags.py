"""Reading AprilTag bibs from frames (OpenCV, 36h11), and the `station detect` command.

Bib `n` wears tag `2n` on the front and `2n+1` on the back (SPEC §1). Ids 0 and 1 are never
printed and 586 would be bib 293's front: a read of those is a misread and is dropped.
`px` is the tag's side in pixels (mean of the black square's four sides): the engine and
the simulation use it as a distance cue.

Speed (see bench/detect_bench.py for the figures): OpenCV's ArucoDetector finds candidate
quads with one adaptive-threshold window instead of three and skips contours smaller than the
smallest decodable tag (~12 px); the candidates are then decoded here with a vectorised lookup
of all 36h11 codes, which is ~10x cheaper than OpenCV's own one-code-at-a-time matching and
samples small tags a little better (bilinear). At most 3 wrong bits are corrected (36h11 codes
are 11 bits apart), so tag-like clutter is rejected rather than "corrected" into a bib.
A small candidate (<= 26 px) that nearly reads is read again with its edges nudged by
half a pixel or a pixel: a contour quad that far off spoils 4-8 bits of a 14-20 px tag.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_TAG, MAX_TAG = 2, 585  # bib 1 front .. bib 292 back


@dataclass(frozen=True)
class Detection:
    tag: int
    px: float
    corners: tuple[tuple[float, float], ...]  # 4 corners, clockwise from the tag's top-left

    @property
    def bib(self) -> int:
        return self.tag // 2

    @property
    def side(self) -> str:
        return "front" if self.tag % 2 == 0 else "back"

    def as_json(self) -> dict:
        """The SPEC §6 form of one tag."""
        return {"tag": self.tag, "bib": self.bib, "side": self.side, "px": self.px,
                "corners": [list(c) for c in self.corners]}


class _Codebook:
    """All 36h11 codes in their 4 rotations, for a vectorised nearest-code lookup.

    OpenCV's own `Dictionary.identify` compares a candidate with the 587 codes one by one
    and takes ~1.4 ms per candidate here, which made decoding, not finding, the cost of a
    frame; XOR + popcount over one numpy array takes microseconds."""

    def __init__(self, cv2):
        d = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_APRILTAG_36h11)
        weights = (1 << np.arange(36, dtype=np.uint64))
        codes, ids, rots = [], [], []
        for tag in range(d.bytesList.shape[0]):
            bits = cv2.aruco.Dictionary.getBitsFromByteList(d.bytesList[tag:tag + 1], 6)
            for k in range(4):
                codes.append(int((np.rot90(bits, k).ravel().astype(np.uint64) * weights).sum()))
                ids.append(tag)
                rots.append(k)
        self.codes = np.array(codes, dtype=np.uint64)
        self.ids = np.array(ids)
        self.rots = np.array(rots)
        self.weights = weights

    def nearest(self, bits: np.ndarray) -> tuple[int, int, int]:
        """(wrong bits, id, rotation) of the code nearest to the 6x6 `bits`."""
        code = np.uint64((bits.ravel().astype(np.uint64) * self.weights).sum())
        diff = self.codes ^ code
        if hasattr(np, "bitwise_count"):  # numpy >= 2
            dist = np.bitwise_count(diff)
        else:
            dist = np.unpackbits(diff.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        i = int(dist.argmin())
        return int(dist[i]), int(self.ids[i]), int(self.rots[i])


class TagDetector:
    """Finds bib tags in grey (or BGR) frames. One instance per thread (OpenCV detectors
    keep scratch buffers); create it once, it is reused frame after frame.

    OpenCV finds the candidate quads (adaptive threshold, contours, quad fit); with `fast`
    (the default) it is given a one-code dictionary, so every real tag comes back as a
    "rejected" candidate that we decode ourselves: sample the 8x8 cells, check the black
    border, look the 6x6 code up in all 36h11 codes at once. `fast=False` lets OpenCV decode
    (the reference the tests compare with).
    """

    def __init__(self, *, min_px: float = 12, max_px: float = 400, window_px: int = 9,
                 threshold: float = 7, correction: float = 0.6, refine: bool = False,
                 fast: bool = True):
        import cv2

        self._cv2 = cv2
        self.min_px, self.max_px = min_px, max_px
        self.fast = fast
        full = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_APRILTAG_36h11)
        # Tag 0 alone (never printed): OpenCV's decoding then costs nothing.
        self._dictionary = (cv2.aruco.Dictionary(full.bytesList[0:1].copy(), 6, 5) if fast
                            else full)
        self._codebook = _Codebook(cv2) if fast else None
        # 5 correctable bits x 0.6 = 3 (OpenCV's default): 36h11 codes are 11 bits apart, so
        # a misread needs 8 wrong bits; tag-like clutter is rejected in the benchmark.
        self.max_errors = int(5 * correction)
        p = cv2.aruco.DetectorParameters()
        # One threshold window sized for the small tags (the large ones have wide borders and
        # survive any window); OpenCV's default tries 3, 13 and 23 px, which triples the work.
        p.adaptiveThreshWinSizeMin = p.adaptiveThreshWinSizeMax = window_px
        # OpenCV's 7: a higher constant (10) was 30 % faster but lost a third of the tags in
        # dim light (an evening session, a bib in a shadow) in an independent test set.
        p.adaptiveThreshConstant = threshold
        p.errorCorrectionRate = correction
        # A tiny tag has 1.75 px per bit: sample the cell centres only.
        p.perspectiveRemovePixelPerCell = 4
        p.perspectiveRemoveIgnoredMarginPerCell = 0.25
        p.cornerRefinementMethod = (cv2.aruco.CORNER_REFINE_SUBPIX if refine
                                    else cv2.aruco.CORNER_REFINE_NONE)
        self._params = p
        # Candidates up to this side are retried with nudged corners (see _decode); larger
        # tags have cells wide enough that half a pixel does not matter.
        self.retry_px = 26
        self._detectors: dict[int, object] = {}
        cell = 4
        self._cell = cell
        self._square = np.float32([[0, 0], [8 * cell, 0], [8 * cell, 8 * cell], [0, 8 * cell]])
        border = np.ones((8, 8), bool)
        border[1:7, 1:7] = False
        self._border = border
        self._max_border_errors = int(36 * p.maxErroneousBitsInBorderRate)

    # How far each edge of a small candidate that did not read is moved out (+) or in (-),
    # tried in this order (see _decode).
    RETRY_GROW_PX = (0.5, -0.5, 1.0)

    def _detector_for(self, longest_px: int):
        det = self._detectors.get(longest_px)
        if det is None:
            p = self._params
            # Perimeter limits are relative to the frame's longest side.
            p.minMarkerPerimeterRate = 4 * self.min_px / longest_px
            p.maxMarkerPerimeterRate = min(4.0, 4 * self.max_px / longest_px)
            det = self._cv2.aruco.ArucoDetector(self._dictionary, p)
            self._detectors[longest_px] = det
        return det

    def _decode(self, gray: np.ndarray, quad: np.ndarray,
                retry: bool = True) -> tuple[int, np.ndarray] | None:
        """(id, corners from the tag's top-left, clockwise) of a candidate quad, or None.

        A small tag's contour quad is often half a pixel inside or outside the black square,
        a third of a 1.75 px cell, so the sampled cells straddle two bits. A small candidate
        that nearly reads (black border, code a few bits off) is read again with its edges
        moved out or in by a fraction of a pixel. Each try still allows only `max_errors`
        wrong bits, so tag-like clutter stays rejected (none in the benchmark or the tests).
        """
        got, near = self._read(gray, quad)
        if got is not None or not near or not retry:
            return got
        side_px = float(np.linalg.norm(quad - np.roll(quad, -1, axis=0), axis=1).mean())
        if side_px > self.retry_px:
            return None
        centre = quad.mean(axis=0)
        for grow_px in self.RETRY_GROW_PX:
            q = (centre + (quad - centre) * (1 + 2 * grow_px / side_px)).astype(np.float32)
            got, _ = self._read(gray, q)
            if got is not None:
                return got
        return None

    def _read(self, gray: np.ndarray, quad: np.ndarray) -> tuple[tuple[int, np.ndarray] | None, bool]:
        """(`_decode` on exactly this quad, whether a miss nearly read and is worth a retry)."""
        cv2, cell = self._cv2, self._cell
        h = cv2.getPerspectiveTransform(quad, self._square)
        patch = cv2.warpPerspective(gray, h, (8 * cell, 8 * cell), flags=cv2.INTER_LINEAR)
        if patch.std() < 5:  # a flat patch has no code (OpenCV's minOtsuStdDev)
            return None, False
        _, binary = cv2.threshold(patch, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
        # Each cell's centre (a quarter margin ignored): white if most of it is white.
        m = max(1, int(round(cell * self._params.perspectiveRemoveIgnoredMarginPerCell)))
        cells = binary.reshape(8, cell, 8, cell)[:, m:cell - m, :, m:cell - m].mean(axis=(1, 3))
        bits = cells > 0.5
        border_errors = int(bits[self._border].sum())
        if border_errors > self._max_border_errors:
            return None, False
        errors, tag, k = self._codebook.nearest(bits[1:7, 1:7])
        if errors > self.max_errors:
            # Every small tag rescued in the benchmark was first read with <= 5 border and
            # <= 7 code errors; retrying only those keeps the retries off most clutter.
            return None, border_errors <= 6 and errors <= 8
        # The code seen is the tag turned k quarter turns anticlockwise: its top-left corner
        # is then at quad corner (4 - k) % 4.
        return (tag, np.roll(quad, -((4 - k) % 4), axis=0)), False

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All bib tags in the image, sorted by tag id."""
        if image.ndim == 3:
            image = self._cv2.cvtColor(image, self._cv2.COLOR_BGR2GRAY)
        return sorted((_detection(tag, q) for tag, q in self._find(image, retry=True).items()),
                      key=lambda d: d.tag)

    def _find(self, gray: np.ndarray, retry: bool) -> dict[int, np.ndarray]:
        """Bib tag id -> its corners (4x2, from the tag's top-left, clockwise), unrounded."""
        corners, ids, rejected = self._detector_for(max(gray.shape[:2])).detectMarkers(gray)
        found: dict[int, np.ndarray] = {}
        if self.fast:
            for quad in rejected:
                got = self._decode(gray, quad.reshape(4, 2).astype(np.float32), retry)
                if got is not None and got[0] not in found:
                    found[got[0]] = got[1]
        elif ids is not None:
            for quad, tag in zip(corners, ids.ravel().tolist()):
                found.setdefault(int(tag), quad.reshape(4, 2))
        return {tag: q.astype(np.float64) for tag, q in found.items()
                if MIN_TAG <= tag <= MAX_TAG}

    def detect_any_size(self, image: np.ndarray) -> list[Detection]:
        """`detect`, plus tags bigger than `max_px` (a close-up photo, a printed bib sheet),
        for pictures of any kind (`station detect`). A big tag's cells are wider than the
        threshold windows, so the image is halved until such a tag fits and what is read
        there is scaled back to this image's pixels. The live camera path uses `detect`."""
        cv2 = self._cv2
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        found = self._find(image, retry=True)
        scale = 1
        while max(image.shape[:2]) > 2 * self.max_px:
            h, w = image.shape[:2]
            image = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
            scale *= 2
            # Halved, anything that looks like a small tag was a big, sharp thing in the
            # picture: no second tries with nudged edges, which can talk other marker
            # families into a bib (an ArUco marker read as tag 430 at quarter size).
            for tag, q in self._find(image, retry=False).items():
                if tag not in found:  # the finer reading of a tag is the better one
                    found[tag] = (q + 0.5) * scale - 0.5
        return sorted((_detection(tag, q) for tag, q in found.items()), key=lambda d: d.tag)


def _detection(tag: int, q: np.ndarray) -> Detection:
    """A tag read at corners `q`: px is their mean side (0.1 px, as the corners)."""
    sides = np.linalg.norm(q - np.roll(q, -1, axis=0), axis=1)
    return Detection(int(tag), round(float(sides.mean()), 1),
                     tuple((round(float(x), 1), round(float(y), 1)) for x, y in q))


# -- station detect ---------------------------------------------------------------------

def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per image (SPEC §6); the default is the same")
    parser.add_argument("--min-px", type=float, default=12, help="smallest tag side to look for")


def read_gray(path: str):
    """(greyscale image or None, problem or None): why a file is not a picture, in words,
    without OpenCV's own warnings on stderr (imread prints them for a missing file)."""
    import cv2

    file = Path(path)
    if file.is_dir():
        return None, "is a folder, not an image"
    try:
        with file.open("rb") as f:
            head = f.read(2)
            f.seek(-min(64, file.stat().st_size), 2)
            tail = f.read()
    except FileNotFoundError:
        return None, "no such file"
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    if not head:
        return None, "is empty"
    # imread, not imdecode: it reads what it can of a truncated JPEG (imdecode gives up).
    gray = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        return None, "is not an image OpenCV can read (PNG, JPEG, BMP, TIFF, WebP...)"
    if head == b"\xff\xd8" and b"\xff\xd9" not in tail:
        # The decoder fills the missing part with grey: tags there cannot be read.
        return gray, "is a truncated JPEG: only its first part was read"
    return gray, None


def run(args) -> int:
    """Print one JSON line per image, in order. An image that cannot be read still gets its
    line (no tags, and `error` saying why) and a message on stderr naming it; the exit
    status is then 1."""
    detector = TagDetector(min_px=args.min_px)
    failed = 0
    for path in args.images:
        gray, problem = read_gray(path)
        if problem:
            print(f"station detect: {'warning' if gray is not None else 'error'}: "
                  f"{path!r} {problem}", file=sys.stderr)
        out = {"image": path, "tags": []}
        if gray is None:
            failed += 1
            out["error"] = problem
        else:
            out["tags"] = [d.as_json() for d in detector.detect_any_size(gray)]
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    return 1 if failed else 0
