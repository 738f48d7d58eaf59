"""The engine: events in (any order within `reorder_s`), conclusions out. Pure: no I/O,
no clock, no threads.

It is a discrete-event computation. Events are re-ordered by `t`; decisions that wait for
something (a beam cluster's merge time, a pass's credit, a blocked beam, a spotter deadline,
a camera track going quiet) are timers with a deadline D. A timer fires once every event
with t <= D has been processed, and before any event with t > D. So every decision depends
on exactly the events up to its deadline, whether the events come from a file at full speed
(replay) or trickle in while `advance()` moves the clock (live): live == replay.

The parts: passes.py (beam -> clusters, torso times, blocked), tracks.py (tag reads ->
tracks), credit.py (who made a pass), laps.py, facing.py, safety.py (spotter alarms),
state.py (per-gate and per-camera state), people.py (check-ins, faults, silences, coaches'
corrections), snapshot.py (results); this module runs the clock and wires them together.

Memory stays small in a long session: a pass keeps its evidence (beam cluster, camera
tracks) only while decisions may still look at it (`_compact`), an old track only the four
numbers facings need (`_summarise`), and snapshots are built from the previous one.
"""

from __future__ import annotations

import dataclasses
from array import array
from bisect import bisect_left, bisect_right, insort
from collections import deque
from heapq import heappop, heappush
from itertools import islice
from operator import itemgetter

from ..config import MAX_BIB, Config
from . import credit as cr
from .facing import MIN_TRACK_READS as MIN_FACING_READS
from .model import ANONYMOUS, BEAM_BLOCKED, CAMERA, MANUAL, PREDICTED, SOLO, TAG, Results
from .passes import remember_torso, torso_time
from .people import People
from .safety import Safety
from .snapshot import Snapshots
from .state import RECENT_S, TICK_S, CamState, GateState
from .tracks import FAR, MAX_LEAD_S, NEAR_PX, TRACK_GAP_S, Track

_INF = float("inf")
# A pass's evidence is kept this long after its decision (plus the spotter timeout and the
# blocked-beam time, after which late decisions about it can still come).
KEEP_DETAIL_S = 60.0
# A track needs this many reads to teach its camera's lead (tracks.py).
LEARN_MIN_READS = 4

