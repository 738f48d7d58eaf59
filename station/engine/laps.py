"""A runner's credited finish passes -> runs and laps; checkpoint passes -> splits.

Passes closer than `min_lap_s` count once (the first stands: the later one is the same
runner's second cluster, or a duplicate credit). A gap longer than `max_lap_s` ends a run;
the next pass starts the next run and lap numbers start again at 1.
"""

from __future__ import annotations

from bisect import bisect_left


def laps_of(passes: list, min_lap_s: float, max_lap_s: float) -> list[tuple]:
    """[(run, lap, start_pass, end_pass)] from one runner's passes (any order)."""
    kept = []
    for p in sorted(passes, key=lambda p: p.t_s):
        if kept and p.t_s - kept[-1].t_s < min_lap_s:
            continue
        kept.append(p)
    out = []
    run, lap = 1, 0
    for prev, cur in zip(kept, kept[1:]):
        if cur.t_s - prev.t_s > max_lap_s:
            run, lap = run + 1, 0
            continue
        lap += 1
        out.append((run, lap, prev, cur))
    return out


def splits_of(laps: list[tuple], checkpoint_passes: list) -> list[tuple]:
    """[(run, lap, gate, t_s, split_s)]: the first pass at each checkpoint gate within each
    lap. `laps` as from `laps_of`; `checkpoint_passes` of the same runner, any gate."""
    if not laps or not checkpoint_passes:
        return []
    ends = [end.t_s for _, _, _, end in laps]
    seen: set[tuple] = set()
    out = []
    for p in sorted(checkpoint_passes, key=lambda p: p.t_s):
        i = bisect_left(ends, p.t_s)
        if i == len(laps):
            continue
        run, lap, start, end = laps[i]
        if not start.t_s < p.t_s <= end.t_s or (i, p.gate) in seen:
            continue
        seen.add((i, p.gate))
        out.append((run, lap, p.gate, p.t_s, p.t_s - start.t_s))
    return out
