"""Results snapshots: the engine's working state -> immutable SPEC §5 rows.

Laps, facings and splits are computed here from the credited passes and the camera
tracks, so a correction or a revised credit shows up in the next snapshot without any
bookkeeping in the engine's decisions. What keeps a snapshot cheap late in a long session
(the live worker takes one after every change) is that it is built from the previous one:
a runner's laps and splits are recounted only when their credited passes changed, a lap's
row only when its facing evidence changed, a pass's row only when its credit changed. The
result is the same as building from scratch, whatever the snapshots taken before.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from operator import attrgetter

from .facing import MIN_TRACK_READS, classify
from .laps import laps_of, splits_of
from .model import UNOBSERVED, Fault, Lap, Pass, Results, Split


_PASS_KEY = attrgetter("t_s", "gate", "bibs")
_NONE = (UNOBSERVED,) * 4


class Snapshots:
    """The engine's snapshot builder and what it keeps from one snapshot to the next."""

    __slots__ = ("runners", "rows", "seqs")

    def __init__(self):
        self.runners: dict[int, _Runner] = {}
        self.rows: list[Pass] = []     # every pass's row, in the passes.csv order
        self.seqs = array("l")         # ... and the pass's `seq` (ties: the order made)

    def build(self, engine) -> Results:
        """Everything the engine has concluded so far, as one immutable snapshot."""
        live: dict[int, list] = {}   # bib -> its recent tracks (older ones: engine._faced)
        for cam in engine._cams.values():
            for tr in cam.recent:
                if tr.n_front + tr.n_back >= MIN_TRACK_READS:
                    live.setdefault(tr.bib, []).append(tr)
        laps, splits = [], []
        for bib in sorted(engine._finish.by_bib):
            runner = self.runners.get(bib)
            if runner is None:
                runner = self.runners[bib] = _Runner(bib)
            runner.update(engine, live.get(bib, ()) if bib else ())
            laps += runner.laps
            splits += runner.splits
        self._update_passes(engine)
        faults = tuple(Fault(*row) for row in sorted(engine._faults, key=lambda r: (r[2], r[0], r[1])))
        provisional = tuple(sorted((g.id, c.rough_s()) for g in engine._gates.values()
                                   for c in g.recent if not c.decided))
        return Results(laps=tuple(laps), passes=tuple(self.rows), splits=tuple(splits),
                       alarms=engine.safety.alarms(), faults=faults,
                       checked_in=frozenset(engine._checked_in), now_s=engine.now_s,
                       provisional=provisional)

    def _update_passes(self, engine) -> None:
        rows, seqs = self.rows, self.seqs
        touched, engine._touched = engine._touched, []
        for p in touched:
            if p.row is not None:    # its credit changed: out with the old row
                i = bisect_left(rows, _PASS_KEY(p.row), key=_PASS_KEY)
                while seqs[i] != p.seq:
                    i += 1
                del rows[i], seqs[i]
            row = p.row = Pass(p.gate, p.t_s, p.bibs, p.source, p.deleted)
            key = _PASS_KEY(row)
            if not rows or key > _PASS_KEY(rows[-1]):
                i = len(rows)        # nearly always: passes come in time order
            else:
                i = bisect_left(rows, key, key=_PASS_KEY)
                while i < len(rows) and _PASS_KEY(rows[i]) == key and seqs[i] < p.seq:
                    i += 1
            rows.insert(i, row)
            seqs.insert(i, p.seq)


class _Runner:
    """One runner's laps and splits, and the facing evidence counted into them."""

    __slots__ = ("bib", "ver", "starts", "ends", "counts", "counted", "rows", "seen",
                 "live_laps", "laps", "splits")

    def __init__(self, bib: int):
        self.bib = bib
        self.ver = None
        self.seen = None
        self.laps: tuple = ()
        self.splits: tuple = ()

    def update(self, engine, recent) -> None:
        bib = self.bib
        faced = engine._faced.get(bib) if bib else None
        ver = engine._bib_ver.get(bib, 0)
        if ver != self.ver:
            self._recount(engine, ver)
        n_faced = len(faced) if faced is not None else 0
        seen = (ver, n_faced, tuple((tr.cam.id, tr.first_s, tr.n_front, tr.n_back)
                                    for tr in recent))
        if seen == self.seen:
            return
        self.seen = seen
        counts = self.counts
        dirty = self.live_laps   # laps that had recent evidence last time
        if n_faced > self.counted:   # tracks gone from the recent ones: count them for good
            for j in range(self.counted, n_faced, 4):
                i = _add(self, counts, faced[j], faced[j + 1], faced[j + 2], faced[j + 3])
                if i is not None:
                    dirty.add(i)
            self.counted = n_faced
        self.live_laps = set()
        if recent:
            counts = array("I", counts)
            for tr in recent:
                i = _add(self, counts, tr.mid_s, tr.cam.quarter, tr.n_forward(), tr.n_backward())
                if i is not None:
                    self.live_laps.add(i)
            dirty |= self.live_laps
        if not dirty:
            return
        rows = self.rows
        for i in dirty:
            r = rows[i]
            c = counts[8 * i: 8 * i + 8]
            q = [classify(c[2 * k], c[2 * k + 1]) for k in range(4)]
            rows[i] = Lap(bib, r.name, r.run, r.lap, r.start_s, r.end_s, r.lap_s, *q, r.source)
        self.laps = tuple(rows)

    def _recount(self, engine, ver) -> None:
        """The runner's credited passes changed: laps, splits and counts from scratch."""
        self.ver = ver
        cfg, bib = engine.config, self.bib
        runs = laps_of(engine._finish.by_bib[bib], cfg.min_lap_s, cfg.max_lap_s)
        self.starts = array("d", (s.t_s for _, _, s, _ in runs))
        self.ends = array("d", (e.t_s for _, _, _, e in runs))
        # Per lap: forward and backward reads in q1..q4.
        self.counts = array("I", [0]) * (8 * len(runs))
        self.counted = 0
        name = engine._names.get(bib, "")
        # Every lap to be classified in update() (marked as if it had recent evidence).
        self.rows = [Lap(bib, name, run, lap, s.t_s, e.t_s, e.t_s - s.t_s, *_NONE, e.source)
                     for run, lap, s, e in runs]
        self.live_laps = set(range(len(runs)))
        self.seen = None
        self.laps = ()
        self.splits = ()
        if bib and runs:
            cps = [p for g in engine._gates.values() if not g.is_finish
                   for p in g.by_bib.get(bib, ())]
            self.splits = tuple(Split(bib, run, lap, gate, t, split)
                                for run, lap, gate, t, split in splits_of(runs, cps))


def _add(runner: _Runner, counts, t, quarter, fwd, bwd) -> int | None:
    """A track's reads (mid-time t) count towards the lap (start, end] that holds t;
    returns that lap's index (None: no lap holds it)."""
    i = bisect_left(runner.ends, t)
    if i == len(runner.ends) or not runner.starts[i] < t:
        return None
    q = 8 * i + 2 * (int(quarter) - 1)
    counts[q] += int(fwd)
    counts[q + 1] += int(bwd)
    return i
