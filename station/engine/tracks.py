"""Tag reads -> tracks: one bib seen by one camera during one stay in its stretch.

A track is the run of reads of one bib's tags (front or back) by one camera with no gap
longer than `TRACK_GAP_S`. Tracks, not single reads, are what the engine believes: a track
of one read is a stray (a misread id, a bib in the crowd) and never credits anything.

A tag's side in pixels is inversely proportional to its distance from the camera, so 1/px
falls on a straight line in time that reaches zero where the runner is at the camera, i.e.
at the gate line for a camera standing at its gate. `crossing_s` fits that line to the
reads nearest the gate (the last seconds for an oncoming camera, the first for a departing
one) and returns the time the runner crossed the line.
"""

from __future__ import annotations

# Reads of one bib further apart than this are separate visits to the stretch.
TRACK_GAP_S = 3.5
# Only the reads this close in time to the line are used for the crossing fit: far away,
# px is small and its rounding noise dominates.
FIT_SPAN_S = 3.0
# Without px (or with a fit that makes no sense), the crossing is assumed this far from the
# read nearest the line: tags go out of frame a metre or two before the line, so the lead
# scales with the runner's pace, and so does the time they take along the stretch. The lead
# is estimated as a fraction of the track's duration, learnt per camera from passes the beam
# timed (CamState.lead_ratio); until then a typical fraction, and a lone read gets
# DEFAULT_LEAD_S.
DEFAULT_LEAD_S = 0.5
DEFAULT_LEAD_RATIO = 0.07
MIN_LEAD_S = 0.1
# A fitted crossing further than this from the read nearest the line is not believed.
MAX_LEAD_S = 3.0
# Without a fit, a track whose read nearest the line shows the tag at least this big (px)
# ended close to the line; smaller, the runner was last seen far away.
REACH_PX = 40.0
FAR, NEAR, FITTED = 0, 1, 2
# Two reads this far apart (s) are enough for a fit (see _fit_crossing).
TWO_READ_SPAN_S = 1.0
# A lone read this big is a runner near the line (strays come from afar: px 15-40).
LONE_READ_PX = 42.0
# A tag this big (px) is near the camera: somebody is at the gate, not in the distance.
NEAR_PX = 14.0


class Track:
    """Reads of one bib by one camera. `reads` holds (t_s, px_or_None) and is dropped once
    the track is closed and summarised; the counts and the fitted crossing stay."""

    __slots__ = ("cam", "bib", "first_s", "last_s", "n_front", "n_back", "reads",
                 "_cross", "closed", "credited", "near_first_s", "near_last_s",
                 "sides", "_runs")

    def __init__(self, cam, bib: int, t_s: float):
        self.cam = cam
        self.bib = bib
        self.first_s = t_s
        self.last_s = t_s
        self.n_front = 0
        self.n_back = 0
        self.reads: list | None = []
        self._cross: float | None = None
        self.closed = False
        # The pass this track has already credited (a track credits at most one pass).
        self.credited = None
        # First and last read with the tag big enough to be near the camera (None: none).
        self.near_first_s: float | None = None
        self.near_last_s: float | None = None
        # The tag side (1: back) of each read, in order, while open; then only the side
        # the first and the last reads showed and how many in a row (see _side_runs).
        self.sides: bytearray | None = bytearray()
        self._runs: tuple | None = None

    @property
    def n_reads(self) -> int:
        return self.n_front + self.n_back

    @property
    def mid_s(self) -> float:
        return 0.5 * (self.first_s + self.last_s)

    def n_forward(self) -> int:
        """Reads that show the runner facing their running direction."""
        return self.n_front if self.cam.oncoming else self.n_back

    def n_backward(self) -> int:
        return self.n_back if self.cam.oncoming else self.n_front

    def backward_at_line(self) -> bool | None:
        """Did the runner face backwards nearest the line (the last reads of an oncoming
        camera, the first of a departing one)? None: fewer than two reads in a row there
        say so. A runner may turn on the stretch: this, not the totals, is how they crossed."""
        runs = self._runs if self._runs is not None else _side_runs(self.sides)
        side, run = runs[2:] if self.cam.oncoming else runs[:2]
        if run < 2:
            return None
        return (side == 1) == self.cam.oncoming

    def crossing_s(self) -> float:
        """When this runner crossed the camera's gate line (see module docstring)."""
        return self._fit()[0]

    def crossing_quality(self) -> int:
        """FITTED (px growth fits a line), NEAR (no fit, but read close to the line or
        without px) or FAR (read only far away: no idea when, or if, they cross)."""
        return self._fit()[1]

    def _fit(self) -> tuple[float, int]:
        if self.closed:
            return self._cross
        # Open: refit whenever reads were added since the last fit.
        n = len(self.reads)
        if self._cross is None or self._cross[0] != n:
            lead = self.cam.lead_s(self.bib, self.first_s, self.last_s)
            self._cross = (n, _fit_crossing(self.reads, self.cam.oncoming,
                                            self.first_s, self.last_s, lead))
        return self._cross[1]

    def lone_near(self) -> bool:
        """A single read, but of a tag so big the runner was a few metres from the line:
        one frame of a real runner (a badly printed bib), not a stray from the distance."""
        if self.n_front + self.n_back != 1 or not self.reads:
            return False
        px = self.reads[0][1]
        return px is not None and px >= LONE_READ_PX

    def close(self) -> None:
        if not self.closed:
            self._cross = self._fit()  # fit now, while the reads are still here
            self._runs = _side_runs(self.sides)
            self.sides = None
            self.closed = True
            if len(self.reads) > 1:   # a lone read is kept: its px says how near it was
                self.reads = None


