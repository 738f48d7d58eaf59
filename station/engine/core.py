"""The engine: events in (any order within `reorder_s`), conclusions out. Pure: no I/O,
no clock, no threads.

It is a discrete-event computation. Events are re-ordered by `t`; decisions that wait for
something (a beam cluster's merge time, a pass's credit, a blocked beam, a spotter deadline,
a camera track going quiet) are timers with a deadline D. A timer fires once every event
with t <= D has been processed, and before any event with t > D. So every decision depends
on exactly the events up to its deadline, whether the events come from a file at full speed
(replay) or trickle in while `advance()` moves the clock (live): live == replay.

The parts: passes.py (beam -> clusters, torso times, blocked), tracks.py (tag reads ->
tracks), credit.py (who made a pass), laps.py, facing.py, safety.py; this module wires them
and keeps the per-gate and per-camera state.
"""

from __future__ import annotations

import dataclasses
from heapq import heappop, heappush
from bisect import bisect_left, bisect_right, insort
from collections import deque

from ..config import MAX_BIB, Config
from . import credit as cr
from .facing import facings
from .laps import laps_of, splits_of
from .model import (ANONYMOUS, BEAM_BLOCKED, CAMERA, MANUAL, PREDICTED, SOLO, TAG, Fault,
                    Lap, Pass, Results, Split)
from .passes import GateBeam, remember_torso
from .safety import Safety
from .tracks import TRACK_GAP_S, Track

# How long to wait after a cluster before crediting it: oncoming cameras have read the
# runner by then; a departing camera needs a few seconds of reads after the crossing.
CREDIT_WAIT_ONCOMING_S = 1.5
CREDIT_WAIT_DEPARTING_S = 3.0
CREDIT_WAIT_NO_CAMERA_S = 0.5
# Clusters, passes and tracks older than this can no longer change a decision.
RECENT_S = 30.0
# Track bookkeeping (closing quiet tracks, pruning) runs on this grid of session times.
TICK_S = 2.0
# A camera stretch ending (oncoming) or starting (departing) this close to its gate is at
# the gate: its tracks time and credit that gate's passes.
AT_GATE_M = 1.0

_INF = float("inf")


class _Cam:
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


class _Gate:
    __slots__ = ("id", "is_finish", "beam", "credit_cams", "wait_s", "recent",
                 "recent_passes", "blocks", "pending_cam", "by_bib")

    def __init__(self, gate, cfg: Config, cams: list[_Cam]):
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


