"""Beam edges -> clusters of breaks -> torso times; and the blocked-beam rule.

A runner breaks a beam several times within a few hundred ms: swinging arms and legs make
short breaks, the torso the longest. Breaks shorter than `glitch_ms` are rain and insects.
Breaks closer than `merge_ms` form one *cluster*; a cluster holds one pass, or several when
the cameras show several runners crossing together (see credit.py).

Torso timing. A clean torso break [s, e] crosses the line at s + 0.4 (e - s) (the torso is
deeper than its leading edge). A limb overlapping the torso's start extends the break at the
start, never at the end, so the end is the reliable edge: the crossing is e - 0.6 D where D
is the runner's clean torso duration, estimated as the lower median of their recent torso
breaks (a runner's speed changes slowly; overlaps only ever lengthen a break).
"""

from __future__ import annotations

# Torso-break history kept per runner (bib 0 = everybody anonymous).
TORSO_HISTORY = 7
# A break at least this fraction of the cluster's longest counts as a body, not a limb.
TORSO_FRACTION = 0.6
# When the cameras say several runners crossed, a smaller runner's torso may be shorter
# than that next to a slow runner's; limbs stay under a third of a torso.
SPLIT_FRACTION = 0.4
# A second body on its own (no tag says so) must be this long and this far from the other
# (centre to centre; with a gap of clear beam between them: a torso is one solid break).
# Runners 0.1 s apart at the line are about that far apart.
MIN_BODY_S = 0.05
MIN_BODY_GAP_S = 0.08


def torso_time(start_s: float, end_s: float, history: list[float] | None) -> float:
    """Crossing time of a torso break, given the runner's recent torso durations."""
    dur = end_s - start_s
    if history:
        durs = sorted(history + [dur])
        typical = durs[(len(durs) - 1) // 2]
        if typical < dur:
            dur = typical
    return end_s - 0.6 * dur


def remember_torso(history: list[float], dur_s: float) -> None:
    history.append(dur_s)
    if len(history) > TORSO_HISTORY:
        del history[0]


class Cluster:
    """Breaks of one gate's beam close together in time; decided a little after it ends."""

    __slots__ = ("gate", "breaks", "passes", "decided")

    def __init__(self, gate: str):
        self.gate = gate
        self.breaks: list[tuple[float, float]] = []
        self.passes: list = []   # PassRec objects once decided
        self.decided = False

    @property
    def start_s(self) -> float:
        return self.breaks[0][0]

    @property
    def end_s(self) -> float:
        return self.breaks[-1][1]

    def torso(self) -> tuple[float, float]:
        """The longest break (earliest if tied)."""
        best = self.breaks[0]
        for b in self.breaks:
            if b[1] - b[0] > best[1] - best[0]:
                best = b
        return best

    def bodies(self, fraction: float = TORSO_FRACTION) -> list[tuple[float, float]]:
        """Breaks long enough to be a torso, in time order."""
        s, e = self.torso()
        floor = fraction * (e - s)
        return [b for b in self.breaks if b[1] - b[0] >= floor]

    def separate_bodies(self) -> list[tuple[float, float]]:
        """Torso-length breaks far enough apart to be different people, in time order."""
        s, e = self.torso()
        floor = max(TORSO_FRACTION * (e - s), MIN_BODY_S)
        out: list[tuple[float, float]] = []
        for b in self.breaks:
            if b[1] - b[0] < floor:
                continue
            if out and (b[0] + b[1]) / 2 - (out[-1][0] + out[-1][1]) / 2 < MIN_BODY_GAP_S:
                if b[1] - b[0] > out[-1][1] - out[-1][0]:
                    out[-1] = b
                continue
            out.append(b)
        return out

    def rough_s(self) -> float:
        """A crossing time good enough to match camera tracks with, before credit."""
        s, e = self.torso()
        return s + 0.4 * (e - s)


class GateBeam:
    """One gate's beam: turns edges into clusters and long breaks into blocked faults.

    Methods return what happened; the engine owns the timers and the results.
    """

    __slots__ = ("gate", "broken_since", "cluster", "gen", "blocked", "close_due",
                 "glitch_s", "merge_s")

    def __init__(self, gate: str, glitch_ms: float, merge_ms: float):
        self.gate = gate
        self.broken_since: float | None = None
        self.cluster: Cluster | None = None
        self.gen = 0          # bumps on every edge; timers carry it to know if still valid
        self.blocked = False  # a beam_blocked fault is open
        self.close_due = False  # merge time ran out while a break was in progress
        self.glitch_s = glitch_ms / 1000.0
        self.merge_s = merge_ms / 1000.0

    def on_broken(self, t_s: float) -> bool:
        """Beam went dark. False if it already was (a repeated edge)."""
        if self.broken_since is not None:
            return False
        self.broken_since = t_s
        self.gen += 1
        return True

    def on_clear(self, t_s: float):
        """Beam came back. Returns ("fault_end", start) if this ends a blocked fault,
        ("break", end) if a body break joined the cluster (caller schedules the merge
        timer for `end`), ("close", cluster) if a glitch ended after the merge time ran out,
        or None."""
        start = self.broken_since
        if start is None:
            return None
        self.broken_since = None
        self.gen += 1
        if self.blocked:
            self.blocked = False
            return ("fault_end", start)
        if t_s - start < self.glitch_s:
            if self.close_due:
                return ("close", self.take_cluster())
            return None
        if self.cluster is None:
            self.cluster = Cluster(self.gate)
        self.cluster.breaks.append((start, t_s))
        self.close_due = False
        return ("break", t_s)

    def take_cluster(self) -> Cluster | None:
        c, self.cluster, self.close_due = self.cluster, None, False
        return c

    def merge_timeout(self, end_s: float) -> Cluster | None:
        """The merge time after the break that ended at `end_s` ran out: the cluster is
        complete, unless a new break is under way (then it closes when that one ends as a
        glitch, or the break joins it)."""
        c = self.cluster
        if c is None or c.breaks[-1][1] != end_s:
            return None
        if self.broken_since is not None:
            self.close_due = True
            return None
        return self.take_cluster()

    def block_timeout(self, gen: int) -> tuple[float, Cluster | None] | None:
        """`blocked_after_s` passed since a break began: if it still lasts, the beam is
        blocked. Returns (fault start, the cluster before the block, complete now)."""
        if gen != self.gen or self.broken_since is None or self.blocked:
            return None
        self.blocked = True
        return (self.broken_since, self.take_cluster())
