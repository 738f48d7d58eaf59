"""The station's sensors in the simulated world: the raw event log (SPEC §2) a real station
would record, made from the world's physics.

- Beam: every edge of each gate's beam signal (torso, arms, blockers, rain drops).
- Camera: at the camera's frame rate, each tag in view is read with a probability that falls
  for small tags (far away), its `px` a little noisy, `t` the frame's capture time plus a
  millisecond or two of stamping jitter; now and then a stray read of a random id.
- Arrival order: tag reads reach the station after detection latency, remote gates' beam
  edges after network latency; lines are written in arrival order (at most 2 s late), as
  the station receives them.

All randomness comes from the seed and a fixed chunking of time, so a world and a seed
always give the same log. `iter_events` streams (memory bounded by one chunk).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from station.sim.world import World

CHUNK_S = 30.0
WALL_START = "2026-11-21T09:00:00Z"


@dataclass(frozen=True)
class SensorSpec:
    """Noise knobs of the simulated sensors (calibrated on ../shared/examples)."""

    stray_per_s: float = 1 / 150        # stray reads per camera
    read_best: float = 0.97             # read probability of a large, sharp tag
    read_px50: float = 15.5             # px where reads succeed half as often as the best
    read_px_scale: float = 4.0
    px_noise: float = 0.05              # relative sd of the measured tag size
    stamp_jitter_s: float = 0.002       # spread of reads' `t` around the frame's capture
    tag_latency_s: float = 0.08         # mean detection latency (exponential, + 30 ms)
    tag_hiccup_p: float = 0.004         # a frame held up by a slow detection (0.5-1.5 s)
    remote_latency_s: tuple[float, float] = (0.05, 0.6)   # checkpoint gates over MQTT
    # Knobs for what other stations and other simulators may do (robustness sweeps):
    px_p: float = 1.0                   # chance a read carries `px` (SPEC: it is optional)
    read_factor: float = 1.0            # scales every read probability (a poorer detector)
    local_latency_s: tuple[float, float] = (0.0, 0.0)   # the finish gate's own beam edges
    max_latency_s: float = 1.9          # no line arrives later than this (SPEC: 2 s)


def read_probability(px: np.ndarray, spec: SensorSpec) -> np.ndarray:
    # Big, close tags read best; the ceiling below that is motion blur and odd angles.
    best = spec.read_best - 0.1 * (1 - np.minimum(px, 200) / 200)
    return best / (1 + np.exp(-(px - spec.read_px50) / spec.read_px_scale))


def _chunk_rng(seed: int, kind: int, chunk: int, idx: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, kind, chunk, idx])


def tag_reads(world: World, spec: SensorSpec, seed: int, camera_id: str, t0: float, t1: float,
              chunk: int) -> list[dict]:
    """The camera's tag events with capture time in [t0, t1)."""
    cam_idx = [c.id for c in world.config.cameras].index(camera_id)
    rng = _chunk_rng(seed, 3, chunk, cam_idx)
    out = []
    for runner in world.runners:
        for frames, visible, front, _, px in world.sightings(camera_id, runner, t0, t1):
            p = read_probability(px, spec) * (runner.read_factor * spec.read_factor)
            read = visible & (rng.random(len(frames)) < p)
            if not read.any():
                continue
            n = int(read.sum())
            ts = frames[read] + rng.uniform(0, spec.stamp_jitter_s, n)
            pxs = px[read] * rng.normal(1.0, spec.px_noise, n)
            tags = 2 * runner.bib + np.where(front[read], 0, 1)
            keep_px = (rng.random(n) < spec.px_p).tolist() if spec.px_p < 1 else [True] * n
            for t, tag, size, with_px in zip(ts.tolist(), tags.tolist(), pxs.tolist(), keep_px):
                ev = {"t": round(t, 4), "type": "tag", "camera": camera_id, "tag": tag}
                if with_px:
                    ev["px"] = round(size, 1)
                out.append(ev)
    n = rng.poisson(spec.stray_per_s * (t1 - t0))
    for t, tag, size in zip(rng.uniform(t0, t1, n).tolist(), rng.integers(2, 586, n).tolist(),
                            rng.uniform(15, 40, n).tolist()):
        ev = {"t": round(t, 4), "type": "tag", "camera": camera_id, "tag": tag}
        if spec.px_p >= 1 or rng.random() < spec.px_p:
            ev["px"] = round(size, 1)
        out.append(ev)
    return out


