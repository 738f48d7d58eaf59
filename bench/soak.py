"""Soak benchmark: an 8-hour club session with 20 runners, at accelerated time, through the
real worker, store (SQLite file, WAL, synchronous=FULL) and engine; prints the process's
memory (RSS) over simulated time and its growth.

    python bench/soak.py                        # 8 h, 20 runners, 150x: about 3-4 minutes
    python bench/soak.py --hours 2 --speed 300  # a quick look

The session: the default station (deploy/station.toml's finish gate and camera), 20 runners
who come and go in club sessions of 3-12 laps with 2-15 minute rests, two of them running the
home straight backwards with a spotter behind (who drops out now and then: alarms), rain
drops on the beam and stray tag reads. A child process simulates the whole event log first,
with each event's arrival time, so the simulator's memory is not counted. Then this process
runs the station's worker on a session clock going `--speed` times real time and hands it
every event when the session clock reaches its arrival time, as the sensors would; it samples
the resident set size (VmRSS) every simulated half hour.

Growth is measured from the end of the first simulated hour (imports, SQLite's page cache
and the engine's first laps are warm by then) to the end. Target: under 5 MB. The laps,
passes and alarms the station keeps are real data and grow with the session by design.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_GROWTH_MB = 5.0
SAMPLE_EVERY_S = 1800.0


# -- the simulated session (child process) ------------------------------------------------


def build_world(hours: float, runners: int, seed: int):
    from station.sim import plan
    from station.sim.scenarios import NAMES, Setup
    from station.sim.world import Runner

    end_s = hours * 3600
    pairs = 2 if runners >= 6 else 0           # backward runner + spotter
    solo = runners - 2 * pairs
    bibs = list(range(1, runners + 1))
    s = Setup("soak", seed, roster=[(b, NAMES[i % len(NAMES)]) for i, b in enumerate(bibs)])

    def club_sessions(bib: int, speed_mps: float, **kw) -> Runner:
        t = float(s.rng.uniform(5, 600))
        stints = []
        while t < end_s:
            laps = int(s.rng.integers(3, 13))
            st = plan.run_laps(s.config, s.rng, t0_s=t, x0_m=-speed_mps * 2,
                               x1_m=laps * s.length + 5,
                               speed_mps=speed_mps * float(s.rng.uniform(0.95, 1.05)), **kw)
            if st.t1 > end_s:
                break
            stints.append(st)
            s.checkins.append((max(0.5, t - float(s.rng.uniform(5, 60))), "checkin", bib))
            s.checkins.append((st.t1 + float(s.rng.uniform(5, 30)), "checkout", bib))
            t = st.t1 + float(s.rng.uniform(120, 900))
        r = Runner(f"bib{bib}", bib, s.config.runner_name(bib), body=plan.random_body(s.rng),
                   stints=stints)
        s.runners.append(r)
        return r

    for bib in bibs[:solo]:
        club_sessions(bib, float(s.rng.uniform(3.0, 5.2)))
    for k in range(pairs):
        leader_bib, spotter_bib = bibs[solo + 2 * k], bibs[solo + 2 * k + 1]
        leader = club_sessions(leader_bib, 3.5, backward=((310, 408),), backward_factor=0.68)
        # Finish crossings (counted within each run of laps) the spotter misses: alarms.
        drops = sorted({int(n) for n in s.rng.integers(2, 10, 2)})
        s.spotter(leader, spotter_bib, drop=[n for i, n in enumerate(drops)
                                             if i == 0 or n - drops[i - 1] > 1])
    return s.done(end_s=end_s)


def generate(path: Path, hours: float, runners: int, seed: int) -> None:
    """Write `arrival_s<TAB>event json` lines in arrival order, and the config beside them."""
    import heapq
    import math

    from station.sim.sensors import CHUNK_S, SensorSpec, chunk_events

    scenario = build_world(hours, runners, seed)
    world = scenario.world
    path.with_suffix(".toml").write_text(scenario.config_text)
    pending: list = []
    seq = 0
    with open(path, "wb") as out:
        for chunk in range(math.ceil(world.end_s / CHUNK_S)):
            for arrival, ev in chunk_events(world, SensorSpec(), seed, chunk):
                seq += 1
                heapq.heappush(pending, (arrival, seq, ev))
            horizon = (chunk + 1) * CHUNK_S
            while pending and pending[0][0] < horizon:
                arrival, _, ev = heapq.heappop(pending)
                out.write(b"%.4f\t%s\n" % (arrival, orjson.dumps(ev)))
        while pending:
            arrival, _, ev = heapq.heappop(pending)
            out.write(b"%.4f\t%s\n" % (arrival, orjson.dumps(ev)))


# -- the station under load (this process) ------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc), so RSS shows what is held."""
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def replay_matches(store, session_id: int, state, config) -> str:
    """Live results against a replay of the stored log (ARCHITECTURE's live == replay),
    compared on what both have decided: laps, and alarms raised before the last minute."""
    from station.engine import Engine

    engine = Engine(config)
    for ev in store.events(session_id):
        engine.feed(ev)
    engine.finish()
    replay, live = engine.results(), state.results
    horizon = state.now_s - 60

    def laps(r):
        return [(lap.bib, lap.run, lap.lap, lap.end_s) for lap in r.laps if lap.end_s < horizon]

    def alarms(r):
        return [(a.bib, a.alarm_s) for a in r.alarms if a.alarm_s < horizon]

    same_laps, same_alarms = laps(live) == laps(replay), alarms(live) == alarms(replay)
    return (f"live == replay: laps {'yes' if same_laps else 'NO'} ({len(laps(live))} live, "
            f"{len(laps(replay))} replayed), alarms {'yes' if same_alarms else 'NO'} "
            f"({len(alarms(live))} live, {len(alarms(replay))} replayed)")


