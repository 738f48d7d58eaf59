"""Who made a pass: camera tracks matched to beam clusters, and the fall-backs.

SPEC §4's order: the bibs the gate's cameras read on the runners as they crossed (`tag`);
else the one runner whose predicted arrival (last pass + last lap time) explains the pass
(`predicted`); else the only checked-in runner (`solo`); else nobody (`anonymous`, bib 0).

A track matches the cluster nearest to its fitted crossing time (tracks.py), within
`MATCH_TOL_S`; a track of one read matches only if its tag was big (a runner a few metres
from the line, not a stray from afar), and a track last seen far away matches nothing.
When a cluster matches several bibs, it holds one pass per bib: the bodies in the beam
(torso-length breaks) are paired in time order with the bibs in order of their fitted
crossings (the runner whose tag grows faster is nearer the line). A clearly separate body
that no bib explains (a runner whose bib is covered) is a pass of its own, credited by the
fall-backs. Guesses are revised: a sure pass of a runner takes back their predicted or solo
credits close to it, and re-examines anonymous passes it may now explain.
"""

from __future__ import annotations

from itertools import combinations

from .passes import SPLIT_FRACTION, Cluster
from .tracks import FAR, FITTED, MAX_LEAD_S

# A track's crossing further than this from a cluster is not that cluster's runner.
MATCH_TOL_S = 1.5
MATCH_TOL_GUESS_S = 2.5
# How far past the line (in time) a camera at the line may still read a runner: frame
# timing and the torso-vs-tag offset.
AFTER_LINE_S = 0.3
# Runners whose crossings are this close may share one body-length break (side by side).
SIDE_BY_SIDE_S = 0.4
# A track needs this many reads to credit anything: one read is a stray.
MIN_TRACK_READS = 2
# How far from the predicted arrival a pass may be and still be explained by it.
PRED_TOL_MIN_S = 3.0
PRED_TOL_FRACTION = 0.1


class PassRec:
    """The engine's working copy of a pass (mutable: credit can be revised).

    `cluster` and `tracks` are the evidence, needed while decisions about the pass are
    still to come (its spotter deadline, a camera's lead); the engine drops them a minute
    after the pass was decided (Engine._compact), so a long session keeps only what the
    results and corrections need. `row` is its result row in the last snapshot, `seq` its
    place in the order passes were made (snapshot.py)."""

    __slots__ = ("gate", "t_s", "bibs", "source", "deleted", "cluster", "tracks", "row", "seq")

    def __init__(self, gate: str, t_s: float, bibs: tuple, source: str,
                 cluster: Cluster | None = None, tracks=()):
        self.gate = gate
        self.t_s = t_s
        self.bibs = bibs
        self.source = source
        self.deleted = False
        self.cluster = cluster
        self.tracks = tracks    # the camera tracks that credited it
        self.row = None
        self.seq = 0

    def __repr__(self) -> str:  # for test failure messages
        return f"PassRec({self.gate!r}, {self.t_s:.3f}, {self.bibs}, {self.source!r})"


_ONE: dict[int, tuple[int]] = {}


def one(bib: int) -> tuple[int]:
    """The tuple (bib,), one shared object per bib (thousands of passes hold it)."""
    t = _ONE.get(bib)
    if t is None:
        t = _ONE[bib] = (bib,)
    return t


def match_tracks(cluster: Cluster, cams, others: list[tuple]) -> dict[int, list]:
    """bib -> the uncredited tracks (of the gate's cameras `cams`) whose crossing is nearer
    this cluster than any other activity at the gate (`others`: (rough time, None), or
    (rough time, bibs) for activity that only those bibs' tracks may belong to)."""
    here = cluster.rough_s()
    lo, hi = here - AFTER_LINE_S, here + AFTER_LINE_S
    horizon = MATCH_TOL_S + MAX_LEAD_S
    found: dict[int, list] = {}
    elsewhere: set[int] = set()   # bibs an oncoming camera places at other activity
    for cam in cams:
        for tr in cam.recent:
            # A camera at the line sees an oncoming runner only before they cross it (and
            # not long before), a departing one only after.
            if cam.oncoming:
                if not here - horizon <= tr.last_s <= hi:
                    continue
            elif not lo <= tr.first_s <= here + horizon:
                continue
            if tr.credited is not None or (tr.n_front + tr.n_back < MIN_TRACK_READS
                                           and not tr.lone_near()):
                continue
            quality = tr.crossing_quality()
            if quality == FAR:
                continue
            c = tr.crossing_s()
            d = abs(c - here)
            # A crossing guessed from the lead (no px fit) may be further out: a runner
            # read only briefly (stepping onto the stretch near the line), a lens that
            # loses tags further out than this camera has taught the engine yet.
            if d > (MATCH_TOL_S if quality == FITTED else MATCH_TOL_GUESS_S):
                continue
            if any(abs(c - o) < d for o, bibs in others if bibs is None or tr.bib in bibs):
                if quality == FITTED and cam.oncoming:
                    elsewhere.add(tr.bib)
                continue
            found.setdefault(tr.bib, []).append(tr)
    # A departing camera has read a runner only briefly when credit is decided, so its
    # fit is rougher than an oncoming one's: where they disagree, the oncoming one wins.
    for bib in elsewhere:
        if bib in found and all(not tr.cam.oncoming for tr in found[bib]):
            del found[bib]
    return found


