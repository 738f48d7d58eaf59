"""Robustness variants: harder scenarios, and other sensors, optics and timing applied to any
scenario, for the sweeps that look for what the engine was never tuned on.

A variant's name is a scenario name followed by modifiers, e.g. `group+nopx+fps5`:

- the scenarios of scenarios.py, plus the harder ones below (`EXTRA`);
- modifiers (`MODS`): tag reads without `px`, other frame rates, other optics (a lens that
  makes tags half or twice as big at a given distance), a detector reading half as often,
  every line (the finish beam too) up to 2 s late.

    scenario = build_variant("checkpoints+optics2+fps30", seed=3)

Camera frame rates and optics are properties of the simulated world, not of the station's
config (SPEC §3 has no such keys), so the engine must cope without being told.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from station.sim import plan
from station.sim.scenarios import (FINISH_CAM, SCENARIOS, SCORED, Scenario, Setup, _roster,
                                   min_gap_s)
from station.sim.world import Blocker, Runner, World

# -- harder scenarios ------------------------------------------------------------------------


def fast(seed: int, minutes: float = 8) -> Scenario:
    """Sprinters at 6.5-7.5 m/s (57-62 s laps) and one steady runner they lap."""
    s = Setup("fast", seed, roster=_roster([51, 52, 53]))
    for i, bib in enumerate((51, 52)):
        v = s.rng.uniform(6.5, 7.5)
        s.runner(bib, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=5 + 11 * i)
    v = s.rng.uniform(3.4, 4.0)
    s.runner(53, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=30)
    return s.done()


def walker(seed: int, minutes: float = 20) -> Scenario:
    """A slow backward walker (1.2 m/s backwards down the home straight and over the line)
    with a spotter 1-2 s behind who drops out some laps: alarms."""
    s = Setup("walker", seed, roster=[(61, "Gus"), (62, "Hana")])
    v = s.rng.uniform(1.6, 1.8)
    laps = s.laps_for(minutes, v)
    w = s.runner(61, speed_mps=v, laps=laps, backward=((300, 410),),
                 backward_factor=1.2 / v)
    drop = [n for n in range(2, laps) if n % 2 == 0]
    s.spotter(w, 62, delay_s=(1.0, 2.0), drop=drop)
    return s.done()


def close_tight(seed: int, minutes: float = 10) -> Scenario:
    """Two rivals side by side, 0.1-0.3 s apart at the line; on some laps one of them has
    the bib hidden (a hand, a jacket), so the camera sees only the other."""
    s = Setup("close-tight", seed, roster=[(17, "Eli"), (18, "Fay")])
    v = s.rng.uniform(3.8, 4.6)
    lead = s.runner(17, speed_mps=v, laps=s.laps_for(minutes, v),
                    body=plan.random_body(s.rng, lateral_m=-0.3))
    stint = lead.stints[0]
    delays = plan.lap_delays(stint, s.length, s.rng,
                             lambda g: g.choice([-1, 1]) * g.uniform(0.1, 0.3))
    rival = Runner("bib18", 18, "Fay", body=plan.random_body(s.rng, lateral_m=0.35),
                   stints=[plan.follow(stint, delays)])
    s.runners.append(rival)
    # Hidden on the approach to the line of laps 3 and 6 (only the other bib is read).
    for n, who in ((3, rival), (6, lead)):
        st = who.stints[0]
        if st.x[-1] > n * s.length:
            (a, b), _ = st.times_at_x(np.array([n * s.length - 40.0, n * s.length + 5.0]))
            who.covered.append((float(a), float(b)))
    return s.done()


def spotter_tight(seed: int, minutes: float = 10) -> Scenario:
    """The spotter runs 0.15-0.3 s behind the backward runner: both bodies in one beam
    cluster, both bibs in every frame; now and then the spotter drops out (alarms)."""
    s = Setup("spotter-tight", seed, roster=[(3, "Ben"), (4, "Cleo")])
    v = s.rng.uniform(3.2, 3.8)
    laps = s.laps_for(minutes, v)
    ben = s.runner(3, speed_mps=v, laps=laps, backward=((310, 408),), backward_factor=0.68)
    s.spotter(ben, 4, delay_s=(0.15, 0.3), drop=[n for n in (3, 6) if n < laps])
    return s.done()


def crowd20(seed: int, minutes: float = 8) -> Scenario:
    """Twenty runners at once on one finish gate (pairs and bunches at the line)."""
    bibs = list(range(101, 121))
    best = None
    for attempt in range(30):
        s = Setup("crowd20", seed * 1000 + attempt, roster=_roster(bibs))
        for i, bib in enumerate(bibs):
            v = s.rng.uniform(3.0, 5.0)
            s.runner(bib, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=5 + 2.5 * i,
                     lead_s=s.rng.uniform(1.5, 4))
        sc = s.done()
        gap = min_gap_s(sc.world)
        if best is None or gap > best[0]:
            best = (gap, sc)
        if gap >= 0.12:
            break
    sc = best[1]
    sc.seed = seed
    return sc


def checkpoints_mixed(seed: int, minutes: float = 10) -> Scenario:
    """Four gates, cameras on all four quarters, departing and oncoming: a forward runner,
    a backward runner in Q2 with a spotter who drops out once, and a runner who turns
    round on even laps to cross g200 backwards alone (mixed Q2 and Q3, alarms)."""
    gates = [("finish", 0), ("g100", 100), ("g200", 200), ("g300", 300)]
    cams = [("fin-back", "finish", (0, 30), "departing"),
            ("g100-back", "g100", (100, 130), "departing"),
            ("g200-cam", "g200", (170, 200), "oncoming"),
            ("g200-back", "g200", (200, 230), "departing"),
            ("g300-back", "g300", (300, 330), "departing"), FINISH_CAM]
    s = Setup("checkpoints-mixed", seed, gates=gates, cameras=cams,
              roster=_roster([21, 22, 23, 24]))
    v = s.rng.uniform(3.8, 4.4)
    s.runner(21, speed_mps=v, laps=s.laps_for(minutes, v))
    v = s.rng.uniform(3.2, 3.6)
    b = s.runner(22, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=25, backward=((140, 215),))
    s.spotter(b, 23, drop=[3])
    v = s.rng.uniform(3.4, 4.0)
    laps = s.laps_for(minutes, v)
    s.runner(24, speed_mps=v, laps=laps, t0_s=50, backward=((188, 212),),
             backward_laps=set(range(2, laps + 1, 2)))
    return s.done()


def indoor_short(seed: int, minutes: float = 6) -> Scenario:
    """A 200 m track, min_lap_s = 10 and max_lap_s = 120: fast laps of 28-45 s, and a rest
    of 2.5-4 minutes that starts run 2."""
    s = Setup("indoor-short", seed, length_m=200,
              cameras=[("finish-cam", "finish", (170, 200), "oncoming")],
              roster=_roster([2, 6, 9]), extra="[laps]\nmin_lap_s = 10\nmax_lap_s = 120\n")
    for i, bib in enumerate((2, 6, 9)):
        v = s.rng.uniform(4.5, 7.0)
        r = s.runner(bib, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=5 + 9 * i)
        if bib == 6:
            back_s = r.stints[0].t1 + s.rng.uniform(150, 240)
            r.stints.append(plan.run_laps(s.config, s.rng, t0_s=back_s, x0_m=-2 * v,
                                          x1_m=4 * s.length + 5, speed_mps=v))
    return s.done()


def pauses(seed: int, minutes: float = 10) -> Scenario:
    """max_lap_s = 240: two runners who rest 4.5-7 minutes between sets, one who walks a
    slow lap (just under max_lap_s) that still counts."""
    s = Setup("pauses", seed, roster=_roster([71, 72, 73]), extra="[laps]\nmax_lap_s = 240\n")
    for i, bib in enumerate((71, 72)):
        v = s.rng.uniform(3.6, 4.4)
        r = s.runner(bib, speed_mps=v, laps=2, t0_s=5 + 15 * i)
        t = r.stints[0].t1
        for _ in range(2):
            t += s.rng.uniform(270, 420)
            st = plan.run_laps(s.config, s.rng, t0_s=t, x0_m=-2 * v, x1_m=2 * s.length + 5,
                               speed_mps=v)
            r.stints.append(st)
            t = st.t1
    s.runner(73, speed_mps=400 / 200, laps=3, t0_s=40, lap_sd=0.0, segment_sd=0.0)
    return s.done()


def checkin_mixed(seed: int, minutes: float = 12) -> Scenario:
    """Three tagged runners and one without a bib, all checked in from phones: the bibless
    runner's passes are theirs (the only checked-in runner no camera reads); one tagged
    runner checks out and leaves half-way."""
    s = Setup("checkin-mixed", seed, roster=_roster([81, 82, 83, 84]))
    for i, bib in enumerate((81, 82, 83, 84)):
        v = s.rng.uniform(3.4, 4.6)
        laps = s.laps_for(minutes, v) if bib != 82 else 3
        r = s.runner(bib, speed_mps=v, laps=laps, t0_s=8 + 17 * i, wears_tags=bib != 84)
        s.checkins.append((1.0 + i, "checkin", bib))
        s.checkins.append((r.stints[0].t1 + 8, "checkout", bib))
    return s.done()


def blocked_busy(seed: int, minutes: float = 10) -> Scenario:
    """The finish beam blocked twice for 20-40 s while four runners, one of them backward
    with a spotter, pass (camera-timed passes, no alarm while the spotter is there)."""
    s = Setup("blocked-busy", seed, roster=_roster([40, 41, 3, 4]))
    for i, bib in enumerate((40, 41)):
        v = s.rng.uniform(3.6, 4.6)
        s.runner(bib, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=5 + 25 * i)
    v = s.rng.uniform(3.2, 3.6)
    ben = s.runner(3, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=60,
                   backward=((310, 408),), backward_factor=0.7)
    s.spotter(ben, 4)
    world = s.world()
    passes = [t for t, _, _ in world.crossings("finish")]
    for lo, hi in ((0.2, 0.45), (0.6, 0.85)):
        for _ in range(300):
            start = float(s.rng.uniform(passes[int(lo * len(passes))], passes[int(hi * len(passes))]))
            end = start + float(s.rng.uniform(20, 40))
            inside = [t for t in passes if start < t < end]
            clear = all(abs(t - start) > 3 and abs(t - end) > 3 for t in passes)
            if inside and clear:
                s.blockers.append(Blocker("finish", start, end))
                break
    return s.done()


EXTRA: dict[str, tuple[Callable[..., Scenario], str]] = {
    "fast": (fast, "sprinters at 7 m/s lapping a steady runner"),
    "walker": (walker, "a 1.2 m/s backward walker, spotter drops out (alarms)"),
    "close-tight": (close_tight, "rivals 0.1-0.3 s apart, a bib hidden on some laps"),
    "spotter-tight": (spotter_tight, "spotter 0.15-0.3 s behind the backward runner"),
    "crowd20": (crowd20, "twenty runners at once on one gate"),
    "checkpoints-mixed": (checkpoints_mixed, "four gates, departing and oncoming cameras on all quarters"),
    "indoor-short": (indoor_short, "200 m, min_lap_s 10, max_lap_s 120, a rest: run 2"),
    "pauses": (pauses, "max_lap_s 240: rests between sets, a slow walked lap"),
    "checkin-mixed": (checkin_mixed, "tagged runners and a bibless one, all checked in"),
    "blocked-busy": (blocked_busy, "beam blocked twice while four runners pass"),
}

# -- modifiers -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Mod:
    text: str
    sensors: dict = dataclasses.field(default_factory=dict)
    fps: float | None = None
    focal_scale: float | None = None


MODS: dict[str, Mod] = {
    "nopx": Mod("tag reads without px", sensors={"px_p": 0.0}),
    "somepx": Mod("half the tag reads without px", sensors={"px_p": 0.5}),
    "fps30": Mod("cameras at 30 frames/s", fps=30),
    "fps5": Mod("cameras at 5 frames/s", fps=5),
    "optics05": Mod("a wider lens: tags half as big (px x distance ~180)", focal_scale=0.5),
    "optics2": Mod("a longer lens: tags twice as big (px x distance ~720)", focal_scale=2.0),
    "fewreads": Mod("the detector reads half as often", sensors={"read_factor": 0.5}),
    "late": Mod("every line up to 2 s late (the finish beam too)",
                sensors={"local_latency_s": (0.0, 1.9), "tag_latency_s": 0.4,
                         "tag_hiccup_p": 0.05, "remote_latency_s": (0.05, 1.9)}),
}

SCENARIO_NAMES = list(SCORED) + list(EXTRA)


def _base(name: str) -> Callable[..., Scenario]:
    if name in EXTRA:
        return EXTRA[name][0]
    if name in SCENARIOS:
        return SCENARIOS[name][0]
    raise ValueError(f"unknown scenario {name!r} (known: {', '.join(list(SCENARIOS) + list(EXTRA))})")


def apply_mods(scenario: Scenario, mods: list[str]) -> Scenario:
    sensors, fps, focal = scenario.sensors, None, 1.0
    for m in mods:
        try:
            mod = MODS[m]
        except KeyError:
            raise ValueError(f"unknown modifier {m!r} (known: {', '.join(MODS)})") from None
        sensors = dataclasses.replace(sensors, **mod.sensors)
        fps = mod.fps if mod.fps is not None else fps
        focal *= mod.focal_scale if mod.focal_scale is not None else 1.0
    w = scenario.world
    if fps is not None or focal != 1.0:
        w = World(w.config, list(w.runners), blockers=list(w.blockers), glitch_per_s=w.glitch_per_s,
                  seed=w.seed, end_s=w.end_s, checkins=list(w.checkins), fps=fps,
                  focal_scale=focal)
    return Scenario(scenario.name + "".join("+" + m for m in mods), scenario.seed,
                    scenario.config_text, w, sensors)


def build_variant(name: str, seed: int = 0, minutes: float | None = None) -> Scenario:
    """A scenario (scenarios.py or EXTRA) with modifiers: "NAME+MOD+MOD". Like
    scenarios.build, worlds whose truth hangs on a frame or two are re-drawn."""
    from station.sim.truth import compute_truth

    base, *mods = name.split("+")
    builder = _base(base)
    kw = {} if minutes is None else {"minutes": minutes}
    if base not in SCORED and base not in EXTRA:
        return apply_mods(builder(seed, **kw), mods)
    for attempt in range(20):
        sc = apply_mods(builder(seed + 100_003 * attempt, **kw), mods)
        if not compute_truth(sc.world).ambiguous and min_gap_s(sc.world) >= 0.1:
            break
    sc.seed = seed
    return sc


def all_names() -> list[str]:
    return list(SCENARIOS) + list(EXTRA)


def describe() -> list[tuple[str, str]]:
    rows = [(n, text) for n, (_, text) in {**SCENARIOS, **EXTRA}.items()]
    rows += [("+" + n, m.text) for n, m in MODS.items()]
    return rows

