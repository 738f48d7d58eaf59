"""Runners' plans: how a person moves, as stints of constant-speed segments.

Helpers that scenarios combine: `run_laps` (laps at a pace with lap-to-lap and along-the-lap
variation, backward stretches), `follow` (a spotter or a rival a few tenths of a second
behind someone), `cut` (leave the track and come back), `random_body`.

Speed changes only at knots that keep a few metres away from every gate, so a torso always
crosses a beam at constant speed and T = s + 0.4 (e - s) holds exactly for a clean break.
"""

from __future__ import annotations

import math

import numpy as np

from station.config import Config
from station.sim.world import Body, Stint

GATE_CLEARANCE_M = 3.0


def random_body(rng: np.random.Generator, lateral_m: float | None = None) -> Body:
    return Body(
        torso_depth_m=float(rng.uniform(0.26, 0.34)),
        arm_swing_m=float(rng.uniform(0.12, 0.22)),
        arm_width_m=float(rng.uniform(0.055, 0.075)),
        lateral_m=float(rng.uniform(-0.35, 0.35) if lateral_m is None else lateral_m),
        tag_height_m=float(rng.uniform(0.2, 0.3)),
    )


def clear_of_gates(config: Config, lap_pos_m: float, step_m: float = 5.0) -> float:
    """A lap position near `lap_pos_m` at least GATE_CLEARANCE_M away from every gate."""
    length = config.length_m
    pos = lap_pos_m % length
    for _ in range(int(length / step_m)):
        if all(min(abs(pos - g.position_m) % length, length - abs(pos - g.position_m) % length)
               >= GATE_CLEARANCE_M for g in config.gates):
            return pos
        pos = (pos + step_m) % length
    raise ValueError("no position clear of the gates")


def _in_ranges(lap_pos: np.ndarray, ranges, length: float) -> np.ndarray:
    out = np.zeros(len(lap_pos), dtype=bool)
    for a, b in ranges:
        out |= ((lap_pos >= a) & (lap_pos < b)) | ((lap_pos + length >= a) & (lap_pos + length < b))
    return out


def run_laps(config: Config, rng: np.random.Generator, *, t0_s: float, x0_m: float, x1_m: float,
             speed_mps: float, backward: tuple[tuple[float, float], ...] = (),
             backward_factor: float = 0.72, lap_sd: float = 0.02, segment_sd: float = 0.03,
             backward_laps: set[int] | None = None) -> Stint:
    """Run from absolute position x0_m to x1_m starting at t0_s.

    `backward`: lap-position ranges (a, b) run backwards, b may exceed length_m to reach past
    the finish line (e.g. (310, 408)); `backward_laps` limits them to those lap numbers
    (lap n covers x in [(n-1) L, n L); 0 is the run-up before the first finish crossing).
    """
    length = config.length_m
    quarter = length / 4
    knots = {x0_m, x1_m}
    first = math.floor(x0_m / length) - 1
    last = math.ceil(x1_m / length) + 1
    for n in range(first, last + 1):
        for k in range(4):
            c = clear_of_gates(config, quarter * k + quarter / 2)
            knots.add(n * length + c)
        for a, b in backward:
            knots.add(n * length + a)
            knots.add(n * length + b)
    xs = np.array(sorted(x for x in knots if x0_m <= x <= x1_m))
    keep = np.concatenate([[True], np.diff(xs) > 0.5])
    xs = xs[keep]
    xs[-1] = x1_m
    mid = (xs[:-1] + xs[1:]) / 2
    back = _in_ranges(mid % length, backward, length)
    if backward_laps is not None:
        lap_no = np.floor(mid / length).astype(int) + 1
        back &= np.isin(lap_no, list(backward_laps))
    lap_idx = np.floor(mid / length).astype(int)
    lap_factor = {n: rng.normal(1.0, lap_sd) for n in set(lap_idx.tolist())}
    speed = np.array([speed_mps * lap_factor[n] for n in lap_idx])
    speed *= rng.normal(1.0, segment_sd, len(mid))
    speed = np.where(back, speed * backward_factor, speed)
    speed = np.clip(speed, 0.5, 12.0)
    ts = t0_s + np.concatenate([[0.0], np.cumsum(np.diff(xs) / speed)])
    return Stint(ts, xs, back)


def follow(leader: Stint, delays_s: np.ndarray | float, back: bool = False) -> Stint:
    """Someone running the leader's line `delays_s` seconds behind (one delay per knot, or
    one for all; negative is ahead). They face forwards unless `back`."""
    d = np.broadcast_to(np.asarray(delays_s, dtype=float), leader.t.shape)
    return Stint(leader.t + d, leader.x.copy(), np.full(len(leader.back), back))


def lap_delays(leader: Stint, length_m: float, rng: np.random.Generator, choices) -> np.ndarray:
    """One delay per knot, redrawn for each lap by `choices(rng)`. A delay holds from half a
    lap before a finish crossing to half a lap after it, so it is the gap at the line."""
    lap = np.floor(leader.x / length_m + 0.5).astype(int)
    per_lap = {n: float(choices(rng)) for n in set(lap.tolist())}
    return np.array([per_lap[n] for n in lap])


def cut(stint: Stint, x0_m: float, x1_m: float) -> Stint | None:
    """The part of a stint between absolute positions x0_m and x1_m (None if empty)."""
    lo, hi = max(x0_m, stint.x[0]), min(x1_m, stint.x[-1])
    if hi - lo < 0.5:
        return None
    (t_lo, t_hi), (s_lo, s_hi) = stint.times_at_x(np.array([lo, hi]))
    inner = (stint.x > lo) & (stint.x < hi)
    xs = np.concatenate([[lo], stint.x[inner], [hi]])
    ts = np.concatenate([[t_lo], stint.t[inner], [t_hi]])
    segs = np.concatenate([[s_lo], np.flatnonzero(inner)])
    keep = np.concatenate([[True], np.diff(xs) > 1e-6])
    xs, ts = xs[keep], ts[keep]
    back = stint.back[np.clip(segs, 0, len(stint.back) - 1)][: len(xs) - 1]
    return Stint(ts, xs, back)


def drop_laps(stint: Stint, length_m: float, leave_at_m: float, laps: list[int]) -> list[Stint]:
    """Leave the track at lap position `leave_at_m` before each finish crossing n*L in `laps`
    and come back on at the same spot a lap later: the crossing of x = n*L is missed."""
    pieces = [stint]
    for n in sorted(laps):
        x_leave = (n - 1) * length_m + leave_at_m
        x_back = x_leave + length_m
        out = []
        for p in pieces:
            for part in (cut(p, -math.inf, x_leave), cut(p, x_back, math.inf)):
                if part is not None:
                    out.append(part)
        pieces = out
    return pieces