def crossing_of(tracks: list) -> float:
    return sum(tr.crossing_s() for tr in tracks) / len(tracks)


def plausible_bibs(cluster: Cluster, bibs: list[int], matched: dict,
                   next_s: float | None = None) -> list[int]:
    """More runners than bodies in the beam: keep the runners whose crossing is nearest,
    one per body, plus any crossing side by side with the cluster (sharing a break).
    `next_s`: when somebody else crosses the gate just after this cluster. Then the
    runners who crossed first are this cluster's and the others the next one's: the order
    of crossings is surer than their times (a guess from the last read, without px)."""
    n_bodies = len(cluster.bodies(SPLIT_FRACTION))
    if n_bodies >= len(bibs):
        return bibs
    here = cluster.rough_s()
    cross = {b: crossing_of(matched[b]) for b in bibs}
    dist = {b: abs(cross[b] - here) for b in bibs}
    close = sum(1 for b in bibs if dist[b] <= SIDE_BY_SIDE_S
                and all(tr.crossing_quality() == FITTED for tr in matched[b]))
    n = max(n_bodies, close)
    if next_s is not None and close <= n_bodies:
        keep = set(sorted(bibs, key=lambda b: (cross[b], b))[:n])
    else:
        keep = set(sorted(bibs, key=lambda b: (dist[b], b))[:n])
    return [b for b in bibs if b in keep]


def split_cluster(cluster: Cluster, bibs_in_order: list[int], crossing: dict,
                  history_of) -> list[tuple]:
    """The passes in a cluster: [(bib or None, start_s, end_s, t_s or None)], in time order.

    `bibs_in_order`: matched bibs sorted by their fitted crossing (`crossing[bib]`);
    `history_of(bib)` gives the runner's recent torso durations. A pass with bib None is a
    body no camera explained (credited by the fall-backs); t_s None means "time it from the
    break with its runner's history" (torso_time)."""
    k = len(bibs_in_order)
    separate = cluster.separate_bodies()
    if len(separate) > k:
        # More clearly separate bodies than bibs: an untagged runner crossed with them.
        # Each bib takes the body nearest its crossing (keeping their order).
        best = None
        for chosen in combinations(range(len(separate)), k):
            cost = sum(abs(cluster_rough(separate[i]) - crossing[bib])
                       for i, bib in zip(chosen, bibs_in_order))
            if best is None or cost < best[0]:
                best = (cost, chosen)
        owner = dict(zip(best[1], bibs_in_order))
        return [(owner.get(i), s, e, None) for i, (s, e) in enumerate(separate)]
    if k <= 1:
        s, e = cluster.torso()
        return [(bibs_in_order[0] if k else None, s, e, None)]
    bodies = cluster.bodies(SPLIT_FRACTION)
    if len(bodies) >= k:
        # The k longest bodies, back in time order.
        bodies = sorted(sorted(bodies, key=lambda b: b[0] - b[1])[:k])
        return [(bib, s, e, None) for (s, e), bib in zip(bodies, bibs_in_order)]
    # Fewer bodies than runners: some crossed side by side in one long break. The first
    # in it is timed from its start, the last from its end, anyone between at the middle.
    out = []
    groups: dict[tuple, list[int]] = {}
    for i, bib in enumerate(bibs_in_order):
        b = bodies[min(i, len(bodies) - 1)]
        groups.setdefault(b, []).append(bib)
    for (s, e), members in sorted(groups.items()):
        if len(members) == 1:
            out.append((members[0], s, e, None))
            continue
        for j, bib in enumerate(members):
            hist = history_of(bib)
            typical = sorted(hist)[(len(hist) - 1) // 2] if hist else (e - s) / len(members)
            if j == 0:
                t = s + 0.4 * typical
            elif j == len(members) - 1:
                t = e - 0.6 * typical
            else:
                t = s + (e - s) * j / (len(members) - 1)
            out.append((bib, s, e, t))
    return out


def cluster_rough(brk: tuple[float, float]) -> float:
    return brk[0] + 0.4 * (brk[1] - brk[0])


def predicted_bib(t_s: float, passes_by_bib: dict, min_lap_s: float, max_lap_s: float,
                  excluded: set) -> int | None:
    """The one runner whose last pass + last lap time explains a pass at `t_s`, if exactly
    one does. `passes_by_bib`: bib -> that gate's credited passes in time order."""
    found = None
    for bib, plist in passes_by_bib.items():
        if bib == 0 or bib in excluded or len(plist) < 2:
            continue
        last = prev = None
        for p in reversed(plist):
            if p.t_s > t_s - min_lap_s:
                continue   # a pass of theirs just now: this one is not them
            if last is None:
                last = p
            elif last.t_s - p.t_s >= min_lap_s:
                prev = p
                break
        if last is None or prev is None or any(p.t_s > t_s - min_lap_s and p.t_s <= t_s + min_lap_s
                                                for p in plist[-3:]):
            continue
        lap_s = last.t_s - prev.t_s
        if lap_s > max_lap_s or t_s - last.t_s > max_lap_s:
            continue
        tol = max(PRED_TOL_MIN_S, PRED_TOL_FRACTION * lap_s)
        if abs(last.t_s + lap_s - t_s) <= tol:
            if found is not None:
                return None   # two could explain it: no guess
            found = bib
    return found
