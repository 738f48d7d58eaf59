"""Benchmark: beam edge -> event latency through the real BeamGate callbacks.

    python bench/beam_latency.py [--edges 20000]

A MockFactory pin is driven low/high; for each edge we measure
  - stamp delay: the callback's time.monotonic_ns() stamp minus the moment just before the edge;
  - edge-to-event: from just before the edge to the event being in the sink (a recording sink,
    and the real worker's queue: `Worker.submit`).
On a Pi the lgpio driver adds its own interrupt-to-callback delay (tens of microseconds);
this measures our share. Target: edge-to-event < 1 ms at p99.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from detect_bench import machine  # noqa: E402
from gpiozero.pins.mock import MockFactory  # noqa: E402

from station.config import Gate, loads_config  # noqa: E402
from station.sensors.beam import BeamGate  # noqa: E402


class TimingSink:
    """Records, per event, its stamp and when it arrived; optionally passes it on."""

    def __init__(self, forward=None):
        self.forward = forward
        self.rows: list[tuple[int, int]] = []

    def submit(self, type, t_ns, **fields):
        if self.forward is not None:
            self.forward(type, t_ns, **fields)
        self.rows.append((t_ns, time.monotonic_ns()))


def measure(sink: TimingSink, edges: int) -> tuple[list[float], list[float]]:
    factory = MockFactory()
    beam = BeamGate(Gate("finish", 0, pin=17), sink, pin_factory=factory)
    pin = factory.pin(17)
    stamp_us, event_us = [], []
    for i in range(edges):
        before = time.monotonic_ns()
        (pin.drive_low if i % 2 == 0 else pin.drive_high)()
        t_ns, arrived = sink.rows[-1]
        stamp_us.append((t_ns - before) / 1e3)
        event_us.append((arrived - before) / 1e3)
    beam.close()
    factory.close()
    return stamp_us, event_us


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def report(name: str, stamp_us: list[float], event_us: list[float]) -> None:
    print(f"{name}: edge-to-event p50 {pct(event_us, 50):.1f} us, p99 {pct(event_us, 99):.1f} us, "
          f"max {max(event_us):.0f} us; stamp delay p50 {pct(stamp_us, 50):.1f} us, "
          f"p99 {pct(stamp_us, 99):.1f} us ({len(event_us)} edges)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edges", type=int, default=20000)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    report("recording sink", *measure(TimingSink(), args.edges))

    from station.store import Store
    from station.worker import Worker

    config = loads_config('[track]\nlength_m = 400\n[[gates]]\nid = "finish"\nposition_m = 0\npin = 17\n')
    with tempfile.TemporaryDirectory() as folder:
        store = Store(folder)
        worker = Worker(config, store).start()
        try:
            report("worker.submit", *measure(TimingSink(worker.submit), args.edges))
        finally:
            worker.stop(60)
            store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
