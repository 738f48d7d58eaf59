"""Quarter facing per lap, from the tags the cameras read on the runner during that lap.

A read of a front tag by an oncoming camera (or a back tag by a departing one) shows the
runner facing their running direction (`forward`); the other way round, `backward`. A read
belongs to the lap whose time span holds it, so a departing camera at the finish, which sees
runners just after they cross, counts towards the lap they are starting. Where no camera
read the runner, the quarter is `unobserved`: never a guess.
"""

from __future__ import annotations

from bisect import bisect_left

from .model import BACKWARD, FORWARD, MIXED, UNOBSERVED

# Both directions need this many reads in one lap-quarter to be `mixed`, not noise.
MIXED_MIN_READS = 2
# Tracks of fewer reads say nothing about facing.
MIN_TRACK_READS = 2


def classify(n_forward: int, n_backward: int) -> str:
    if n_forward >= MIXED_MIN_READS and n_backward >= MIXED_MIN_READS:
        return MIXED
    if n_forward > n_backward:
        return FORWARD
    if n_backward > n_forward:
        return BACKWARD
    return UNOBSERVED


def facings(seen, spans: list[tuple[float, float]]) -> list[tuple[str, str, str, str]]:
    """(q1, q2, q3, q4) for each lap span (start_s, end_s], from one runner's camera
    tracks, each as (mid_s, quarter, forward reads, backward reads) in any order, tracks of
    fewer than MIN_TRACK_READS reads left out (a lone read may be a stray: facing is never
    a guess). `spans` are in time order and do not overlap."""
    counts = [[0] * 8 for _ in spans]   # per lap: forward, backward for q1..q4
    if spans:
        ends = [e for _, e in spans]
        n = len(spans)
        for t, quarter, fwd, bwd in seen:
            i = bisect_left(ends, t)
            if i == n or not spans[i][0] < t:
                continue
            q = 2 * (int(quarter) - 1)
            c = counts[i]
            c[q] += fwd
            c[q + 1] += bwd
    return [tuple(classify(c[2 * q], c[2 * q + 1]) for q in range(4)) for c in counts]


def track_facts(tracks) -> list[tuple]:
    """(mid_s, quarter, forward reads, backward reads) of the tracks that say anything."""
    return [(tr.mid_s, tr.cam.quarter, tr.n_forward(), tr.n_backward()) for tr in tracks
            if tr.n_front + tr.n_back >= MIN_TRACK_READS]


def unpack(flat) -> list[tuple]:
    """Engine._faced's flat array -> (mid_s, quarter, forward, backward) tuples."""
    it = iter(flat)
    return list(zip(it, it, it, it))