def _side_runs(sides: bytearray) -> tuple[int, int, int, int]:
    """(first side, reads in a row showing it, last side, reads in a row showing it)."""
    n = len(sides)
    if not n:
        return (-1, 0, -1, 0)
    first, last = sides[0], sides[-1]
    i = 1
    while i < n and sides[i] == first:
        i += 1
    j = n - 2
    while j >= 0 and sides[j] == last:
        j -= 1
    return (first, i, last, n - 1 - j)


def default_lead_s(first_s: float, last_s: float, ratio: float) -> float:
    if last_s - first_s <= 0:
        return DEFAULT_LEAD_S
    return min(MAX_LEAD_S, max(MIN_LEAD_S, ratio * (last_s - first_s)))


def _fit_crossing(reads: list, oncoming: bool, first_s: float, last_s: float,
                  lead_s: float = DEFAULT_LEAD_S) -> tuple[float, int]:
    if oncoming:
        near_s, sign = last_s, 1.0
        near_px = reads[-1][1] if reads else None
        pts = [(t, px) for t, px in reads if px and t >= last_s - FIT_SPAN_S]
    else:
        near_s, sign = first_s, -1.0
        near_px = reads[0][1] if reads else None
        pts = [(t, px) for t, px in reads if px and t <= first_s + FIT_SPAN_S]
    default = (near_s + sign * lead_s,
               NEAR if near_px is None or near_px >= REACH_PX else FAR)
    if len(pts) < 3:
        # Few reads near the line (a bib the camera seldom reads): all of them, even two,
        # fix the line if they are far enough apart that px rounding cannot fake the
        # growth (with the lead capped at MAX_LEAD_S, reads 1 s apart need the tag a third
        # bigger).
        pts = [(t, px) for t, px in reads if px]
        if len(pts) < 2 or pts[-1][0] - pts[0][0] < TWO_READ_SPAN_S:
            return default
    # Weighted least squares u = a*t + b with u = 1/px, in time relative to the first
    # point. px is read to a roughly constant relative error, so u's error grows as 1/px:
    # weighting each residual by px (w = px^2) trusts the near, big reads most.
    t0 = pts[0][0]
    n = st = su = stt = stu = 0.0
    for t, px in pts:
        t -= t0
        u = 1.0 / px
        w = px * px
        n += w
        st += w * t
        su += w * u
        stt += w * t * t
        stu += w * t * u
    den = n * stt - st * st
    if den <= 1e-6 * n * n:   # the reads span no time to speak of
        return default
    a = (n * stu - st * su) / den
    b = (su - a * st) / n
    # An oncoming tag grows (u falls), a departing one shrinks (u rises).
    if a * sign >= 0:
        return default
    cross = t0 - b / a
    lead = (cross - near_s) * sign
    if lead < 0 or lead > MAX_LEAD_S:
        # The line before the nearest read, or far beyond it: the fit is noise (a runner
        # read only far away); fall back to the typical lead.
        return default
    return (cross, FITTED)
