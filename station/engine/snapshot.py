"""Results snapshots: the engine's working state -> immutable SPEC §5 rows.

Laps, facings and splits are computed here, on demand, from the credited passes and the
camera tracks, so a correction or a revised credit shows up in the next snapshot without
any incremental bookkeeping.
"""

from __future__ import annotations

from .facing import facings
from .laps import laps_of, splits_of
from .model import Fault, Lap, Pass, Results, Split


def build_results(engine) -> Results:
    """Everything the engine has concluded so far, as one immutable snapshot."""
    cfg = engine.config
    laps, splits = [], []
    finish = engine._finish
    checkpoints = [g for g in engine._gates.values() if not g.is_finish]
    for bib in sorted(finish.by_bib):
        runs = laps_of(finish.by_bib[bib], cfg.min_lap_s, cfg.max_lap_s)
        if not runs:
            continue
        faces = facings(engine._bib_tracks.get(bib, ()) if bib else (),
                        [(s.t_s, e.t_s) for _, _, s, e in runs])
        name = engine._names.get(bib, "")
        for (run, lap, s, e), q in zip(runs, faces):
            laps.append(Lap(bib, name, run, lap, s.t_s, e.t_s, e.t_s - s.t_s, *q,
                            e.source))
        if bib:
            cps = [p for g in checkpoints for p in g.by_bib.get(bib, ())]
            for run, lap, gate, t, split in splits_of(runs, cps):
                splits.append(Split(bib, run, lap, gate, t, split))
    passes = sorted((Pass(p.gate, p.t_s, p.bibs, p.source, p.deleted) for p in engine._passes),
                    key=lambda p: (p.t_s, p.gate, p.bibs))
    faults = tuple(Fault(*row) for row in sorted(engine._faults, key=lambda r: (r[2], r[0], r[1])))
    provisional = tuple(sorted((g.id, c.rough_s()) for g in engine._gates.values()
                               for c in g.recent if not c.decided))
    return Results(laps=tuple(laps), passes=tuple(passes), splits=tuple(splits),
                   alarms=engine.safety.alarms(), faults=faults,
                   checked_in=frozenset(engine._checked_in), now_s=engine.now_s,
                   provisional=provisional)
