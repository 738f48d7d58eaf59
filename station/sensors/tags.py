"""Reading AprilTag bibs from frames (OpenCV, 36h11), and the `station detect` command.

Bib `n` wears tag `2n` on the front and `2n+1` on the back (SPEC §1). Ids 0 and 1 are never
printed and 586 would be bib 293's front: a read of those is a misread and is dropped.
`px` is the tag's side in pixels (mean of the black square's four sides): the engine and
the simulation use it as a distance cue.

Tuning (see bench/detect_bench.py for the figures): the adaptive threshold runs at a single
window size instead of OpenCV's three, contours smaller than the smallest tag we can decode
(~12 px) or larger than a tag can be are skipped before decoding, and bit errors are
corrected less eagerly than OpenCV's default so that tag-like clutter (chequered flags, black
squares with print) is rejected rather than "corrected" into a bib.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

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


class TagDetector:
    """Finds bib tags in grey (or BGR) frames. One instance per thread (OpenCV detectors
    keep scratch buffers); create it once, it is reused frame after frame."""

    def __init__(self, *, min_px: float = 12, max_px: float = 400, window_px: int = 9,
                 threshold: float = 7, correction: float = 0.4, refine: bool = False):
        import cv2

        self._cv2 = cv2
        self.min_px, self.max_px = min_px, max_px
        self._dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_APRILTAG_36h11)
        p = cv2.aruco.DetectorParameters()
        # One threshold window sized for the small tags (the large ones have wide borders and
        # survive any window); OpenCV's default tries 3, 13 and 23 px, which triples the work.
        p.adaptiveThreshWinSizeMin = p.adaptiveThreshWinSizeMax = window_px
        p.adaptiveThreshConstant = threshold
        # 5 correctable bits x 0.4 = 2: a tag-like pattern must be within 2 bits of a real
        # code (36h11 codes are 11 bits apart), which clutter almost never is.
        p.errorCorrectionRate = correction
        # A tiny tag has 1.75 px per bit: sample the cell centres only.
        p.perspectiveRemovePixelPerCell = 4
        p.perspectiveRemoveIgnoredMarginPerCell = 0.25
        p.cornerRefinementMethod = (cv2.aruco.CORNER_REFINE_SUBPIX if refine
                                    else cv2.aruco.CORNER_REFINE_NONE)
        self._params = p
        self._detectors: dict[int, object] = {}

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

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All bib tags in the image, sorted by tag id."""
        if image.ndim == 3:
            image = self._cv2.cvtColor(image, self._cv2.COLOR_BGR2GRAY)
        det = self._detector_for(max(image.shape[:2]))
        corners, ids, _rejected = det.detectMarkers(image)
        out = []
        if ids is None:
            return out
        for quad, tag in zip(corners, ids.ravel().tolist()):
            if not MIN_TAG <= tag <= MAX_TAG:
                continue
            q = quad.reshape(4, 2).astype(np.float64)
            sides = np.linalg.norm(q - np.roll(q, -1, axis=0), axis=1)
            out.append(Detection(int(tag), round(float(sides.mean()), 1),
                                 tuple((round(float(x), 1), round(float(y), 1)) for x, y in q)))
        out.sort(key=lambda d: d.tag)
        return out


# -- station detect ---------------------------------------------------------------------

def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per image (SPEC §6); the default is the same")
    parser.add_argument("--min-px", type=float, default=12, help="smallest tag side to look for")


def run(args) -> int:
    """Print one JSON line per image; an unreadable image is reported on stderr (naming it)
    and the others are still read. Exit status 1 if any image could not be read."""
    import cv2

    detector = TagDetector(min_px=args.min_px)
    failed = 0
    for path in args.images:
        gray = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if gray is None:
            print(f"station detect: error: cannot read image {path!r} "
                  "(missing, unreadable or not an image)", file=sys.stderr)
            failed += 1
            continue
        tags = [d.as_json() for d in detector.detect(gray)]
        sys.stdout.write(json.dumps({"image": path, "tags": tags}) + "\n")
        sys.stdout.flush()
    return 1 if failed else 0
