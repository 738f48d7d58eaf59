"""Spotter alarms (SPEC §4): a backward runner passing a gate needs somebody else there.

When a camera at gate g saw runner b running backwards on the pass at time t, somebody else
must pass g (a beam pass, or another bib read near g's cameras) within
[t - spotter_lead_s, t + spotter_timeout_s]. If nobody does, the alarm goes off at
t + spotter_timeout_s. It sounds until cleared: by a companion (b passes a gate backwards
again with somebody else there), by b being seen running forward (two forward reads in a
row), or by a coach (`silence` event).
"""

from __future__ import annotations

import weakref

from .credit import MIN_TRACK_READS
from .model import COMPANION, SEEN_FORWARD, SILENCED, Alarm
from .tracks import FAR

# Reads needed to call a runner backward on a pass (and more backward than forward ones).
BACKWARD_MIN_READS = 2
# Consecutive forward reads that show an alarmed runner running forward again.
FORWARD_CLEAR_READS = 2


class Safety:
    """Alarm rows and which runners have one sounding. The engine calls `check` at a
    pass's deadline, `on_read` for every tag read of an alarmed runner, `silence`."""

    def __init__(self, engine):
        self._engine = weakref.proxy(engine)   # the engine owns this: no cycle
        self.rows: list[list] = []            # [bib, gate, seen_s, alarm_s, cleared_s, reason]
        self.active: dict[int, list[list]] = {}   # bib -> its sounding rows
        self._forward_run: dict[int, int] = {}

    def saw_backward(self, p, bib: int) -> bool:
        """Did the pass's gate cameras see `bib` running backwards on pass `p`?"""
        gate = self._engine._gates[p.gate]
        tracks = [tr for tr in p.tracks if tr.bib == bib]
        # A departing camera reads a runner after they cross; its track may have started
        # after the pass was credited.
        for cam in gate.credit_cams:
            if cam.oncoming:
                continue
            for tr in cam.recent:
                if (tr.bib == bib and tr not in tracks and tr.credited in (None, p)
                        and p.t_s - 0.5 <= tr.first_s <= p.t_s + 3.0):
                    tracks.append(tr)
        # How they faced nearest the line, where the cameras say; else the totals.
        at_line = [v for v in (tr.backward_at_line() for tr in tracks if tr.cam.at_gate)
                   if v is not None]
        if at_line:
            return at_line.count(True) > at_line.count(False)
        fwd = sum(tr.n_forward() for tr in tracks)
        bwd = sum(tr.n_backward() for tr in tracks)
        return bwd >= BACKWARD_MIN_READS and bwd > fwd

    def companion_s(self, p, bib: int, lo: float, hi: float) -> float | None:
        """Earliest time somebody other than `bib` passed p's gate within [lo, hi]."""
        e = self._engine
        gate = e._gates[p.gate]
        times = []
        for q in gate.recent_passes:
            if q is not p and not q.deleted and bib not in q.bibs and lo <= q.t_s <= hi:
                times.append(q.t_s)
        for cl in gate.recent:
            if not cl.decided and lo <= cl.rough_s() <= hi:
                times.append(cl.rough_s())
        beam = gate.beam
        if beam.cluster is not None and lo <= beam.cluster.start_s <= hi:
            times.append(beam.cluster.start_s)
        if beam.broken_since is not None and not beam.blocked and lo <= beam.broken_since <= hi:
            times.append(beam.broken_since)
        # An untagged second body in the same cluster.
        cl = p.cluster
        if cl is not None and len(cl.passes) == 1 and len(cl.bodies()) >= 2:
            times.append(p.t_s)
        # Another bib read near the gate's cameras in the window (SPEC: "beam, or another
        # bib read"), or a track of one whose crossing falls in it.
        for cam in e._cams.values():
            if cam.gate != gate.id:
                continue
            for tr in cam.recent:
                if tr.bib == bib or tr.n_front + tr.n_back < MIN_TRACK_READS:
                    continue
                if tr.near_first_s is not None and tr.near_first_s <= hi and tr.near_last_s >= lo:
                    times.append(max(lo, tr.near_first_s))
                elif cam.at_gate and tr.crossing_quality() != FAR and lo <= tr.crossing_s() <= hi:
                    times.append(tr.crossing_s())
        return min(times) if times else None

    def check(self, p, bib: int) -> None:
        """The deadline of pass `p` for runner `bib` (t + spotter_timeout_s) has come."""
        e = self._engine
        if p.deleted or bib not in p.bibs or not self.saw_backward(p, bib):
            return
        cfg = e.config
        lo, hi = p.t_s - cfg.spotter_lead_s, p.t_s + cfg.spotter_timeout_s
        comp = self.companion_s(p, bib, lo, hi)
        if comp is not None:
            self._clear(bib, max(p.t_s, comp), COMPANION)
            return
        row = [bib, p.gate, p.t_s, hi, None, ""]
        self.rows.append(row)
        self.active.setdefault(bib, []).append(row)
        self._forward_run[bib] = 0
        e.version += 1

    def on_read(self, bib: int, forward: bool, t_s: float) -> None:
        if not forward:
            self._forward_run[bib] = 0
            return
        n = self._forward_run.get(bib, 0) + 1
        self._forward_run[bib] = n
        if n >= FORWARD_CLEAR_READS:
            self._clear(bib, t_s, SEEN_FORWARD)

    def silence(self, bib: int | None, t_s: float) -> None:
        for b in ([bib] if bib is not None else sorted(self.active)):
            self._clear(b, t_s, SILENCED)

    def _clear(self, bib: int, t_s: float, reason: str) -> None:
        rows = self.active.pop(bib, None)
        if not rows:
            return
        for row in rows:
            row[4] = max(t_s, row[3])
            row[5] = reason
        self._forward_run.pop(bib, None)
        self._engine.version += 1

    def alarms(self) -> tuple[Alarm, ...]:
        rows = sorted(self.rows, key=lambda r: (r[3], r[0], r[1]))
        return tuple(Alarm(*r) for r in rows)
