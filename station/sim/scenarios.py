"""A library of named, seeded scenarios: small worlds that each exercise one thing the station
must get right, plus a crowd for benchmarks and an endless session for the live demo.

    scenario = build("spotter-dropout", seed=3)      # -> Scenario
    scenario.world, scenario.config_text, scenario.sensors

`SCENARIOS` maps each name to its builder and a one-line description (`station simulate
--list`). Builders take `(seed, minutes)`; `minutes` is roughly how long people run.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from station.config import Config, loads_config
from station.sim import plan
from station.sim.sensors import SensorSpec
from station.sim.world import Blocker, Runner, World

NAMES = ["Ana", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jae", "Kit", "Lou",
         "Mo", "Nia", "Oz", "Pia", "Quin", "Rae", "Sol", "Tam", "Uma", "Vik", "Wen", "Xan"]
FINISH_CAM = ("finish-cam", "finish", (370, 400), "oncoming")


@dataclass
class Scenario:
    name: str
    seed: int
    config_text: str
    world: World
    sensors: SensorSpec = field(default_factory=SensorSpec)

    @property
    def config(self) -> Config:
        return self.world.config


class Setup:
    """Collects a scenario's track, gates, cameras and roster, then its runners."""

    def __init__(self, name: str, seed: int, *, length_m: float = 400,
                 gates=(("finish", 0),), cameras=(FINISH_CAM,), roster=(), extra: str = ""):
        self.name, self.seed = name, seed
        self.rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        lines = [f"[station]\nid = \"{name}\"\n", f"[track]\nlength_m = {length_m:g}\n"]
        for gid, pos in gates:
            lines.append(f"[[gates]]\nid = \"{gid}\"\nposition_m = {pos:g}\n")
        for cid, gid, (a, b), looks in cameras:
            lines.append(f"[[cameras]]\nid = \"{cid}\"\ngate = \"{gid}\"\n"
                         f"covers_m = [{a:g}, {b:g}]\nlooks = \"{looks}\"\n")
        for bib, rname in roster:
            lines.append(f"[[runners]]\nbib = {bib}\nname = \"{rname}\"\n")
        if extra:
            lines.append(extra.strip() + "\n")
        self.config_text = "\n".join(lines)
        self.config = loads_config(self.config_text, name)
        self.runners: list[Runner] = []
        self.blockers: list[Blocker] = []
        self.checkins: list[tuple[float, str, int]] = []

    @property
    def length(self) -> float:
        return self.config.length_m

    def laps_for(self, minutes: float, speed_mps: float) -> int:
        return max(2, int(minutes * 60 * speed_mps / self.length))

    def runner(self, bib: int, *, speed_mps: float, laps: int, t0_s: float = 5.0,
               lead_s: float = 2.0, name: str | None = None, key: str | None = None,
               **kw) -> Runner:
        """A runner who appears `lead_s` before the finish line at t0_s and runs `laps` laps,
        stepping off 5 m after the last crossing. Extra keywords go to `plan.run_laps`."""
        wears = kw.pop("wears_tags", True)
        body = kw.pop("body", None) or plan.random_body(self.rng)
        stint = plan.run_laps(self.config, self.rng, t0_s=t0_s, x0_m=-speed_mps * lead_s,
                              x1_m=laps * self.length + 5, speed_mps=speed_mps, **kw)
        r = Runner(key or f"bib{bib}", bib, name if name is not None else self.config.runner_name(bib),
                   wears_tags=wears, body=body, stints=[stint])
        self.runners.append(r)
        return r

    def spotter(self, leader: Runner, bib: int, *, delay_s=(0.5, 1.5), drop: list[int] = (),
                leave_at_m: float | None = None) -> Runner:
        """Someone following the leader (forwards) `delay_s` behind, redrawn each lap; they
        leave the track before each finish crossing number in `drop` and rejoin a lap later."""
        lo, hi = delay_s
        stints = []
        for s in leader.stints:
            delays = plan.lap_delays(s, self.length, self.rng, lambda g: g.uniform(lo, hi))
            follower = plan.follow(s, delays)
            leave = plan.clear_of_gates(self.config, leave_at_m if leave_at_m is not None
                                        else self.length * 0.55)
            stints.extend(plan.drop_laps(follower, self.length, leave, list(drop)))
        r = Runner(f"bib{bib}", bib, self.config.runner_name(bib), body=plan.random_body(self.rng),
                   stints=stints, role="spotter")
        self.runners.append(r)
        return r

    def world(self, *, glitch_per_s: float = 0.002, end_s: float | None = None) -> World:
        return World(self.config, self.runners, blockers=self.blockers, glitch_per_s=glitch_per_s,
                     seed=self.seed, end_s=end_s, checkins=self.checkins)

    def done(self, sensors: SensorSpec = SensorSpec(), **kw) -> Scenario:
        return Scenario(self.name, self.seed, self.config_text, self.world(**kw), sensors)