def chunk_events(world: World, spec: SensorSpec, seed: int, chunk: int) -> list[tuple[float, dict]]:
    """(arrival_s, event) for every event with `t` in chunk `chunk`."""
    t0, t1 = chunk * CHUNK_S, (chunk + 1) * CHUNK_S
    rng = _chunk_rng(seed, 5, chunk)
    out: list[tuple[float, dict]] = []
    for gate in world.config.gates:
        latency = spec.local_latency_s if gate.is_finish else spec.remote_latency_s
        arrival = -math.inf
        for t, broken in world.beam_edges(gate.id, t0, t1):
            t = round(t, 4)
            late = rng.uniform(*latency) if latency[1] > 0 else 0.0
            # A remote gate's messages arrive late but in the order it sent them.
            arrival = max(arrival, t + late)
            out.append((arrival, {"t": t, "type": "beam", "gate": gate.id, "broken": broken}))
    for cam in world.config.cameras:
        reads = tag_reads(world, spec, seed, cam.id, t0, t1, chunk)
        if not reads:
            continue
        # One latency per frame: the detector hands over a frame's reads together.
        frame_of = [round(ev["t"] * world.fps[cam.id]) for ev in reads]
        frames = sorted(set(frame_of))
        late = 0.03 + rng.exponential(spec.tag_latency_s, len(frames))
        hiccup = rng.random(len(frames)) < spec.tag_hiccup_p
        late = np.where(hiccup, rng.uniform(0.5, 1.5, len(frames)), late)
        lat_of = dict(zip(frames, np.minimum(late, spec.max_latency_s).tolist()))
        for ev, frame in zip(reads, frame_of):
            out.append((ev["t"] + lat_of[frame], ev))
    for t, kind, bib in world.checkins:
        if t0 <= t < t1:
            out.append((t, {"t": round(t, 4), "type": kind, "bib": bib}))
    return out


def iter_events(world: World, spec: SensorSpec = SensorSpec(), seed: int = 0,
                t0_s: float = 0.0, t1_s: float | None = None,
                station_id: str | None = None) -> Iterator[dict]:
    """The raw event log, line by line in arrival order, starting with the `start` line
    (when t0_s is 0). Memory holds one chunk of events, never the log."""
    t1_s = world.end_s if t1_s is None else t1_s
    if t0_s <= 0:
        yield {"t": 0.0, "type": "start", "wall": WALL_START,
               "station": station_id or world.config.station_id}
    pending: list[tuple[float, int, dict]] = []
    seq = 0
    chunk = math.floor(t0_s / CHUNK_S)
    while chunk * CHUNK_S < t1_s:
        for arrival, ev in chunk_events(world, spec, seed, chunk):
            if t0_s <= ev["t"] < t1_s:
                seq += 1
                heapq.heappush(pending, (arrival, seq, ev))
        chunk += 1
        # Later chunks hold only events with t >= their start, arriving no earlier.
        horizon = chunk * CHUNK_S
        while pending and pending[0][0] < horizon:
            yield heapq.heappop(pending)[2]
    while pending:
        yield heapq.heappop(pending)[2]


def write_events(path: str | Path, events) -> int:
    """Write events as JSON Lines; returns the number of lines."""
    n = 0
    with open(path, "wb") as fh:
        for ev in events:
            fh.write(orjson.dumps(ev))
            fh.write(b"\n")
            n += 1
    return n
