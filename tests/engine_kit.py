"""Hand-built events for the engine's unit tests: a runner crossing a beam (limbs and torso,
timed so the true torso crossing is known), tag reads as a camera at the gate would make
them, glitches and strays. Small and explicit on purpose: each test states its world.
"""

from __future__ import annotations

import random

from station.config import loads_config
from station.engine import Engine

BASE_TOML = """
[track]
length_m = {length}

[[gates]]
id = "finish"
position_m = 0
{extra}
"""

ONCOMING = """
[[cameras]]
id = "finish-cam"
gate = "finish"
covers_m = [{a}, {length}]
looks = "oncoming"
"""

DEPARTING = """
[[cameras]]
id = "finish-back"
gate = "finish"
covers_m = [0, 30]
looks = "departing"
"""


def config(length: float = 400, oncoming: bool = True, departing: bool = False,
           extra: str = ""):
    parts = []
    if oncoming:
        parts.append(ONCOMING.format(a=length - 30, length=length))
    if departing:
        parts.append(DEPARTING)
    parts.append(extra)
    return loads_config(BASE_TOML.format(length=length, extra="\n".join(parts)))


def beam(t: float, broken: bool, gate: str = "finish") -> dict:
    return {"t": round(t, 4), "type": "beam", "gate": gate, "broken": broken}


def brk(start: float, end: float, gate: str = "finish") -> list[dict]:
    return [beam(start, True, gate), beam(end, False, gate)]


def crossing(t: float, torso_s: float = 0.08, gate: str = "finish", limbs: bool = True,
             overlap_s: float = 0.0) -> list[dict]:
    """Beam edges of one runner whose torso crosses at `t` (a clean torso break is
    [t - 0.4 D, t + 0.6 D]). `overlap_s` > 0: a limb merges into the torso break's start."""
    s, e = t - 0.4 * torso_s, t + 0.6 * torso_s
    evs = []
    if limbs:
        evs += brk(s - 0.07, s - 0.05, gate)          # a hand, 20 ms
        evs += brk(e + 0.06, e + 0.085, gate)         # the trailing foot
    evs += brk(s - overlap_s, e, gate)
    return evs


def tag(t: float, tag_id: int, px: float | None, camera: str = "finish-cam") -> dict:
    ev = {"t": round(t, 4), "type": "tag", "camera": camera, "tag": tag_id}
    if px is not None:
        ev["px"] = round(px, 1)
    return ev


def reads(bib: int, t_cross: float, camera: str = "finish-cam", oncoming: bool = True,
          backward: bool = False, speed_mps: float = 4.0, stretch_m: float = 30.0,
          period_s: float = 0.1, px_k: float = 400.0, phase_s: float = 0.0,
          sides: str | None = None) -> list[dict]:
    """Reads of `bib` by a camera standing at the gate line, as the runner comes towards it
    (oncoming: before `t_cross`) or goes away (departing: after). px = px_k / distance;
    tags are lost closer than px 230. `sides` forces "front"/"back" (else from facing)."""
    if sides is None:
        shows_front = (not backward) if oncoming else backward
        sides = "front" if shows_front else "back"
    tag_id = 2 * bib + (0 if sides == "front" else 1)
    out = []
    n = int(stretch_m / speed_mps / period_s) + 2
    for i in range(n):
        dt = phase_s + i * period_s
        d = speed_mps * dt
        if d <= 0 or d > stretch_m:
            continue
        px = px_k / d
        if px > 230:
            continue
        t = t_cross - dt if oncoming else t_cross + dt
        out.append(tag(t, tag_id, px, camera))
    return sorted(out, key=lambda e: e["t"])


def start() -> dict:
    return {"t": 0.0, "type": "start", "wall": "2026-01-01T00:00:00Z", "station": "test"}


def in_order(events: list[dict]) -> list[dict]:
    return sorted(events, key=lambda e: e["t"])


def jumbled(events: list[dict], max_s: float = 1.5, seed: int = 1) -> list[dict]:
    """Arrival order of several sources: each line late by up to `max_s`."""
    rng = random.Random(seed)
    keyed = [(e["t"] + rng.uniform(0, max_s), i, e) for i, e in enumerate(events)]
    return [e for _, _, e in sorted(keyed)]


def replay(events: list[dict], cfg, reorder_s: float = 2.0):
    eng = Engine(cfg, reorder_s=reorder_s)
    for ev in events:
        eng.feed(ev)
    eng.finish()
    return eng.results()


def lap_times(results, bib: int) -> list[float]:
    return [lap.lap_s for lap in results.laps if lap.bib == bib]