def min_gap_s(world: World) -> float:
    """The closest two different runners come to crossing any gate together."""
    best = math.inf
    for gate in world.config.gates:
        cs = world.crossings(gate.id)
        for (t0, r0, _), (t1, r1, _) in zip(cs, cs[1:]):
            if r0 is not r1:
                best = min(best, t1 - t0)
    return best


def _roster(bibs) -> list[tuple[int, str]]:
    return [(b, NAMES[i % len(NAMES)]) for i, b in enumerate(bibs)]


# -- the scenarios ---------------------------------------------------------------------------

def solo_forward(seed: int, minutes: float = 10) -> Scenario:
    s = Setup("solo-forward", seed, roster=[(7, "Ana")])
    v = s.rng.uniform(3.6, 4.6)
    s.runner(7, speed_mps=v, laps=s.laps_for(minutes, v))
    return s.done()


def group(seed: int, minutes: float = 10, runners: int = 6) -> Scenario:
    """Runners of different paces who lap each other; never closer than 0.15 s at a gate."""
    bibs = [3, 5, 11, 12, 20, 31, 44, 57, 63, 70][:runners]
    for attempt in range(40):
        s = Setup("group", seed * 1000 + attempt, roster=_roster(bibs[:-1]))
        for i, bib in enumerate(bibs):
            v = s.rng.uniform(3.0, 4.8)
            s.runner(bib, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=5 + 7 * i,
                     lead_s=s.rng.uniform(1.5, 4))
            s.checkins.append((1.0 + i, "checkin", bib))
        sc = s.done()
        if min_gap_s(sc.world) >= 0.15:
            sc.seed = seed
            return sc
    raise RuntimeError("could not space the group out")


