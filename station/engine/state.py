"""Per-camera and per-gate working state of the engine (no logic beyond set-up)."""

from __future__ import annotations

from collections import deque

from ..config import Config
from .passes import GateBeam
from .tracks import Track

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

class CamState:
    """A camera, where it stands, and its recent tracks."""

    __slots__ = ("id", "gate", "quarter", "oncoming", "at_gate", "open", "recent")

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