class Engine(People):
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
            self._cams[c.id] = CamState(c, config.gate(c.gate).position_m, config.length_m)
        self._gates = {g.id: GateState(g, config, [c for c in self._cams.values() if c.gate == g.id])
                       for g in config.gates}
        self._finish = self._gates[config.finish.id]
        self._names = {r.bib: r.name for r in config.runners}
        self._passes: list[cr.PassRec] = []
        self._touched: list = []             # passes added or changed since the last snapshot
        self._bib_ver: dict[int, int] = {}   # bib -> bumps when its credited passes change
        # (decided at, pass) whose evidence is still kept (see _compact).
        self._young: deque = deque()
        self._keep_detail_s = KEEP_DETAIL_S + config.spotter_timeout_s + config.blocked_after_s
        # bib -> [mid_s, quarter, forward reads, backward reads] * n: the facing evidence of
        # the bib's camera tracks, once they are old (snapshot.py reads recent ones live).
        self._faced: dict[int, array] = {}
        self._snapshots = Snapshots()
        self._torso: dict[tuple[int, bool], list[float]] = {}
        self._last_dir: dict[int, bool] = {}   # bib -> last seen running backwards
        self._checked_in: set[int] = set()
        # bib -> its latest track (any camera); -bib -> the latest with two reads or more
        self._latest_track: dict[int, Track] = {}
        self._checked_out: set[int] = set()
        self._faults: list[list] = []         # [kind, gate, start_s, end_s]
        self._open_faults: dict[tuple, list] = {}
        self.safety = Safety(self)
        self._alarmed = self.safety.active    # bib -> sounding alarms (checked per read)
        self._cache: tuple | None = None
        # Plain functions, not bound methods: an engine holds no reference to itself, so
        # a dropped one (the live worker rebuilds now and then) is freed at once, not at
        # the next full garbage collection.
        self._handlers = _HANDLERS

    # ---- feeding ---------------------------------------------------------------------

    def feed(self, ev: dict) -> None:
        """One event, in arrival order."""
        t = ev["t"]
        if t < self._done_t:
            # Later than the window allows: processed now, out of order (the live worker
            # rebuilds from the store when this count grows).
            self.late += 1
            self._process(ev, t)
            return
        pending = self._pending
        if pending and t < pending[-1][0]:
            # Earlier than the last one held: into its place, after equal times (a stable
            # sort by t). Lines are at most seconds late, so the walk is short.
            i = len(pending) - 1
            while i and pending[i - 1][0] > t:
                i -= 1
            pending.insert(i, (t, ev))
        else:
            pending.append((t, ev))
        mark = t - self.reorder_s
        if mark > self._mark:
            self._mark = mark
            self._release(mark)

    def feed_many(self, events, chunk: int = 2048) -> None:
        """Events in arrival order: a replay's whole log. The same as `feed` for each (for
        lines within the window), but it re-orders a chunk at a time with one sort, which
        is most of what makes a replay fast."""
        it = iter(events)
        self.feed_timed(iter(lambda: [(ev["t"], ev) for ev in islice(it, chunk)], []))

    def feed_timed(self, blocks) -> None:
        """Like `feed_many`, from lists of (t, event) in arrival order (events.read_blocks)."""
        key = itemgetter(0)
        held = list(self._pending)
        self._pending.clear()
        try:
            for batch in blocks:
                if not batch:
                    continue
                if min(batch, key=key)[0] < self._done_t:
                    # Later than the window allows: sorted in with the rest, counted.
                    self.late += sum(1 for t, _ in batch if t < self._done_t)
                top = max(batch, key=key)[0]
                held += batch
                held.sort(key=key)   # stable: equal times keep their arrival order
                mark = top - self.reorder_s
                if mark <= self._mark:
                    continue
                self._mark = mark
                n = bisect_right(held, mark, key=key)
                self._run(held[:n], mark)
                del held[:n]
        finally:
            # Whatever was read stays pending (a bad line ends a replay, not the events
            # before it).
            self._pending.extend(held)

    def _run(self, ready: list, mark: float) -> None:
        """Process `ready` (in t order, all t <= mark) with the timers due between them,
        then the timers due by `mark`."""
        timers, handlers, on_tag = self._timers, self._handlers, self._on_tag
        for t, ev in ready:
            while timers and timers[0][0] < t:
                self._fire()
            kind = ev["type"]
            if kind == "tag":        # nine events in ten
                on_tag(ev, t)
            else:
                h = handlers.get(kind)
                if h is not None:
                    h(self, ev, t)
        if ready:
            # Kept up to date here rather than per event (the handlers do not read them).
            t = ready[-1][0]
            self._last_t = t
            if t > self._done_t:
                self._done_t = t
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
        pending = self._pending
        ready = []
        while pending and pending[0][0] <= mark:
            ready.append(pending.popleft())
        self._run(ready, mark)

    def _process(self, ev: dict, t: float) -> None:
        h = self._handlers.get(ev["type"])
        if h is not None:
            h(self, ev, t)

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
            self._blocked(a, b, deadline)

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

    def _blocked(self, gate: GateState, gen: int, now: float) -> None:
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
                self._camera_pass(gate, tr, now)
        gate.pending_cam.clear()
        self.version += 1

    def _cluster_done(self, gate: GateState, cluster) -> None:
        gate.recent.append(cluster)
        self.version += 1  # a provisional pass to show before its credit is decided
        self._timer(cluster.end_s + gate.wait_s, "credit", cluster)

    # ---- credit ----------------------------------------------------------------------

    def _history(self, bib: int, backward: bool | None = None) -> list[float]:
        """The runner's recent torso durations when running in that direction (a runner
        going backwards is slower, so their breaks are longer); unknown direction: as last."""
        if backward is None:
            backward = self._last_dir.get(bib, False)
        return self._torso.setdefault((bib, backward), [])

    def _decide(self, gate: GateState, cluster, now: float) -> None:
        cluster.decided = True
        matched = {}
        if gate.credit_cams:
            here = cluster.start_s
            # Other activity at the gate a track may be nearer to: (rough time, None), or
            # (rough time, bibs) for a cluster already decided with every body read by
            # the cameras, which only those bibs' tracks can still be nearer to.
            others = []
            for c in gate.recent:
                if c is not cluster and abs(c.breaks[0][0] - here) < 2 * cr.MATCH_TOL_S:
                    done = c.decided and c.passes and all(q.source == TAG for q in c.passes)
                    others.append((c.rough_s(), {b for q in c.passes for b in q.bibs}
                                   if done else None))
            beam = gate.beam
            if beam.cluster is not None:
                others.append((beam.cluster.rough_s(), None))
            if beam.broken_since is not None:
                others.append((beam.broken_since, None))
            matched = cr.match_tracks(cluster, gate.credit_cams, others)
        bibs = sorted(matched, key=lambda b: (cr.crossing_of(matched[b]), b))
        if len(bibs) > 1:
            here = cluster.rough_s()
            next_s = min((o for o, _ in others if o > here), default=None)
            bibs = cr.plausible_bibs(cluster, bibs, matched, next_s)
        backward = {}
        for bib in bibs:
            tracks = matched[bib]
            fwd = sum(tr.n_forward() for tr in tracks)
            bwd = sum(tr.n_backward() for tr in tracks)
            backward[bib] = self._last_dir[bib] = bwd > fwd
        crossing = {bib: cr.crossing_of(matched[bib]) for bib in bibs}
        history = lambda bib: self._history(bib, backward.get(bib))  # noqa: E731
        for bib, s, e, t in cr.split_cluster(cluster, bibs, crossing, history):
            if bib is None:
                bibs_, source = self._fallback(gate, s + 0.4 * (e - s), set())
                who = bibs_[0] if bibs_ else 0
                hist = self._history(who)
                p = cr.PassRec(gate.id, torso_time(s, e, hist), bibs_, source, cluster)
            else:
                hist = history(bib)
                tracks = matched[bib]
                p = cr.PassRec(gate.id, torso_time(s, e, hist) if t is None else t, cr.one(bib),
                               TAG, cluster, tracks)
                for tr in tracks:
                    tr.credited = p
            remember_torso(hist, e - s)
            cluster.passes.append(p)
            self._add_pass(gate, p, now)

    def _fallback(self, gate: GateState, t: float, excluded: set) -> tuple[tuple, str]:
        """Credit for a pass no camera explains: predicted, else solo, else anonymous."""
        excluded = set(excluded) | self._checked_out
        min_lap = self.config.min_lap_s
        for bib, plist in gate.by_bib.items():
            if any(abs(p.t_s - t) < min_lap for p in plist[-3:]):
                excluded.add(bib)
        # A runner the cameras see still coming is not the one who just crossed.
        for cam in gate.credit_cams:
            for tr in cam.recent:
                if tr.last_s < t - cr.MATCH_TOL_S or tr.credited is not None \
                        or tr.n_front + tr.n_back < cr.MIN_TRACK_READS:
                    continue
                if (cam.oncoming and tr.last_s > t + cr.AFTER_LINE_S) or (
                        tr.crossing_quality() != FAR and tr.crossing_s() > t + cr.MATCH_TOL_S):
                    excluded.add(tr.bib)
        bib = cr.predicted_bib(t, gate.by_bib, min_lap, self.config.max_lap_s, excluded)
        if bib is not None:
            return cr.one(bib), PREDICTED
        # The only checked-in runner who could have made it: the cameras have not read
        # their bib lately (a runner whose bib they read would have been read now).
        solo = [b for b in self._checked_in if b not in excluded and (
            len(self._checked_in) == 1 or not self._bib_read_lately(b, t))]
        if len(solo) == 1:
            return cr.one(solo[0]), SOLO
        return (), ANONYMOUS

    def _bib_read_lately(self, bib: int, t: float) -> bool:
        for tr in (self._latest_track.get(bib), self._latest_track.get(-bib)):
            if tr is not None and tr.n_front + tr.n_back >= cr.MIN_TRACK_READS \
                    and t - self.config.max_lap_s < tr.last_s:
                return True
        return False

    def _add_pass(self, gate: GateState, p: cr.PassRec, now: float) -> None:
        """`now`: the session time of this decision (alarm deadlines are never before it)."""
        p.seq = len(self._passes)
        self._passes.append(p)
        self._touched.append(p)
        gate.recent_passes.append(p)
        self._index(gate, p)
        self._young.append((now, p))
        self._compact(now)
        if p.source in (TAG, CAMERA, MANUAL):
            for bib in p.bibs:
                self._take_back(gate, bib, p)
        if p.source in (TAG, CAMERA) and gate.credit_cams:
            due = max(p.t_s + self.config.spotter_timeout_s, now)
            for bib in p.bibs:
                self._timer(due, "alarm", p, bib)
        self.version += 1

    def _compact(self, now: float) -> None:
        """Drop the evidence (beam cluster, camera tracks) of passes decided long enough
        ago that no decision can look at it again: long sessions keep only what results
        and corrections need."""
        young, horizon = self._young, now - self._keep_detail_s
        while young and young[0][0] < horizon:
            p = young.popleft()[1]
            p.cluster = None
            p.tracks = ()

    def _index(self, gate: GateState, p: cr.PassRec) -> None:
        bib_ver = self._bib_ver
        for bib in p.bibs or (0,):
            insort(gate.by_bib.setdefault(bib, []), p, key=_pass_t)
            bib_ver[bib] = bib_ver.get(bib, 0) + 1

    def _unindex(self, gate: GateState, p: cr.PassRec) -> None:
        bib_ver = self._bib_ver
        for bib in p.bibs or (0,):
            plist = gate.by_bib.get(bib)
            if plist is not None and p in plist:
                plist.remove(p)
                bib_ver[bib] = bib_ver.get(bib, 0) + 1

    def _changed(self, p: cr.PassRec) -> None:
        self._touched.append(p)
        self.version += 1

    def _take_back(self, gate: GateState, bib: int, proof: cr.PassRec) -> None:
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
        # A pass left anonymous because two runners could explain it may be explained
        # now that one of them is placed elsewhere.
        anon = gate.by_bib.get(0)
        if anon:
            i = bisect_left(anon, proof.t_s - min_lap, key=_pass_t)
            for q in anon[i:bisect_right(anon, proof.t_s + min_lap, key=_pass_t)]:
                if q.source == ANONYMOUS:
                    bibs, source = self._fallback(gate, q.t_s, set())
                    if bibs:
                        self._recredit(gate, q, bibs, source)

    def _recredit(self, gate: GateState, p: cr.PassRec, bibs: tuple, source: str) -> None:
        if not p.deleted:
            self._unindex(gate, p)
        p.bibs, p.source = bibs, source
        if not p.deleted:
            self._index(gate, p)
        self._changed(p)

    def _camera_pass(self, gate: GateState, tr: Track, now: float) -> None:
        """A runner crossed while the beam was blocked: timed by the camera."""
        t = tr.crossing_s()
        for q in gate.by_bib.get(tr.bib, ())[-3:]:
            if abs(q.t_s - t) < self.config.min_lap_s:
                return
        p = cr.PassRec(gate.id, t, cr.one(tr.bib), CAMERA, tracks=[tr])
        tr.credited = p
        self._add_pass(gate, p, now)

    # ---- tags ------------------------------------------------------------------------

    def _on_tag(self, ev: dict, t: float, _gap_s=TRACK_GAP_S, _near_px=NEAR_PX,
                _max_bib=MAX_BIB) -> None:
        cam = self._cams.get(ev["camera"])
        if cam is None:
            return
        tag = ev["tag"]
        bib = tag >> 1
        if not 0 < bib <= _max_bib:
            return
        tr = cam.open.get(bib)
        if tr is None or t - tr.last_s > _gap_s:
            tr = self._new_track(cam, bib, tr, t)
        elif t > tr.last_s:
            tr.last_s = t
        side = tag & 1
        if side:
            tr.n_back += 1
        else:
            tr.n_front += 1
        tr.sides.append(side)
        px = ev.get("px")
        tr.reads.append((t, px))
        if px is None or px >= _near_px:
            if tr.near_first_s is None:
                tr.near_first_s = t
            tr.near_last_s = t
        if bib in self._alarmed:
            self.safety.on_read(bib, bool(tag & 1) != cam.oncoming, t)

    def _new_track(self, cam: CamState, bib: int, old: Track | None, t: float) -> Track:
        if old is not None:
            old.close()
            self._track_closed(old, t)
        tr = Track(cam, bib, t)
        cam.open[bib] = tr
        cam.recent.append(tr)
        latest = self._latest_track
        prev = latest.get(bib)
        if prev is not None and prev.n_front + prev.n_back >= cr.MIN_TRACK_READS:
            latest[-bib] = prev    # the latest real one, should this one be a stray
        latest[bib] = tr
        if self._tick_at is None:
            self._tick_at = (t // TICK_S + 1) * TICK_S
            self._timer(self._tick_at, "tick")
        return tr

    def _track_closed(self, tr: Track, now: float) -> None:
        p = tr.credited
        if p is not None:
            self._learn_lead(tr, p)
            return
        if tr.n_front + tr.n_back < cr.MIN_TRACK_READS \
                or not tr.cam.at_gate or tr.crossing_quality() == FAR:
            return
        gate = self._gates[tr.cam.gate]
        c = tr.crossing_s()
        for start, end in gate.blocks:
            if start <= c and (end is None or c <= end):
                self._camera_pass(gate, tr, now)
                return
        since = gate.beam.broken_since
        if since is not None and c >= since:
            gate.pending_cam.append(tr)

    def _learn_lead(self, tr: Track, p: cr.PassRec) -> None:
        """A track that credited a beam-timed pass on its own shows how long before the
        line (oncoming) or after it (departing) this camera loses or finds a runner."""
        cam = tr.cam
        dur = tr.last_s - tr.first_s
        if p.source != TAG or p.cluster is None or len(p.cluster.passes) != 1 \
                or not cam.at_gate or tr.n_front + tr.n_back < LEARN_MIN_READS:
            return
        lead = p.t_s - tr.last_s if cam.oncoming else tr.first_s - p.t_s
        if not 0 < lead < MAX_LEAD_S:
            return
        # Its duration tells the pace only if the runner came all along the stretch: they
        # had come round the track (the first pass of a run may follow a step onto it
        # right before the line).
        cfg = self.config
        came_round = any(cfg.min_lap_s <= p.t_s - q.t_s <= cfg.max_lap_s
                         for q in self._gates[p.gate].by_bib.get(tr.bib, ())[-4:])
        cam.learn_lead(tr.bib, lead, dur if came_round else 0.0)

    def _summarise(self, tr: Track) -> None:
        """A track leaves the recent ones: keep only what facings need of it."""
        if tr.n_front + tr.n_back >= MIN_FACING_READS:
            faced = self._faced.get(tr.bib)
            if faced is None:
                faced = self._faced[tr.bib] = array("d")
            faced.extend((tr.mid_s, tr.cam.quarter, tr.n_forward(), tr.n_backward()))

    def _tick(self, k: float) -> None:
        self._tick_at = None
        self._compact(k)
        still_open = False
        for cam in self._cams.values():
            if cam.open:
                for bib, tr in list(cam.open.items()):
                    if tr.last_s + TRACK_GAP_S < k:
                        del cam.open[bib]
                        tr.close()
                        self._track_closed(tr, k)
                still_open = still_open or bool(cam.open)
            recent = cam.recent
            while recent and recent[0].closed and recent[0].last_s < k - RECENT_S:
                self._summarise(recent.popleft())
        for gate in self._gates.values():
            while gate.recent and gate.recent[0].decided and gate.recent[0].end_s < k - RECENT_S:
                gate.recent.popleft()
            while gate.recent_passes and gate.recent_passes[0].t_s < k - RECENT_S:
                gate.recent_passes.popleft()
        if still_open:
            self._tick_at = k + TICK_S
            self._timer(self._tick_at, "tick")

    # ---- results ---------------------------------------------------------------------

    @property
    def decided_until_s(self) -> float:
        """Every event with t at or before this has been processed (the re-ordering mark)."""
        return self._mark

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
        res = self._snapshots.build(self)
        self._cache = (self.version, res)
        return res

def _pass_t(p) -> float:
    return p.t_s


_HANDLERS = {
    "beam": Engine._on_beam, "tag": Engine._on_tag, "checkin": Engine._on_checkin,
    "checkout": Engine._on_checkout, "fault": Engine._on_fault,
    "silence": Engine._on_silence, "correct": Engine._on_correct,
}