def _backward_pair(name: str, seed: int, minutes: float, drop: bool) -> Scenario:
    s = Setup(name, seed, roster=[(3, "Ben"), (4, "Cleo")])
    v = s.rng.uniform(3.2, 3.8)
    laps = s.laps_for(minutes, v)
    # Backwards through the home straight and over the line; forwards again 8 m later.
    ben = s.runner(3, speed_mps=v, laps=laps, backward=((310, 408),), backward_factor=0.68)
    dropped = []
    if drop:
        candidates = list(range(2, laps))
        s.rng.shuffle(candidates)
        for n in candidates:
            if len(dropped) >= max(1, laps // 3):
                break
            if all(abs(n - d) > 1 for d in dropped):
                dropped.append(n)
    s.spotter(ben, 4, drop=sorted(dropped))
    return s.done()


def backward_spotted(seed: int, minutes: float = 10) -> Scenario:
    return _backward_pair("backward-spotted", seed, minutes, drop=False)


def spotter_dropout(seed: int, minutes: float = 12) -> Scenario:
    return _backward_pair("spotter-dropout", seed, minutes, drop=True)


def close_finish(seed: int, minutes: float = 10) -> Scenario:
    """Two rivals side by side, crossing 0.1-0.4 s apart, either one first."""
    s = Setup("close-finish", seed, roster=[(17, "Eli"), (18, "Fay")])
    v = s.rng.uniform(3.8, 4.6)
    lead = s.runner(17, speed_mps=v, laps=s.laps_for(minutes, v),
                    body=plan.random_body(s.rng, lateral_m=-0.3))
    stint = lead.stints[0]

    def gap(g):
        return g.choice([-1, 1]) * g.uniform(0.1, 0.4)

    delays = plan.lap_delays(stint, s.length, s.rng, gap)
    rival = Runner("bib18", 18, "Fay", body=plan.random_body(s.rng, lateral_m=0.35),
                   stints=[plan.follow(stint, delays)])
    s.runners.append(rival)
    return s.done()


def checkpoints(seed: int, minutes: float = 10) -> Scenario:
    """Four gates, a camera on every quarter: splits, a backward runner with a spotter over
    a checkpoint, and a runner who turns round in a camera's view on some laps (mixed)."""
    gates = [("finish", 0), ("g100", 100), ("g200", 200), ("g300", 300)]
    cams = [("cam-q1", "g100", (70, 100), "oncoming"), ("cam-q2", "g200", (170, 200), "oncoming"),
            ("cam-q3", "g300", (270, 300), "oncoming"), FINISH_CAM]
    s = Setup("checkpoints", seed, gates=gates, cameras=cams, roster=_roster([21, 22, 23, 24]))
    v = s.rng.uniform(3.8, 4.4)
    s.runner(21, speed_mps=v, laps=s.laps_for(minutes, v))
    v = s.rng.uniform(3.2, 3.6)
    b = s.runner(22, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=25, backward=((140, 208),))
    s.spotter(b, 23)
    v = s.rng.uniform(3.4, 4.0)
    laps = s.laps_for(minutes, v)
    s.runner(24, speed_mps=v, laps=laps, t0_s=50, backward=((285, 315),),
             backward_laps=set(range(2, laps + 1, 2)))
    return s.done()


def departing(seed: int, minutes: float = 10) -> Scenario:
    """Cameras behind the runners (they see a forward runner's back): the finish has one
    each way, a far gate one departing; a backward runner with a spotter over the line."""
    gates = [("finish", 0), ("far", 200)]
    cams = [FINISH_CAM, ("finish-back", "finish", (0, 30), "departing"),
            ("far-back", "far", (200, 230), "departing")]
    s = Setup("departing", seed, gates=gates, cameras=cams, roster=_roster([5, 8, 9]))
    v = s.rng.uniform(3.8, 4.6)
    s.runner(5, speed_mps=v, laps=s.laps_for(minutes, v))
    v = s.rng.uniform(3.2, 3.7)
    b = s.runner(8, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=40, backward=((360, 460),))
    s.spotter(b, 9)
    return s.done()


def missed_stray(seed: int, minutes: float = 10) -> Scenario:
    """A badly printed bib, a bib hidden under a jacket for two laps, many stray reads."""
    s = Setup("missed-stray", seed, roster=_roster([14, 15, 16]))
    for i, bib in enumerate((14, 15, 16)):
        v = s.rng.uniform(3.6, 4.6)
        r = s.runner(bib, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=5 + 20 * i)
        if bib == 15:
            r.read_factor = 0.35
        if bib == 16:
            stint = r.stints[0]
            (a, b), _ = stint.times_at_x(np.array([1.5 * s.length, 3.5 * s.length]))
            r.covered.append((float(a), float(b)))
    return s.done(SensorSpec(stray_per_s=0.1))


def rain(seed: int, minutes: float = 10) -> Scenario:
    """Rain drops on the beam (breaks of a few ms, often) and a wet lens."""
    s = Setup("rain", seed, roster=_roster([30, 31]))
    for i, bib in enumerate((30, 31)):
        v = s.rng.uniform(3.6, 4.6)
        s.runner(bib, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=5 + 30 * i)
    return s.done(SensorSpec(read_best=0.8), glitch_per_s=0.4)


def blocked_beam(seed: int, minutes: float = 10) -> Scenario:
    """Someone stands in the finish beam for 35-60 s while runners pass (camera-timed)."""
    s = Setup("blocked-beam", seed, roster=_roster([40, 41]))
    for i, bib in enumerate((40, 41)):
        v = s.rng.uniform(3.6, 4.6)
        s.runner(bib, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=5 + 25 * i)
    world = s.world()
    passes = [t for t, _, _ in world.crossings("finish")]
    for _ in range(200):
        start = float(s.rng.uniform(passes[2], passes[-3]))
        end = start + float(s.rng.uniform(35, 60))
        inside = [t for t in passes if start < t < end]
        clear = all(abs(t - start) > 3 and abs(t - end) > 3 for t in passes)
        if inside and clear:
            s.blockers.append(Blocker("finish", start, end))
            break
    return s.done()


def long_pause(seed: int, minutes: float = 10) -> Scenario:
    """Three laps, a rest longer than max_lap_s off the track, three more laps: run 2."""
    s = Setup("long-pause", seed, roster=[(7, "Ana")])
    v = s.rng.uniform(3.6, 4.4)
    r = s.runner(7, speed_mps=v, laps=3)
    back_s = r.stints[0].t1 + s.config.max_lap_s + s.rng.uniform(30, 120)
    second = plan.run_laps(s.config, s.rng, t0_s=back_s, x0_m=-2 * v, x1_m=3 * s.length + 5,
                           speed_mps=v)
    r.stints.append(second)
    return s.done()


def indoor_200(seed: int, minutes: float = 8) -> Scenario:
    s = Setup("indoor-200", seed, length_m=200,
              cameras=[("finish-cam", "finish", (170, 200), "oncoming")], roster=_roster([2, 6, 9]))
    for i, bib in enumerate((2, 6, 9)):
        v = s.rng.uniform(3.5, 5.0)
        s.runner(bib, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=5 + 9 * i)
    for attempt in range(40):
        if min_gap_s(s.world()) >= 0.15:
            break
        s.runners.clear()
        for i, bib in enumerate((2, 6, 9)):
            v = s.rng.uniform(3.5, 5.0)
            s.runner(bib, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=5 + 9 * i)
    return s.done()


def no_bib_solo(seed: int, minutes: float = 10) -> Scenario:
    """One runner with no bib and no check-in: anonymous laps (bib 0)."""
    s = Setup("no-bib-solo", seed)
    v = s.rng.uniform(3.2, 4.2)
    s.runner(0, speed_mps=v, laps=s.laps_for(minutes, v), wears_tags=False, key="anon")
    return s.done()


def checkin_solo(seed: int, minutes: float = 10) -> Scenario:
    """A runner who forgot their bib but checked in from a phone: the only one, so 'solo'."""
    s = Setup("checkin-solo", seed, roster=[(9, "Dev")])
    v = s.rng.uniform(3.2, 4.2)
    r = s.runner(9, speed_mps=v, laps=s.laps_for(minutes, v), wears_tags=False)
    s.checkins += [(2.0, "checkin", 9), (r.stints[0].t1 + 10, "checkout", 9)]
    return s.done()


def crowd(seed: int, minutes: float = 200, runners: int = 40) -> Scenario:
    """Many runners on four gates with four cameras, for benchmarks (no spacing rules)."""
    gates = [("finish", 0), ("g100", 100), ("g200", 200), ("g300", 300)]
    cams = [("cam-q1", "g100", (70, 100), "oncoming"), ("cam-q2", "g200", (170, 200), "oncoming"),
            ("cam-q3", "g300", (270, 300), "oncoming"), FINISH_CAM]
    bibs = list(range(1, runners + 1))
    s = Setup("crowd", seed, gates=gates, cameras=cams, roster=_roster(bibs))
    for i, bib in enumerate(bibs):
        if bib % 10 == 4:
            continue  # the spotter of bib - 1, added with them
        v = s.rng.uniform(3.0, 4.8)
        if bib % 10 == 3 and bib + 1 <= runners:
            leader = s.runner(bib, speed_mps=min(v, 4.0), laps=s.laps_for(minutes, v),
                              t0_s=5 + 3 * i, backward=((310, 408),), backward_factor=0.7)
            s.spotter(leader, bib + 1)
        else:
            s.runner(bib, speed_mps=v, laps=s.laps_for(minutes, v), t0_s=5 + 3 * i)
    return s.done()


def demo(seed: int, minutes: float = 600) -> Scenario:
    """An endless-feeling club session for the live demo: runners check in, run a few laps,
    rest and come back; a backward runner with a spotter who drops out now and then; a
    runner who forgot their bib but checked in."""
    bibs = [7, 12, 21, 33]
    s = Setup("demo", seed, roster=[(7, "Ana"), (12, "Dev"), (21, "Eli"), (33, "Fay"),
                                    (3, "Ben"), (4, "Cleo"), (42, "Noor")])
    end_s = minutes * 60

    def sessions(bib: int, speed: float, *, wears_tags=True, **kw) -> Runner:
        t = float(s.rng.uniform(5, 120))
        body = plan.random_body(s.rng)
        stints = []
        while t < end_s:
            laps = int(s.rng.integers(3, 12))
            st = plan.run_laps(s.config, s.rng, t0_s=t, x0_m=-speed * 2, x1_m=laps * s.length + 5,
                               speed_mps=speed * s.rng.uniform(0.95, 1.05), **kw)
            if st.t1 > end_s:
                break
            stints.append(st)
            s.checkins.append((max(0.5, t - s.rng.uniform(5, 60)), "checkin", bib))
            s.checkins.append((st.t1 + s.rng.uniform(5, 30), "checkout", bib))
            t = st.t1 + float(s.rng.uniform(300, 1200))
        r = Runner(f"bib{bib}", bib, s.config.runner_name(bib), wears_tags=wears_tags, body=body,
                   stints=stints)
        s.runners.append(r)
        return r

    for bib in bibs:
        sessions(bib, float(s.rng.uniform(3.2, 5.2)))
    sessions(42, 3.6, wears_tags=False)
    ben = sessions(3, 3.5, backward=((310, 408),), backward_factor=0.68)
    drops = [n for n in range(2, 12) if s.rng.random() < 0.25]
    drops = [n for i, n in enumerate(drops) if i == 0 or n - drops[i - 1] > 1]
    s.spotter(ben, 4, drop=drops)
    return s.done(end_s=end_s)


SCENARIOS: dict[str, tuple[Callable[..., Scenario], str]] = {
    "solo-forward": (solo_forward, "one runner, forwards, tagged"),
    "group": (group, "six runners of different paces lapping each other"),
    "backward-spotted": (backward_spotted, "backwards through the home straight, spotter behind"),
    "spotter-dropout": (spotter_dropout, "as backward-spotted, the spotter drops out some laps: alarms"),
    "close-finish": (close_finish, "two rivals crossing 0.1-0.4 s apart"),
    "checkpoints": (checkpoints, "four gates, cameras on all quarters: splits, facing, alarms"),
    "departing": (departing, "cameras that see runners' backs"),
    "missed-stray": (missed_stray, "a bad bib, a hidden bib, many stray reads"),
    "rain": (rain, "rain drops on the beam, a wet lens"),
    "blocked-beam": (blocked_beam, "someone stands in the finish beam for 35-60 s"),
    "long-pause": (long_pause, "a rest longer than max_lap_s: run 2"),
    "indoor-200": (indoor_200, "a 200 m indoor track, three runners"),
    "no-bib-solo": (no_bib_solo, "one runner, no bib, no check-in: anonymous laps"),
    "checkin-solo": (checkin_solo, "one runner without a bib who checked in: solo laps"),
    "crowd": (crowd, "forty runners, four gates (benchmarks)"),
    "demo": (demo, "a long club session for the live demo"),
}
# The scenarios whose truth a correct station must reproduce exactly (tests, scoring).
SCORED = [n for n in SCENARIOS if n not in ("crowd", "demo")]


def build(name: str, seed: int = 0, minutes: float | None = None, **kw) -> Scenario:
    try:
        builder = SCENARIOS[name][0]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})") from None
    if minutes is not None:
        kw["minutes"] = minutes
    if name not in SCORED:
        return builder(seed, **kw)
    # A scored scenario must have one right answer: re-draw the rare world in which the
    # truth hangs on a frame or two (see truth.Truth.ambiguous)...
    from station.sim.truth import compute_truth

    for attempt in range(20):
        scenario = builder(seed + 100_003 * attempt, **kw)
        # ... or where two people cross a gate at the same instant (closer than 0.1 s).
        if not compute_truth(scenario.world).ambiguous and min_gap_s(scenario.world) >= 0.1:
            break
    scenario.seed = seed
    return scenario