def soak(log_path: Path, data_dir: Path, speed: float, reorder_s: float | None) -> list[dict]:
    from station.config import load_config
    from station.store import Store
    from station.worker import Worker

    config = load_config(log_path.with_suffix(".toml"))
    store = Store(data_dir)
    session = store.begin_session(config.station_id, speed=speed, new=True)
    options = {} if reorder_s is None else {"reorder_s": reorder_s}
    worker = Worker(config, store, **options).start()
    origin_ns = session.origin_ns
    samples: list[dict] = []
    next_sample_s = 0.0
    submitted = 0

    def sample(sim_s: float) -> None:
        state = worker.state
        results = state.results
        samples.append({
            "sim_h": sim_s / 3600, "events": submitted, "rss_mb": rss_mb(),
            "laps": len(results.laps) if results else 0,
            "alarms": len(results.alarms) if results else 0,
            "pending": state.pending, "rebuilds": worker.rebuilds,
            "late": worker.engine.late if worker.engine else 0,
            "wall_s": time.monotonic() - started,
        })
        s = samples[-1]
        print(f"  {s['sim_h']:5.1f} h  {s['events']:>8} events  {s['laps']:>5} laps  "
              f"{s['alarms']:>3} alarms  RSS {s['rss_mb']:7.2f} MB  rebuilds {s['rebuilds']:>3}  "
              f"({s['wall_s']:.0f} s)", flush=True)

    started = time.monotonic()
    with open(log_path, "rb") as f:
        for raw in f:
            arrival_s, _, line = raw.partition(b"\t")
            arrival_s = float(arrival_s)
            ev = orjson.loads(line)
            while True:
                now_s = worker.now_s()
                if now_s >= next_sample_s:
                    sample(next_sample_s)
                    next_sample_s += SAMPLE_EVERY_S
                    continue
                if now_s >= arrival_s:
                    break
                # Pacing only (a benchmark, not a test): sleep until the event is due.
                time.sleep(min(0.002, (arrival_s - now_s) / speed))
            if ev["type"] == "start":
                continue  # the store began the session with its own start line
            t_s = ev.pop("t")
            t_ns = origin_ns + round(t_s / speed * 1e9)
            worker.submit(ev.pop("type"), t_ns, **ev)
            submitted += 1
    worker.stop()
    sample(worker.now_s())
    behind_s = samples[-1]["sim_h"] * 3600 - arrival_s
    print(f"  (the worker ended {behind_s:.1f} simulated s after the last event arrived)")
    print("  " + replay_matches(store, session.id, worker.state, config))
    # What the session's state holds: drop the worker (engine, results) and see RSS fall.
    store.close()
    del worker
    release_memory()
    samples[-1]["rss_released_mb"] = rss_mb()
    return samples


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hours", type=float, default=8.0)
    p.add_argument("--runners", type=int, default=20)
    p.add_argument("--speed", type=float, default=150.0, help="session seconds per real second")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--reorder-s", type=float, default=None,
                   help="the worker's re-ordering window (default: the worker's own)")
    p.add_argument("--generate", metavar="FILE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.generate:
        generate(Path(args.generate), args.hours, args.runners, args.seed)
        return 0

    print(f"soak: {args.hours:g} h, {args.runners} runners, {args.speed:g}x real time; "
          f"{platform.machine()}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        log_path = Path(tmp) / "events.tsv"
        t0 = time.monotonic()
        subprocess.run([sys.executable, __file__, "--generate", str(log_path), "--hours",
                        str(args.hours), "--runners", str(args.runners), "--seed", str(args.seed)],
                       check=True)
        lines = sum(1 for _ in open(log_path, "rb"))
        print(f"simulated the event log: {lines} events in {time.monotonic() - t0:.0f} s")
        gc.collect()
        samples = soak(log_path, Path(tmp) / "data", args.speed, args.reorder_s)
        db_mb = sum(f.stat().st_size for f in (Path(tmp) / "data").glob("station.db*")) / 1e6

    warm = next((s for s in samples if s["sim_h"] >= 1.0 - 1e-9), samples[0])
    end = samples[-1]
    growth = end["rss_mb"] - warm["rss_mb"]
    ok = growth < TARGET_GROWTH_MB
    print(f"RSS: {samples[0]['rss_mb']:.1f} MB at start, {warm['rss_mb']:.1f} MB after "
          f"{warm['sim_h']:.1f} h, {end['rss_mb']:.1f} MB at the end "
          f"(peak {max(s['rss_mb'] for s in samples):.1f} MB)")
    print(f"growth after warm-up: {growth:+.2f} MB over {end['sim_h'] - warm['sim_h']:.1f} h "
          f"for {end['laps'] - warm['laps']} laps and {end['events'] - warm['events']} events "
          f"(target < {TARGET_GROWTH_MB:g} MB): {'OK' if ok else 'OVER TARGET'}")
    print(f"of which held by the session's engine and results (freed with the worker): "
          f"{end['rss_mb'] - end['rss_released_mb']:.1f} MB; RSS then {end['rss_released_mb']:.1f} MB "
          f"({end['rss_released_mb'] - warm['rss_mb']:+.2f} MB against the warm-up)")
    print(f"database: {db_mb:.1f} MB; engine rebuilds after late events: {end['rebuilds']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