class Engine:
    """See the module docstring and docs/ARCHITECTURE.md ("Engine API")."""

    def __init__(self, config: Config, reorder_s: float = 2.0):
        self.config = config
        self.reorder_s = float(reorder_s)
        self.version = 0
        self.late = 0
        # (t, event) not yet safe to process, in t order (arrival order for equal t).
        self._pending: deque = deque()
        self._timers: list = []        # heap of (deadline, seq, kind, a, b)
        self._tseq = 0
        self._mark = -_INF             # events with t <= mark have all arrived
        self._done_t = -_INF           # everything before this is processed
        self._last_t = 0.0             # the latest event processed
        self._clock_s = 0.0            # the latest advance()
        self._tick_at: float | None = None
        self._cams = {}
        for c in config.cameras:
            self._cams[c.id] = _Cam(c, config.gate(c.gate).position_m, config.length_m)
        self._gates = {g.id: _Gate(g, config, [c for c in self._cams.values() if c.gate == g.id])
                       for g in config.gates}
        self._finish = self._gates[config.finish.id]
        self._names = {r.bib: r.name for r in config.runners}
        self._passes: list[cr.PassRec] = []
        self._bib_tracks: dict[int, list[Track]] = {}
        self._torso: dict[tuple[int, bool], list[float]] = {}
        self._last_dir: dict[int, bool] = {}   # bib -> last seen running backwards
        self._checked_in: set[int] = set()
        self._checked_out: set[int] = set()
        self._faults: list[list] = []         # [kind, gate, start_s, end_s]
        self._open_faults: dict[tuple, list] = {}
        self.safety = Safety(self)
        self._alarmed = self.safety.active    # bib -> sounding alarms (checked per read)
        self._cache: tuple | None = None
        self._handlers = {
            "beam": self._on_beam, "tag": self._on_tag, "checkin": self._on_checkin,
            "checkout": self._on_checkout, "fault": self._on_fault,
            "silence": self._on_silence, "correct": self._on_correct,
        }

    # ---- feeding ---------------------------------------------------------------------

    def feed(self, ev: dict) -> None:
        """One event, in arrival order."""
        self.feed_many((ev,))

    def feed_many(self, events) -> None:
        """Events in arrival order (a replay's whole log: this is its hot loop)."""
        pending, timers, handlers = self._pending, self._timers, self._handlers
        reorder_s = self.reorder_s
        for ev in events:
            t = ev["t"]
            if t < self._done_t:
                # Later than the window allows: processed now, out of order (the live
                # worker rebuilds from the store when this count grows).
                self.late += 1
                self._process(ev, t)
                continue
            if pending and t < pending[-1][0]:
                self._insert(t, ev)
            else:
                pending.append((t, ev))
            mark = t - reorder_s
            if mark <= self._mark:
                continue
            self._mark = mark
            # _release(mark), inlined.
            while pending and pending[0][0] <= mark:
                t, ev = pending.popleft()
                while timers and timers[0][0] < t:
                    self._fire()
                self._done_t = self._last_t = t
                h = handlers.get(ev["type"])
                if h is not None:
                    h(ev, t)
            while timers and timers[0][0] <= mark:
                self._fire()

    def advance(self, t_s: float) -> None:
        """The session clock reached `t_s`: decide what is due (live only)."""
        if t_s > self._clock_s:
            self._clock_s = t_s
        mark = t_s - self.reorder_s
        if mark > self._mark:
            self._mark = mark
            self._release(mark)

    def finish(self) -> None:
        """End of the log: time runs on with no more events; everything pending is decided."""
        self._release(_INF)

    def _release(self, mark: float) -> None:
        pending, timers, handlers = self._pending, self._timers, self._handlers
        while pending and pending[0][0] <= mark:
            t, ev = pending.popleft()
            while timers and timers[0][0] < t:
                self._fire()
            self._done_t = self._last_t = t
            h = handlers.get(ev["type"])
            if h is not None:
                h(ev, t)
        while timers and timers[0][0] <= mark:
            self._fire()

    def _insert(self, t: float, ev: dict) -> None:
        """An event earlier than the last one held: into its place, after equal times (a
        stable sort by t). Lines are at most a few seconds out of order, so the walk from
        the right is short."""
        pending = self._pending
        i = len(pending)
        while i and pending[i - 1][0] > t:
            i -= 1
        pending.insert(i, (t, ev))

    def _process(self, ev: dict, t: float) -> None:
        h = self._handlers.get(ev["type"])
        if h is not None:
            h(ev, t)

    def _timer(self, deadline: float, kind: str, a=None, b=None) -> None:
        self._tseq += 1
        heappush(self._timers, (deadline, self._tseq, kind, a, b))

    def _fire(self) -> None:
        deadline, _, kind, a, b = heappop(self._timers)
        if deadline > self._done_t:
            self._done_t = deadline
        if kind == "merge":
            cluster = a.beam.merge_timeout(b)
            if cluster is not None:
                self._cluster_done(a, cluster)
        elif kind == "credit":
            self._decide(self._gates[a.gate], a, deadline)
        elif kind == "alarm":
            self.safety.check(a, b)
        elif kind == "tick":
            self._tick(deadline)
        elif kind == "block":
            self._blocked(a, b)

    # ---- beam ------------------------------------------------------------------------

    def _on_beam(self, ev: dict, t: float) -> None:
        gate = self._gates.get(ev["gate"])
        if gate is None:
            return
        beam = gate.beam
        if ev["broken"]:
            if beam.on_broken(t):
                self._timer(t + self.config.blocked_after_s, "block", gate, beam.gen)
            return
        r = beam.on_clear(t)
        if r is None:
            return
        kind, x = r
        if kind == "break":
            self._timer(x + beam.merge_s, "merge", gate, x)
        elif kind == "close":
            if x is not None:
                self._cluster_done(gate, x)
        else:   # fault_end
            key = (BEAM_BLOCKED, gate.id)
            row = self._open_faults.pop(key, None)
            if row is not None:
                row[3] = t
            gate.blocks[-1][1] = t
            self.version += 1
        if kind != "fault_end":
            gate.pending_cam.clear()

    def _blocked(self, gate: _Gate, gen: int) -> None:
        r = gate.beam.block_timeout(gen)
        if r is None:
            return
        start, cluster = r
        if cluster is not None:
            self._cluster_done(gate, cluster)
        row = [BEAM_BLOCKED, gate.id, start, None]
        self._faults.append(row)
        self._open_faults[(BEAM_BLOCKED, gate.id)] = row
        gate.blocks.append([start, None])
        for tr in gate.pending_cam:
            if tr.crossing_s() >= start:
                self._camera_pass(gate, tr)
        gate.pending_cam.clear()
        self.version += 1

    def _cluster_done(self, gate: _Gate, cluster) -> None:
        gate.recent.append(cluster)
        self._timer(cluster.end_s + gate.wait_s, "credit", cluster)

    # ---- credit ----------------------------------------------------------------------

    def _history(self, bib: int, backward: bool | None = None) -> list[float]:
        """The runner's recent torso durations when running in that direction (a runner
        going backwards is slower, so their breaks are longer); unknown direction: as last."""
        if backward is None:
            backward = self._last_dir.get(bib, False)
        return self._torso.setdefault((bib, backward), [])

    def _decide(self, gate: _Gate, cluster, now: float) -> None:
        cluster.decided = True
        matched = {}
        if gate.credit_cams:
            others = [c.rough_s() for c in gate.recent if c is not cluster]
            beam = gate.beam
            if beam.cluster is not None:
                others.append(beam.cluster.rough_s())
            if beam.broken_since is not None:
                others.append(beam.broken_since)
            matched = cr.match_tracks(cluster, gate.credit_cams, others)
        bibs = sorted(matched, key=lambda b: (cr.crossing_of(matched[b]), b))
        if not bibs:
            s, e = cluster.torso()
            bibs_, source = self._fallback(gate, cluster.rough_s(), set())
            who = bibs_[0] if bibs_ else 0
            hist = self._history(who)
            p = cr.PassRec(gate.id, cr.torso_time(s, e, hist), bibs_, source, cluster, e - s)
            remember_torso(hist, e - s)
            cluster.passes.append(p)
            self._add_pass(gate, p)
            return
        backward = {}
        for bib, tracks in matched.items():
            fwd = sum(tr.n_forward() for tr in tracks)
            bwd = sum(tr.n_backward() for tr in tracks)
            backward[bib] = self._last_dir[bib] = bwd > fwd
        history = lambda bib: self._history(bib, backward[bib])  # noqa: E731
        for t, bib, dur in cr.split_cluster(cluster, bibs, history):
            tracks = matched[bib]
            p = cr.PassRec(gate.id, t, (bib,), TAG, cluster, dur, tracks)
            for tr in tracks:
                tr.credited = p
            remember_torso(history(bib), dur)
            cluster.passes.append(p)
            self._add_pass(gate, p)

    def _fallback(self, gate: _Gate, t: float, excluded: set) -> tuple[tuple, str]:
        """Credit for a pass no camera explains: predicted, else solo, else anonymous."""
        excluded = set(excluded) | self._checked_out
        min_lap = self.config.min_lap_s
        for bib, plist in gate.by_bib.items():
            if any(abs(p.t_s - t) < min_lap for p in plist[-3:]):
                excluded.add(bib)
        # A runner the cameras see still coming is not the one who just crossed.
        for cam in gate.credit_cams:
            for tr in cam.recent:
                if tr.credited is None and tr.n_front + tr.n_back >= cr.MIN_TRACK_READS \
                        and tr.crossing_s() > t + cr.MATCH_TOL_S:
                    excluded.add(tr.bib)
        bib = cr.predicted_bib(t, gate.by_bib, min_lap, self.config.max_lap_s, excluded)
        if bib is not None:
            return (bib,), PREDICTED
        if len(self._checked_in) == 1:
            (bib,) = self._checked_in
            if bib not in excluded:
                return (bib,), SOLO
        return (), ANONYMOUS

    def _add_pass(self, gate: _Gate, p: cr.PassRec) -> None:
        self._passes.append(p)
        gate.recent_passes.append(p)
        self._index(gate, p)
        if p.source in (TAG, CAMERA, MANUAL):
            for bib in p.bibs:
                self._take_back(gate, bib, p)
        if p.source in (TAG, CAMERA) and gate.credit_cams:
            due = max(p.t_s + self.config.spotter_timeout_s, self._done_t)
            for bib in p.bibs:
                self._timer(due, "alarm", p, bib)
        self.version += 1

    def _index(self, gate: _Gate, p: cr.PassRec) -> None:
        for bib in p.bibs or (0,):
            insort(gate.by_bib.setdefault(bib, []), p, key=_pass_t)

    def _unindex(self, gate: _Gate, p: cr.PassRec) -> None:
        for bib in p.bibs or (0,):
            plist = gate.by_bib.get(bib)
            if plist is not None and p in plist:
                plist.remove(p)

    def _take_back(self, gate: _Gate, bib: int, proof: cr.PassRec) -> None:
        """A sure pass of `bib` proves its guessed credits close in time wrong."""
        plist = gate.by_bib.get(bib)
        if not plist:
            return
        min_lap = self.config.min_lap_s
        i = bisect_left(plist, proof.t_s - min_lap, key=_pass_t)
        for q in plist[i:bisect_right(plist, proof.t_s + min_lap, key=_pass_t)]:
            if q is not proof and q.source in (PREDICTED, SOLO) \
                    and abs(q.t_s - proof.t_s) < min_lap:
                bibs, source = self._fallback(gate, q.t_s, {bib})
                self._recredit(gate, q, bibs, source)

    def _recredit(self, gate: _Gate, p: cr.PassRec, bibs: tuple, source: str) -> None:
        if not p.deleted:
            self._unindex(gate, p)
        p.bibs, p.source = bibs, source
        if not p.deleted:
            self._index(gate, p)
        self.version += 1

    def _camera_pass(self, gate: _Gate, tr: Track) -> None:
        """A runner crossed while the beam was blocked: timed by the camera."""
        t = tr.crossing_s()
        for q in gate.by_bib.get(tr.bib, ())[-3:]:
            if abs(q.t_s - t) < self.config.min_lap_s:
                return
        p = cr.PassRec(gate.id, t, (tr.bib,), CAMERA, tracks=[tr])
        tr.credited = p
        self._add_pass(gate, p)

    # ---- tags ------------------------------------------------------------------------

    def _on_tag(self, ev: dict, t: float) -> None:
        cam = self._cams.get(ev["camera"])
        if cam is None:
            return
        tag = ev["tag"]
        bib = tag >> 1
        if bib < 1 or bib > MAX_BIB:
            return
        tr = cam.open.get(bib)
        if tr is None or t - tr.last_s > TRACK_GAP_S:
            tr = self._new_track(cam, bib, tr, t)
        elif t > tr.last_s:
            tr.last_s = t
        if tag & 1:
            tr.n_back += 1
        else:
            tr.n_front += 1
        tr.reads.append((t, ev.get("px")))
        if bib in self._alarmed:
            self.safety.on_read(bib, bool(tag & 1) != cam.oncoming, t)

    def _new_track(self, cam: _Cam, bib: int, old: Track | None, t: float) -> Track:
        if old is not None:
            old.close()
            self._track_closed(old)
        tr = Track(cam, bib, t)
        cam.open[bib] = tr
        cam.recent.append(tr)
        self._bib_tracks.setdefault(bib, []).append(tr)
        if self._tick_at is None:
            self._tick_at = (t // TICK_S + 1) * TICK_S
            self._timer(self._tick_at, "tick")
        return tr

    def _track_closed(self, tr: Track) -> None:
        if tr.credited is not None or tr.n_front + tr.n_back < cr.MIN_TRACK_READS \
                or not tr.cam.at_gate:
            return
        gate = self._gates[tr.cam.gate]
        c = tr.crossing_s()
        for start, end in gate.blocks:
            if start <= c and (end is None or c <= end):
                self._camera_pass(gate, tr)
                return
        since = gate.beam.broken_since
        if since is not None and c >= since:
            gate.pending_cam.append(tr)

    def _tick(self, k: float) -> None:
        self._tick_at = None
        still_open = False
        for cam in self._cams.values():
            if cam.open:
                for bib, tr in list(cam.open.items()):
                    if tr.last_s + TRACK_GAP_S < k:
                        del cam.open[bib]
                        tr.close()
                        self._track_closed(tr)
                still_open = still_open or bool(cam.open)
            recent = cam.recent
            while recent and recent[0].closed and recent[0].last_s < k - RECENT_S:
                recent.popleft()
        for gate in self._gates.values():
            while gate.recent and gate.recent[0].decided and gate.recent[0].end_s < k - RECENT_S:
                gate.recent.popleft()
            while gate.recent_passes and gate.recent_passes[0].t_s < k - RECENT_S:
                gate.recent_passes.popleft()
        if still_open:
            self._tick_at = k + TICK_S
            self._timer(self._tick_at, "tick")

    # ---- people ----------------------------------------------------------------------

    def _on_checkin(self, ev: dict, t: float) -> None:
        self._checked_in.add(ev["bib"])
        self._checked_out.discard(ev["bib"])
        self.version += 1

    def _on_checkout(self, ev: dict, t: float) -> None:
        self._checked_in.discard(ev["bib"])
        self._checked_out.add(ev["bib"])
        self.version += 1

    def _on_fault(self, ev: dict, t: float) -> None:
        source = str(ev["source"])
        cam = self._cams.get(source)
        gate = cam.gate if cam is not None else source
        key = (str(ev["kind"]), source)
        if ev["active"]:
            if key not in self._open_faults:
                row = [key[0], gate, t, None]
                self._faults.append(row)
                self._open_faults[key] = row
                self.version += 1
        else:
            row = self._open_faults.pop(key, None)
            if row is not None:
                row[3] = t
                self.version += 1

    def _on_silence(self, ev: dict, t: float) -> None:
        bib = ev.get("bib")
        self.safety.silence(bib if isinstance(bib, int) else None, t)

    def _on_correct(self, ev: dict, t: float) -> None:
        """A coach's correction of a pass, named by gate and time as shown (3 decimals)."""
        gate = self._gates.get(ev.get("gate"))
        action = ev.get("action")
        try:
            pass_t = round(float(ev.get("pass_t")), 3)
        except (TypeError, ValueError):
            return
        bib = ev.get("bib")
        bibs = (bib,) if isinstance(bib, int) and bib > 0 else ()
        if gate is None:
            return
        if action == "add":
            if bibs:
                self._add_pass(gate, cr.PassRec(gate.id, pass_t, bibs, MANUAL))
            return
        want_deleted = action == "restore"
        found = [p for p in self._passes
                 if p.gate == gate.id and abs(round(p.t_s, 3) - pass_t) < 5e-4]
        found.sort(key=lambda p: p.deleted != want_deleted)
        if not found:
            return
        p = found[0]
        if action == "assign":
            self._recredit(gate, p, bibs, MANUAL)
            if bibs:
                self._take_back(gate, bibs[0], p)
        elif action == "delete" and not p.deleted:
            self._unindex(gate, p)
            p.deleted = True
            self.version += 1
        elif action == "restore" and p.deleted:
            p.deleted = False
            self._index(gate, p)
            self.version += 1

    # ---- results ---------------------------------------------------------------------

    @property
    def now_s(self) -> float:
        """Session time the engine has reached (latest event or clock tick)."""
        return max(self._last_t, self._clock_s)

    def results(self) -> Results:
        """An immutable snapshot of everything concluded so far (built on demand)."""
        if self._cache is not None and self._cache[0] == self.version:
            res = self._cache[1]
            if res.now_s != self.now_s:
                res = dataclasses.replace(res, now_s=self.now_s)
            return res
        res = self._build()
        self._cache = (self.version, res)
        return res

    def _build(self) -> Results:
        cfg = self.config
        laps, splits = [], []
        finish = self._finish
        checkpoints = [g for g in self._gates.values() if not g.is_finish]
        for bib in sorted(finish.by_bib):
            runs = laps_of(finish.by_bib[bib], cfg.min_lap_s, cfg.max_lap_s)
            if not runs:
                continue
            faces = facings(self._bib_tracks.get(bib, ()) if bib else (),
                            [(s.t_s, e.t_s) for _, _, s, e in runs])
            name = self._names.get(bib, "")
            for (run, lap, s, e), q in zip(runs, faces):
                laps.append(Lap(bib, name, run, lap, s.t_s, e.t_s, e.t_s - s.t_s, *q,
                                e.source))
            if bib:
                cps = [p for g in checkpoints for p in g.by_bib.get(bib, ())]
                for run, lap, gate, t, split in splits_of(runs, cps):
                    splits.append(Split(bib, run, lap, gate, t, split))
        passes = sorted((Pass(p.gate, p.t_s, p.bibs, p.source, p.deleted) for p in self._passes),
                        key=lambda p: (p.t_s, p.gate, p.bibs))
        faults = tuple(Fault(*row) for row in sorted(self._faults, key=lambda r: (r[2], r[0], r[1])))
        return Results(laps=tuple(laps), passes=tuple(passes), splits=tuple(splits),
                       alarms=self.safety.alarms(), faults=faults,
                       checked_in=frozenset(self._checked_in), now_s=self.now_s)


def _pass_t(p) -> float:
    return p.t_s
