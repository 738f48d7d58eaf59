"""Per-camera and per-gate working state of the engine (no logic beyond set-up)."""

from __future__ import annotations

from collections import deque

from ..config import Config
from .passes import GateBeam
from .tracks import DEFAULT_LEAD_RATIO, DEFAULT_LEAD_S, Track, default_lead_s

# How long to wait after a cluster before crediting it: oncoming cameras have read the
# runner by then; a departing camera needs a few seconds of reads after the crossing.
CREDIT_WAIT_ONCOMING_S = 1.5
CREDIT_WAIT_DEPARTING_S = 3.0
CREDIT_WAIT_NO_CAMERA_S = 0.5
# Clusters, passes and tracks older than this can no longer change a decision.
RECENT_S = 15.0
# Track bookkeeping (closing quiet tracks, pruning) runs on this grid of session times.
TICK_S = 2.0
# A camera stretch ending (oncoming) or starting (departing) this close to its gate is at
# the gate: its tracks time and credit that gate's passes.
AT_GATE_M = 1.0
# Lead ratios (tracks.py) learnt from this many recent beam-timed passes; a median of them.
LEAD_SAMPLES = 15
# Whatever was learnt, a camera at its gate loses a runner between 1/50 and 1/5 of their
# time along a stretch before the line.
MIN_LEAD_RATIO, MAX_LEAD_RATIO = 0.02, 0.2
# A runner who stepped onto the stretch near the line (a first lap) makes a short track,
# which says nothing of how long the stretch takes them.
LEARN_MIN_TRACK_S = 3.0
BIB_LEAD_SAMPLES = 5

class CamState:
    """A camera, where it stands, and its recent tracks."""

    __slots__ = ("id", "gate", "quarter", "oncoming", "at_gate", "open", "recent",
                 "lead_ratio", "_ratios", "_leads", "_all_leads")

    def __init__(self, cam, gate_pos_m: float, length_m: float):
        self.id = cam.id
        self.gate = cam.gate
        self.quarter = cam.quarter
        self.oncoming = cam.looks == "oncoming"
        a, b = cam.covers_m
        off = (gate_pos_m - b) % length_m if self.oncoming else (a - gate_pos_m) % length_m
        self.at_gate = min(off, length_m - off) <= AT_GATE_M
        self.open: dict[int, Track] = {}     # bib -> its track still being read
        self.recent: deque[Track] = deque()  # tracks of the last RECENT_S, oldest first
        # Lead from the read nearest the line to the crossing, as a fraction of a track's
        # duration (tracks.py): learnt from passes the beam timed.
        self.lead_ratio = DEFAULT_LEAD_RATIO
        self._ratios: deque[float] = deque(maxlen=LEAD_SAMPLES)
        self._leads: dict[int, deque] = {}   # bib -> their recent leads (s)
        self._all_leads: deque[float] = deque(maxlen=LEAD_SAMPLES)   # everybody's

    def learn_lead(self, bib: int, lead_s: float, track_s: float) -> None:
        leads = self._leads.get(bib)
        if leads is None:
            leads = self._leads[bib] = deque(maxlen=BIB_LEAD_SAMPLES)
        leads.append(lead_s)
        self._all_leads.append(lead_s)
        if track_s >= LEARN_MIN_TRACK_S:
            self._ratios.append(lead_s / track_s)
            if len(self._ratios) >= 3:
                r = sorted(self._ratios)
                self.lead_ratio = min(MAX_LEAD_RATIO, max(MIN_LEAD_RATIO, r[len(r) // 2]))

    def lead_s(self, bib: int, first_s: float, last_s: float) -> float:
        """How long before (oncoming) or after (departing) the line this camera loses or
        finds runner `bib`, for a track without a px fit: the runner's own recent leads
        here; else, oncoming, a fraction of the track's duration (the track is complete
        by the time it matters) unless the track is too short to tell (a runner who
        stepped onto the stretch near the line); else everybody's recent leads here."""
        leads = self._leads.get(bib)
        if leads is not None and len(leads) >= 2:
            return sorted(leads)[len(leads) // 2]
        if self.oncoming and last_s - first_s >= LEARN_MIN_TRACK_S:
            return default_lead_s(first_s, last_s, self.lead_ratio)
        if len(self._all_leads) >= 3:
            return sorted(self._all_leads)[len(self._all_leads) // 2]
        return DEFAULT_LEAD_S


class GateState:
    """A gate: its beam, the cameras at it, recent clusters and passes, credited passes."""

    __slots__ = ("id", "is_finish", "beam", "credit_cams", "wait_s", "recent",
                 "recent_passes", "blocks", "pending_cam", "by_bib")

    def __init__(self, gate, cfg: Config, cams: list[CamState]):
        self.id = gate.id
        self.is_finish = gate.is_finish
        self.beam = GateBeam(gate.id, cfg.glitch_ms, cfg.merge_ms)
        self.credit_cams = [c for c in cams if c.at_gate]
        if any(not c.oncoming for c in self.credit_cams):
            self.wait_s = CREDIT_WAIT_DEPARTING_S
        elif self.credit_cams:
            self.wait_s = CREDIT_WAIT_ONCOMING_S
        else:
            self.wait_s = CREDIT_WAIT_NO_CAMERA_S
        self.recent: deque = deque()          # clusters of the last RECENT_S
        self.recent_passes: deque = deque()   # passes of the last RECENT_S
        self.blocks: list[list] = []          # [start_s, end_s or None] of blocked periods
        self.pending_cam: list[Track] = []    # tracks that crossed while the beam was dark
        self.by_bib: dict[int, list] = {}     # bib (0 = anonymous) -> credited passes by t
