"""Robustness sweep: many seeds of many scenario variants (variants.py) replayed through the
engine exactly as `station replay` does, scored against the physics; prints one line per
variant (pooled over seeds) and the failures with their seeds.

    python -m station.sim.sweep                       # every scenario x every modifier
    python -m station.sim.sweep --seeds 20 fast walker+nopx 'group+fps5+optics2'
    python -m station.sim.sweep --mods nopx,fps5      # every scenario with each of these

Not a test (it takes minutes): the tests run a few seeds of each (test_robustness.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def run_one(name: str, seed: int):
    from station.replay import replay_file
    from station.sim.score import score
    from station.sim.sensors import iter_events, write_events
    from station.sim.truth import compute_truth
    from station.sim.variants import build_variant

    sc = build_variant(name, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "events.jsonl"
        write_events(log, iter_events(sc.world, sc.sensors, seed=seed))
        results = replay_file(log, sc.config)
    truth = compute_truth(sc.world)
    return name, seed, score(truth, results, f"{name} seed {seed}"), truth.ambiguous


def main(argv=None) -> int:
    from station.sim.score import Score
    from station.sim.variants import MODS, SCENARIO_NAMES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="variants (default: every scenario x modifier)")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--first-seed", type=int, default=100)
    p.add_argument("--mods", default=None, help="comma-separated modifiers (default: all, and none)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--quiet", action="store_true", help="only the summary lines")
    args = p.parse_args(argv)
    names = args.names
    if not names:
        mods = [""] + ["+" + m for m in (args.mods.split(",") if args.mods else MODS)]
        names = [s + m for m in mods for s in SCENARIO_NAMES]
    jobs = [(n, args.first_seed + k) for n in names for k in range(args.seeds)]
    totals: dict[str, Score] = {n: Score(n) for n in names}
    failing: dict[str, list] = {n: [] for n in names}
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs) as ex:
        for name, seed, s, ambiguous in ex.map(run_one, *zip(*jobs), chunksize=1):
            totals[name] += s
            f = s.failures(splits=True)
            if f:
                failing[name].append((seed, f, ambiguous))
    bad = 0
    for n in names:
        s = totals[n]
        mark = "FAIL" if failing[n] else "ok  "
        print(f"{mark} {s.summary()}; seeds failing {len(failing[n])}/{args.seeds}")
        if failing[n]:
            bad += 1
            if not args.quiet:
                for seed, f, amb in failing[n][:3]:
                    for line in f:
                        print(f"       seed {seed}: {line[:400]}")
    print(f"{len(jobs)} runs in {time.time() - t0:.0f} s; {bad} variants with failures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
