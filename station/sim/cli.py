"""`station simulate`: write a simulated session's raw event log, its station.toml and what
really happened (expected_laps.csv, expected_splits.csv, expected_alarms.csv,
expected_faults.csv), laid out like ../shared/examples, so `station replay` can be checked
against the truth (`--score` does that at once)."""

from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("scenario", nargs="?", metavar="SCENARIO",
                        help="scenario name, optionally with modifiers: NAME+MOD+... (see --list)")
    parser.add_argument("--out", metavar="DIR", help="folder to write the files into")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="roughly how long people run (default: the scenario's own)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--score", action="store_true",
                        help="also replay the log through the engine and compare with the truth")


def run(args) -> int:
    from station.sim.sensors import iter_events, write_events
    from station.sim.truth import compute_truth, write_truth
    from station.sim.variants import MODS, all_names, build_variant, describe

    if args.list or not args.scenario:
        rows = describe()
        width = max(len(n) for n, _ in rows)
        for name, text in rows:
            print(f"{name:{width}}  {text}")
        return 0 if args.list else 2
    base, *mods = args.scenario.split("+")
    if base not in all_names() or any(m not in MODS for m in mods):
        print(f"station simulate: unknown scenario {args.scenario!r}; known: "
              f"{', '.join(all_names())}, each optionally +{'/+'.join(MODS)}", file=sys.stderr)
        return 2
    if not args.out:
        print("station simulate: --out DIR is required", file=sys.stderr)
        return 2
    if args.minutes is not None and args.minutes <= 0:
        print("station simulate: --minutes must be greater than 0", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scenario = build_variant(args.scenario, seed=args.seed, minutes=args.minutes)
    (out / "station.toml").write_text(scenario.config_text, encoding="utf-8")
    n = write_events(out / "events.jsonl", iter_events(scenario.world, scenario.sensors, args.seed))
    truth = compute_truth(scenario.world)
    write_truth(truth, out)
    print(f"{args.scenario} (seed {args.seed}): {n} events, {len(truth.laps)} laps, "
          f"{len(truth.alarms)} alarms, {len(truth.faults)} faults -> {out}")
    for note in truth.ambiguous:
        print(f"  note: borderline case, {note}", file=sys.stderr)
    if args.score:
        from station.replay import replay_file
        from station.sim.score import score

        result = score(truth, replay_file(out / "events.jsonl", scenario.config), args.scenario)
        print(result.summary())
        for failure in result.failures():
            print(f"  {failure}")
        return 1 if result.failures() else 0
    return 0
