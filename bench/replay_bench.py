"""Replay benchmark: a synthetic log of at least a million events from the simulated world
(station/sim, scenario "crowd": forty runners, four gates, four cameras, stray reads, rain,
lines up to 2 s out of order), replayed through the same code as `station replay` (read_log
-> Engine -> the five CSV files). Prints events per second, peak memory and the machine.

    python bench/replay_bench.py [--events 1000000] [--runners 40] [--keep LOG]

The log is generated in a child process and streamed to a temporary file, so the peak memory
reported (ru_maxrss of this process) is the replay's alone: interpreter, imports and engine.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVENTS_PER_MINUTE_GUESS = 5000   # crowd of 40: about 100k events per 20 minutes


def generate(path: str, minutes: float, runners: int, seed: int) -> None:
    from station.sim.scenarios import build
    from station.sim.sensors import iter_events, write_events

    scenario = build("crowd", seed=seed, minutes=minutes, runners=runners)
    Path(path + ".toml").write_text(scenario.config_text, encoding="utf-8")
    n = write_events(path, iter_events(scenario.world, scenario.sensors, seed=seed))
    print(n)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000, help="at least this many events")
    p.add_argument("--runners", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", metavar="LOG", help="keep the generated log at this path")
    p.add_argument("--generate", metavar="LOG", help=argparse.SUPPRESS)
    p.add_argument("--minutes", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.generate:
        generate(args.generate, args.minutes, args.runners, args.seed)
        return 0

    tmp = tempfile.TemporaryDirectory(prefix="replay-bench-")
    log = args.keep or os.path.join(tmp.name, "events.jsonl")
    minutes = args.events / EVENTS_PER_MINUTE_GUESS * 40 / args.runners * 1.05
    t0 = time.perf_counter()
    while True:
        out = subprocess.run([sys.executable, __file__, "--generate", log, "--minutes", str(minutes),
                              "--runners", str(args.runners), "--seed", str(args.seed)],
                             check=True, capture_output=True, text=True)
        n_events = int(out.stdout.split()[-1])
        if n_events >= args.events:
            break
        minutes *= args.events / n_events * 1.05
    gen_s = time.perf_counter() - t0
    size_mb = os.path.getsize(log) / 1e6

    from station.config import load_config
    from station.replay import replay_file, write_csvs

    config = load_config(log + ".toml")
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    results = replay_file(log, config)
    write_csvs(results, os.path.join(tmp.name, "out"))
    wall_s = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    print(f"log: {n_events:,} events, {size_mb:.0f} MB, {minutes:.0f} simulated minutes, "
          f"{args.runners} runners (generated in {gen_s:.1f} s)")
    print(f"replay: {wall_s:.2f} s wall, {cpu_s:.2f} s CPU -> {n_events / wall_s:,.0f} events/s "
          f"({n_events / cpu_s:,.0f} per CPU second; the two differ when other work shares the CPU)")
    print(f"results: {len(results.laps):,} laps, {len(results.passes):,} passes, "
          f"{len(results.splits):,} splits, {len(results.alarms)} alarms, {len(results.faults)} faults")
    print(f"peak memory (ru_maxrss of the replaying process): {peak_mb:.0f} MB")
    print(f"machine: {platform.platform()}, {cpu_name()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    if args.keep:
        print(f"kept: {log} (config {log}.toml)")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
