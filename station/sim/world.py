"""The simulated world: people moving on a track, and what a beam and a camera physically see.

This module is pure physics, with no sensor noise: where every runner is at any time, which
way they face, when their torso and arms cut each gate's beam, and which bib tags each camera
could see in a frame. `sensors.py` turns this into the raw event log (misses, stray reads,
rain drops, latency); `truth.py` reads the true laps, alarms and faults from it; the live demo
queries it directly to draw camera frames and drive mock beam pins.

Query API (all times are session seconds, all results are deterministic for a given world):

    world.config                      the station `Config` (track, gates, cameras, roster)
    world.runners                     tuple of `Runner` (bib, name, wears_tags, body, stints)
    world.end_s                       when the scenario is over (inf for an endless one)
    world.position_m(runner, t_s)     lap position in [0, length_m), or None when off the track
    world.crossings(gate_id, t0, t1)  [(t_s, runner, speed_mps)] torso crossings in [t0, t1)
    world.beam_intervals(gate_id, t0, t1)  merged (start_s, end_s) spans the beam is broken
    world.beam_edges(gate_id, t0, t1) [(t_s, broken)] every edge of the beam signal in [t0, t1)
    world.beam_broken(gate_id, t_s)   True while something is in the beam (drive a mock pin)
    world.visible_tags(camera_id, t_s)  [Sighting(tag, distance_m, lateral_m, px, x, y, runner)]:
        the tags a camera could read in a frame taken at t_s (no detector misses); `x`, `y`
        are the tag centre as fractions of the frame (0..1), `px` its side in pixels,
        `runner` the runner's key. (station.sensors.fakecam.world_scene draws these.)
    world.checkins                    [(t_s, "checkin" | "checkout", bib)]

Scenarios (scenarios.py) build worlds; `build("demo", minutes=600)` is a long club session
for the live demo. For the event log of any time window use
`sensors.iter_events(world, spec, seed, t0_s, t1_s)`; for the truth, `truth.compute_truth`.
    world.frame_times(camera_id, t0, t1)  the camera's nominal capture times in [t0, t1)

Geometry. A runner is a point `x` moving along the track (metres from the first finish
line, growing without wrapping; the lap position is `x % length_m`). The torso spans
[x - 0.6 D, x + 0.4 D] in the running direction, so a clean torso break [s, e] of the beam
gives the true crossing time T = s + 0.4 (e - s). In most passes a hand, somewhere in its
swing (reaching up to `arm_swing_m` beyond the torso), cuts the beam briefly before the
torso, sometimes overlapping the torso's start; less often the other hand after it. A camera stands at the end of its stretch (`b` when oncoming, `a` when departing)
on the lane's axis; a tag at distance d, lateral offset l and height h above the lens shows
`px = FOCAL_PX * TAG_SIDE_M / range` and is in view while its centre projects inside the frame.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from station.config import Config

# Camera optics, calibrated on the example logs: px x distance ~ 360 px m at 1280 px width,
# so a tag is ~12 px at 30 m and ~200 px at 1.8 m, where it leaves the top of the frame.
FOCAL_PX_AT_1280 = 2400.0
TAG_SIDE_M = 0.15

# Limb breaks reach at most this far from the torso crossing.
_PASS_REACH_S = 0.5
# Beam queries look this far beyond their window so a merged break is never cut in two.
_BEAM_PAD_S = 3.0
_GLITCH_BLOCK_S = 60.0
# The receiver cannot see breaks or gaps shorter than its response time.
RECEIVER_RESPONSE_S = 0.0003
# Chance that a hand is low enough to cut the beam in front of / behind the torso in a pass.
HAND_FRONT_P = 0.75
HAND_REAR_P = 0.4


@dataclass(frozen=True)
class Body:
    """The knobs of one runner's body that a beam and a camera notice."""

    torso_depth_m: float = 0.30
    arm_swing_m: float = 0.17      # how far beyond the torso a swinging hand reaches
    arm_width_m: float = 0.065     # a hand or forearm at the beam's height
    lateral_m: float = 0.0         # offset from the cameras' axis (lane position)
    tag_height_m: float = 0.25     # tag centre above the camera lens


