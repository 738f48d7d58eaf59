"""A gate's break-beam: gpiozero edge callbacks turned into `beam` events.

The receiver's output is a `DigitalInputDevice` (edge callbacks; `LineSensor` would poll and
smooth, adding latency and eating short breaks the engine wants to see and judge itself).
The callbacks only stamp `time.monotonic_ns()` and hand the edge to the sink (the worker's
`submit`, which never blocks): glitches, merging and blocked beams are the engine's job.

`SimulatedBeam` drives a MockFactory pin from a schedule of edges, so the simulation runs
these same callbacks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from gpiozero import DigitalInputDevice


def submitter(sink) -> Callable:
    """`sink.submit` for a sink object (the worker), or the sink itself if it is a function."""
    return sink.submit if hasattr(sink, "submit") else sink


class BeamGate:
    """The beam of one gate (`config.Gate`): `submit("beam", t_ns, gate=..., broken=...)`.
    `sink` is the worker (anything with `submit`) or its `submit` function."""

    def __init__(self, gate, sink, *, pin_factory, clock_ns: Callable[[], int] = time.monotonic_ns):
        if gate.pin is None:
            raise ValueError(f"gate {gate.id!r} has no beam pin (gates[].pin)")
        self.gate = self.gate_id = gate.id
        self._submit = submitter(sink)
        self._clock_ns = clock_ns
        # gpiozero ties active_state to pull_up (pull-up means active-low) and refuses both.
        # The config may name both; when it asks for the other level, we float the pin for
        # gpiozero and then set the pull ourselves.
        default_active = not gate.pull_up
        if gate.active_state is None or gate.active_state == default_active:
            self.device = DigitalInputDevice(gate.pin, pull_up=gate.pull_up, pin_factory=pin_factory)
        else:
            self.device = DigitalInputDevice(gate.pin, pull_up=None, active_state=gate.active_state,
                                             pin_factory=pin_factory)
            self.device.pin.pull = "up" if gate.pull_up else "down"
        self.device.when_activated = self._broken
        self.device.when_deactivated = self._restored

    # The two hot callbacks: stamp, hand over, nothing else.
    def _broken(self) -> None:
        self._submit("beam", self._clock_ns(), gate=self.gate_id, broken=True)

    def _restored(self) -> None:
        self._submit("beam", self._clock_ns(), gate=self.gate_id, broken=False)

    @property
    def broken(self) -> bool:
        return bool(self.device.is_active)

    def report_state(self) -> None:
        """At start-up: a beam that is already broken (someone in it, a receiver knocked off
        line) is an edge the engine must see, or it would wait for one forever."""
        if self.broken:
            self._broken()

    def close(self) -> None:
        self.device.when_activated = None
        self.device.when_deactivated = None
        self.device.close()


Beam = BeamGate  # the name station/launch.py uses


class SimulatedBeam:
    """Plays beam edges onto a MockFactory pin, as the receiver would.

    `edges` are `(t_s, broken)` on the scene clock; `to_monotonic_ns(t_s)` says when, on the
    monotonic clock, each must happen. A broken beam drives the pin to the gate's active
    level; the BeamGate on that pin then stamps and submits exactly as on a Pi.

    Give that BeamGate `clock_ns=sim.clock_ns`: while an edge is being played, it reads the
    edge's scheduled time rather than the wake-up time. A thread that wakes a few ms late
    (CPU load, the GIL) would otherwise stamp both edges of a short break late and together,
    and at `--speed` 20 a torso's 3 ms break would look like a rain drop. A real receiver's
    edges happen when they happen; the simulated one's happen when the world says.
    """

    def __init__(self, pin, *, active_high: bool = False):
        self.pin = pin
        self.active_high = active_high
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._due_ns: int | None = None  # the edge being played (read by clock_ns)
        self.played = 0

    @classmethod
    def for_gate(cls, gate, factory) -> "SimulatedBeam":
        active = (not gate.pull_up) if gate.active_state is None else gate.active_state
        return cls(factory.pin(gate.pin), active_high=bool(active))

    def set_broken(self, broken: bool) -> None:
        if broken == self.active_high:
            self.pin.drive_high()
        else:
            self.pin.drive_low()
        self.played += 1

    def play(self, edges: Iterable[tuple[float, bool]],
             to_monotonic_ns: Callable[[float], int]) -> threading.Thread:
        """Play `edges` (sorted, may be a lazy iterator) in a background thread."""

        def run() -> None:
            for t_s, broken in edges:
                due_ns = to_monotonic_ns(t_s)
                wait_s = (due_ns - time.monotonic_ns()) / 1e9
                if wait_s > 0 and self._stop.wait(wait_s):
                    return
                if self._stop.is_set():
                    return
                self._due_ns = due_ns
                try:
                    self.set_broken(broken)  # the MockPin calls the BeamGate right here
                finally:
                    self._due_ns = None

        self._stop.clear()
        self._thread = threading.Thread(target=run, name="simulated-beam", daemon=True)
        self._thread.start()
        return self._thread

    def clock_ns(self) -> int:
        """The BeamGate's clock: the scheduled time of the edge being played (in the playing
        thread), else the monotonic clock (a pin driven by hand, the start-up state)."""
        due_ns = self._due_ns
        if due_ns is not None and threading.current_thread() is self._thread:
            return due_ns
        return time.monotonic_ns()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