@dataclass
class Stint:
    """One continuous stretch on the track: knots (t_s, x_m) with constant speed between,
    `back[i]` True when segment i is run backwards (facing against the running direction)."""

    t: np.ndarray
    x: np.ndarray
    back: np.ndarray

    def __post_init__(self):
        self.t = np.asarray(self.t, dtype=float)
        self.x = np.asarray(self.x, dtype=float)
        self.back = np.asarray(self.back, dtype=bool)
        if len(self.t) < 2 or len(self.back) != len(self.t) - 1:
            raise ValueError("a stint needs >= 2 knots and one facing per segment")
        if np.any(np.diff(self.t) <= 0) or np.any(np.diff(self.x) <= 0):
            raise ValueError("a stint must move forward in time and along the track")

    @property
    def t0(self) -> float:
        return float(self.t[0])

    @property
    def t1(self) -> float:
        return float(self.t[-1])

    def x_at(self, t_s):
        return np.interp(t_s, self.t, self.x)

    def segment_at(self, t_s):
        """Index of the segment holding t_s (array-friendly)."""
        return np.clip(np.searchsorted(self.t, t_s, side="right") - 1, 0, len(self.back) - 1)

    def times_at_x(self, x_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """When the runner is at absolute positions x_m (inside the stint), and the segment."""
        seg = np.clip(np.searchsorted(self.x, x_m, side="right") - 1, 0, len(self.back) - 1)
        x0, x1, t0, t1 = self.x[seg], self.x[seg + 1], self.t[seg], self.t[seg + 1]
        return t0 + (x_m - x0) / (x1 - x0) * (t1 - t0), seg

    def speed(self, seg: np.ndarray) -> np.ndarray:
        return (self.x[seg + 1] - self.x[seg]) / (self.t[seg + 1] - self.t[seg])


@dataclass
class Runner:
    """A person on the track. `bib` is who they are (0: nobody knows); `wears_tags` says
    whether a bib with tags is on them. `covered` are (t0, t1) spans when the bib is hidden
    (a jacket, a hand), so no camera can read it."""

    key: str
    bib: int
    name: str = ""
    wears_tags: bool = True
    body: Body = field(default_factory=Body)
    stints: list[Stint] = field(default_factory=list)
    covered: list[tuple[float, float]] = field(default_factory=list)
    read_factor: float = 1.0       # how well the printed bib reads (1: a clean bib)
    role: str = "runner"           # runner, spotter, pacer, ... (for people reading truth)

    def tag_ids(self) -> tuple[int, int]:
        return 2 * self.bib, 2 * self.bib + 1

    def is_covered(self, t_s: float) -> bool:
        return any(a <= t_s < b for a, b in self.covered)


@dataclass(frozen=True)
class Blocker:
    """Someone or something standing in a gate's beam from start_s to end_s."""

    gate: str
    start_s: float
    end_s: float


class Sighting(NamedTuple):
    tag: int
    distance_m: float
    lateral_m: float
    px: float
    x: float
    y: float
    runner: str


def torso_interval(t_s: float, speed_mps: float, body: Body) -> tuple[float, float]:
    d = body.torso_depth_m
    return t_s - 0.4 * d / speed_mps, t_s + 0.6 * d / speed_mps


def body_intervals(t_s: float, speed_mps: float, body: Body,
                   rng: random.Random | None = None) -> list[tuple[float, float]]:
    """When one runner's torso and hands cut a beam they cross at t_s (not merged).

    Where each hand is in its swing at that moment comes from `rng` (one per pass); during
    the crossing it drifts relative to the torso at up to a fifth of the running speed, so
    a hand breaks the beam for about its width / speed (10-40 ms)."""
    out = [torso_interval(t_s, speed_mps, body)]
    if rng is None or body.arm_swing_m <= 0:
        return out
    d, reach = body.torso_depth_m, body.arm_swing_m
    for p, ahead in ((HAND_FRONT_P, True), (HAND_REAR_P, False)):
        present, gap_u, width_u, drift_u = rng.random(), rng.random(), rng.random(), rng.random()
        if present >= p:
            continue
        w = body.arm_width_m * (0.8 + 0.4 * width_u)
        if ahead:   # may reach back over the torso's front: the break then starts early
            offset = 0.4 * d + w / 2 + (-0.09 + (reach + 0.09) * gap_u)
        else:
            offset = -(0.6 * d + w / 2 + (-0.04 + (reach + 0.04) * gap_u))
        v = speed_mps * (1 + 0.4 * (drift_u - 0.5))
        out.append((t_s + (-offset - w / 2) / v, t_s + (-offset + w / 2) / v))
    return out


def merge_intervals(spans: list[tuple[float, float]], min_s: float = 0.0) -> list[tuple[float, float]]:
    """Union of spans; gaps and spans shorter than `min_s` vanish (receiver response)."""
    out: list[list[float]] = []
    for a, b in sorted(spans):
        if b - a < min_s:
            continue
        if out and a <= out[-1][1] + min_s:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


class World:
    """Runners, blockers and rain on a track seen by the station's gates and cameras."""

    def __init__(self, config: Config, runners: list[Runner], *, blockers: list[Blocker] = (),
                 glitch_per_s: float = 0.0, seed: int = 0, end_s: float | None = None,
                 checkins: list[tuple[float, str, int]] = (), fps: float | None = None,
                 focal_scale: float = 1.0):
        self.config = config
        # Optics and frame rate of the real cameras, which the station's config need not
        # know (SPEC §3 has no such keys): `fps` overrides every camera's frame rate,
        # `focal_scale` its focal length (2: a longer lens, tags twice as big at a distance).
        self.fps = {c.id: float(fps if fps is not None else c.fps) for c in config.cameras}
        self.focal_scale = float(focal_scale)
        self.runners = tuple(runners)
        self.blockers = tuple(blockers)
        self.glitch_per_s = glitch_per_s
        self.seed = seed
        self.checkins = tuple(sorted(checkins))   # (t_s, "checkin"|"checkout", bib)
        keys = [r.key for r in self.runners]
        if len(set(keys)) != len(keys):
            raise ValueError("runner keys must be unique")
        self._gates = {g.id: g for g in config.gates}
        self._gate_index = {g.id: i for i, g in enumerate(config.gates)}
        self._runner_index = {r.key: i for i, r in enumerate(self.runners)}
        self._cameras = {c.id: c for c in config.cameras}
        rng = np.random.default_rng([seed, 11])
        # Each camera runs on its own free clock: a fixed phase within the frame period.
        self._frame_phase = {c.id: float(rng.uniform(0, 1 / self.fps[c.id])) for c in config.cameras}
        last = max((s.t1 for r in self.runners for s in r.stints), default=0.0)
        last = max([last] + [b.end_s for b in self.blockers])
        self.end_s = float(end_s) if end_s is not None else last + 5.0
        self._crossings = {g.id: self._gate_crossings(g.position_m) for g in config.gates}

    # -- where people are ---------------------------------------------------------------
    def runner(self, key: str) -> Runner:
        return next(r for r in self.runners if r.key == key)

    def position_m(self, runner: Runner, t_s: float) -> float | None:
        for s in runner.stints:
            if s.t0 <= t_s <= s.t1:
                return float(s.x_at(t_s)) % self.config.length_m
        return None

    def facing_back(self, runner: Runner, t_s: float) -> bool | None:
        for s in runner.stints:
            if s.t0 <= t_s <= s.t1:
                return bool(s.back[s.segment_at(t_s)])
        return None

    def _gate_crossings(self, position_m: float):
        """All torso crossings of a track position, sorted: (t array, runner idx, speed)."""
        length = self.config.length_m
        ts, who, vs = [], [], []
        for i, r in enumerate(self.runners):
            for s in r.stints:
                n0 = math.ceil((s.x[0] - position_m) / length)
                n1 = math.floor((s.x[-1] - position_m) / length)
                if n1 < n0:
                    continue
                xs = position_m + length * np.arange(n0, n1 + 1)
                # A stint that starts or ends exactly on a gate does not cross it.
                xs = xs[(xs > s.x[0]) & (xs < s.x[-1])]
                t, seg = s.times_at_x(xs)
                ts.append(t)
                vs.append(s.speed(seg))
                who.append(np.full(len(t), i))
        if not ts:
            return np.empty(0), np.empty(0, dtype=int), np.empty(0)
        t, w, v = np.concatenate(ts), np.concatenate(who), np.concatenate(vs)
        order = np.argsort(t, kind="stable")
        return t[order], w[order], v[order]

    def crossings(self, gate_id: str, t0: float = -math.inf, t1: float = math.inf):
        """Torso crossings of a gate in [t0, t1): [(t_s, runner, speed_mps)], by time."""
        t, who, v = self._crossings[gate_id]
        i0, i1 = np.searchsorted(t, [t0, t1], side="left")
        return [(float(t[i]), self.runners[who[i]], float(v[i])) for i in range(i0, i1)]

    # -- the beam ---------------------------------------------------------------------
    def glitches(self, gate_id: str, t0: float, t1: float) -> list[tuple[float, float]]:
        """Rain drops and insects: breaks of 0.5-4 ms at random (but fixed) times."""
        if self.glitch_per_s <= 0:
            return []
        out = []
        gi = self._gate_index[gate_id]
        for block in range(max(0, math.floor(t0 / _GLITCH_BLOCK_S)), math.floor(t1 / _GLITCH_BLOCK_S) + 1):
            rng = np.random.default_rng([self.seed, 7, gi, block])
            n = rng.poisson(self.glitch_per_s * _GLITCH_BLOCK_S)
            starts = block * _GLITCH_BLOCK_S + rng.uniform(0, _GLITCH_BLOCK_S, n)
            lengths = rng.uniform(0.0005, 0.004, n)
            out.extend((float(a), float(a + d)) for a, d in zip(starts, lengths) if t0 <= a < t1)
        return out

    def beam_intervals(self, gate_id: str, t0: float, t1: float) -> list[tuple[float, float]]:
        """Merged spans in which the beam is broken, for spans overlapping [t0, t1)."""
        lo, hi = t0 - _BEAM_PAD_S, t1 + _BEAM_PAD_S
        spans = []
        gi = self._gate_index[gate_id]
        for t, runner, v in self.crossings(gate_id, lo - _PASS_REACH_S, hi + _PASS_REACH_S):
            # Each pass has its own arm positions, the same whenever it is asked for.
            rng = random.Random(hash((self.seed, gi, self._runner_index[runner.key], round(t * 1e4))))
            spans.extend(body_intervals(t, v, runner.body, rng))
        spans.extend((b.start_s, b.end_s) for b in self.blockers
                     if b.gate == gate_id and b.end_s > lo and b.start_s < hi)
        spans.extend(self.glitches(gate_id, lo, hi))
        merged = merge_intervals(spans, RECEIVER_RESPONSE_S)
        return [(a, b) for a, b in merged if b > t0 and a < t1]

    def beam_edges(self, gate_id: str, t0: float, t1: float) -> list[tuple[float, bool]]:
        """Every edge of the beam signal in [t0, t1): (t_s, broken)."""
        out = []
        for a, b in self.beam_intervals(gate_id, t0, t1):
            if t0 <= a < t1:
                out.append((float(a), True))
            if t0 <= b < t1:
                out.append((float(b), False))
        return out

    def beam_broken(self, gate_id: str, t_s: float) -> bool:
        return any(a <= t_s < b for a, b in self.beam_intervals(gate_id, t_s, t_s + 1e-9))

    # -- the cameras --------------------------------------------------------------------
    def frame_times(self, camera_id: str, t0: float, t1: float) -> np.ndarray:
        phase, period = self._frame_phase[camera_id], 1.0 / self.fps[camera_id]
        k0 = math.ceil((t0 - phase) / period - 1e-9)
        k1 = math.ceil((t1 - phase) / period - 1e-9)
        return phase + period * np.arange(k0, k1)

    def camera_geometry(self, camera_id: str):
        cam = self._cameras[camera_id]
        focal_px = FOCAL_PX_AT_1280 * cam.width / 1280 * self.focal_scale
        return cam, focal_px

    def view(self, camera_id: str, runner: Runner, stint: Stint, t_s: np.ndarray):
        """For frames at times t_s (all inside `stint`): which are in view, the tag shown,
        distance, px and frame position. Arrays, for the sensor model and the truth."""
        cam, focal_px = self.camera_geometry(camera_id)
        length = self.config.length_m
        a, b = cam.covers_m
        pos = stint.x_at(t_s) % length
        # A stretch ending at the finish line: positions just past 0 are not on it.
        dist = (b - pos) if cam.looks == "oncoming" else (pos - a)
        on = (pos >= a) & (pos <= b) if b < length else (pos >= a)
        body = runner.body
        rng_m = np.sqrt(dist ** 2 + body.lateral_m ** 2 + body.tag_height_m ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = 0.5 + focal_px * body.lateral_m / np.maximum(dist, 1e-6) / cam.width
            v = 0.5 - focal_px * body.tag_height_m / np.maximum(dist, 1e-6) / cam.height
        visible = on & (dist > 0.3) & (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
        back = stint.back[stint.segment_at(t_s)]
        shows_front = ~back if cam.looks == "oncoming" else back
        px = focal_px * TAG_SIDE_M / rng_m
        return visible, shows_front, back, dist, px, u, v

    def visible_tags(self, camera_id: str, t_s: float) -> list[Sighting]:
        """The tags a camera could read in a frame captured at t_s (no detector misses)."""
        out = []
        for r in self.runners:
            if not r.wears_tags or r.is_covered(t_s):
                continue
            for s in r.stints:
                if not s.t0 <= t_s <= s.t1:
                    continue
                vis, front, _, dist, px, u, v = self.view(camera_id, r, s, np.array([t_s]))
                if vis[0]:
                    tag = 2 * r.bib + (0 if front[0] else 1)
                    out.append(Sighting(tag, float(dist[0]), r.body.lateral_m, float(px[0]),
                                        float(u[0]), float(v[0]), r.key))
        return out

    def sightings(self, camera_id: str, runner: Runner, t0: float, t1: float):
        """For each stretch of [t0, t1) a tagged runner spends on a camera's stretch: the
        frame times and `view`'s arrays for them, with `visible` already cleared where the
        bib is covered. What the sensor model reads from and what the truth counts."""
        if not runner.wears_tags:
            return
        for stint, ta, tb in self.visits(camera_id, runner, t0, t1):
            lo, hi = max(ta, t0), min(tb, t1)
            if hi <= lo:
                continue
            frames = self.frame_times(camera_id, lo, hi)
            if not len(frames):
                continue
            visible, front, back, dist, px, u, v = self.view(camera_id, runner, stint, frames)
            if runner.covered:
                visible &= np.array([not runner.is_covered(f) for f in frames])
            yield frames, visible, front, back, px

    def visits(self, camera_id: str, runner: Runner, t0: float = -math.inf, t1: float = math.inf):
        """(stint, t_enter, t_exit) for each pass of the runner along a camera's stretch,
        for passes that may overlap [t0, t1]."""
        cam = self._cameras[camera_id]
        length = self.config.length_m
        a, b = cam.covers_m
        for s in runner.stints:
            if s.t1 < t0 or s.t0 > t1:
                continue
            x_lo = float(s.x_at(max(t0, s.t0)))
            x_hi = float(s.x_at(min(t1, s.t1)))
            n0 = math.floor((x_lo - b) / length)
            n1 = math.ceil((x_hi - a) / length)
            for n in range(n0, n1 + 1):
                xa, xb = a + n * length, b + n * length
                lo, hi = max(xa, s.x[0]), min(xb, s.x[-1])
                if hi <= lo:
                    continue
                (ta, tb), _ = s.times_at_x(np.array([lo, hi]))
                yield s, float(ta), float(tb)
