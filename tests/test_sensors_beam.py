"""The beam: MockFactory pin edges become `beam` events in the station's log, stamped at the
edge; the pin factory is the one the config names, or a clear error."""

from __future__ import annotations

import time

import pytest
from sensorlog import EventLog

from station.config import Gate
from station.sensors.beam import BeamGate, SimulatedBeam
from station.sensors.pins import PinFactoryError, make_pin_factory


@pytest.fixture
def log(tmp_path):
    log = EventLog(tmp_path)
    yield log
    log.close()


def beams(events):
    return [(e["gate"], e["broken"]) for e in events if e["type"] == "beam"]


def test_edges_reach_the_log_in_order_with_the_edge_time(mock_factory, log):
    gate = Gate("finish", 0, pin=17)  # pull-up, active low: the usual NPN receiver
    beam = BeamGate(gate, log.worker, pin_factory=mock_factory)
    pin = mock_factory.pin(17)
    before = time.monotonic_ns()
    pin.drive_low()    # body in the beam
    middle = time.monotonic_ns()
    pin.drive_high()   # beam restored
    after = time.monotonic_ns()
    events = log.wait(lambda evs: len(beams(evs)) == 2, "two beam edges")
    assert beams(events) == [("finish", True), ("finish", False)]
    broken, restored = [e for e in events if e["type"] == "beam"]
    # Stamped at the edge (the callback), not when the worker got round to it.
    assert log.t_of(before) - 1e-4 <= broken["t"] <= log.t_of(middle) + 1e-4
    assert log.t_of(middle) - 1e-4 <= restored["t"] <= log.t_of(after) + 1e-4
    assert beams(log.on_disk()) == beams(events)
    beam.close()


def test_a_few_millisecond_glitch_is_kept_for_the_engine_to_judge(mock_factory, log):
    BeamGate(Gate("finish", 0, pin=17), log, pin_factory=mock_factory)
    pin = mock_factory.pin(17)
    for _ in range(5):  # rain drops: no debounce here, the engine filters by duration
        pin.drive_low()
        pin.drive_high()
    events = log.wait(lambda evs: len(beams(evs)) == 10, "ten edges")
    assert beams(events) == [("finish", True), ("finish", False)] * 5


@pytest.mark.parametrize("pull_up, active_state, broken_level", [
    (True, None, "low"),    # default: pull-up, receiver pulls low when broken
    (False, None, "high"),  # pull-down: high means broken
    (True, True, "high"),   # pull-up but a receiver that drives high when broken
    (False, False, "low"),
])
def test_pull_and_active_level_come_from_the_config(mock_factory, log, pull_up, active_state,
                                                    broken_level):
    gate = Gate("finish", 0, pin=22, pull_up=pull_up, active_state=active_state)
    beam = BeamGate(gate, log, pin_factory=mock_factory)
    pin = mock_factory.pin(22)
    assert pin.pull == ("up" if pull_up else "down")
    # Put the line at the "restored" level first (it may rest either way), then break it.
    (pin.drive_low if broken_level == "high" else pin.drive_high)()
    n0 = len(beams(log.events))
    (pin.drive_high if broken_level == "high" else pin.drive_low)()
    assert beam.broken
    events = log.wait(lambda evs: len(beams(evs)) > n0 and beams(evs)[-1] == ("finish", True),
                      "a broken edge")
    assert beams(events)[-1] == ("finish", True)


def test_a_beam_already_broken_at_start_up_is_reported(mock_factory, log):
    seen = []
    beam = BeamGate(Gate("finish", 0, pin=17), lambda *a, **kw: seen.append((a[0], kw)),
                    pin_factory=mock_factory)
    beam.report_state()
    assert seen == []  # a clear beam says nothing
    mock_factory.pin(17).drive_low()  # someone standing in it while the station starts
    seen.clear()
    beam.report_state()
    assert seen == [("beam", {"gate": "finish", "broken": True})]


def test_a_gate_without_a_pin_is_an_error_naming_it(mock_factory, log):
    with pytest.raises(ValueError, match="'cp1' has no beam pin"):
        BeamGate(Gate("cp1", 100), log, pin_factory=mock_factory)


def test_simulated_beam_plays_a_schedule_through_the_real_callbacks(mock_factory, log):
    gate = Gate("finish", 0, pin=17)
    BeamGate(gate, log, pin_factory=mock_factory)
    sim = SimulatedBeam.for_gate(gate, mock_factory)
    origin = time.monotonic_ns()
    edges = [(0.00, True), (0.05, False), (0.10, True), (0.30, False)]
    sim.play(iter(edges), lambda t_s: origin + int(t_s * 1e9))
    events = log.wait(lambda evs: len(beams(evs)) == 4, "four played edges")
    sim.stop()
    assert beams(events) == [("finish", b) for _, b in edges]
    ts = [e["t"] for e in events if e["type"] == "beam"]
    # Each edge happens no earlier than scheduled (and not seconds late).
    for (due_s, _), t in zip(edges, ts):
        assert log.t_of(origin) + due_s - 1e-3 <= t <= log.t_of(origin) + due_s + 1.0



def test_simulated_edges_played_late_keep_their_scheduled_times(mock_factory, log):
    # A schedule whose times are already past: the thread plays every edge at once, as a
    # thread woken late under load does. The BeamGate reading the simulation's clock still
    # stamps each edge at its own time, so a 3 ms torso break stays a 3 ms break.
    gate = Gate("finish", 0, pin=17)
    sim = SimulatedBeam.for_gate(gate, mock_factory)
    BeamGate(gate, log, pin_factory=mock_factory, clock_ns=sim.clock_ns)
    origin = time.monotonic_ns() - 5_000_000_000
    edges = [(1.000, True), (1.003, False), (1.500, True), (1.512, False)]
    sim.play(iter(edges), lambda t_s: origin + int(t_s * 1e9))
    events = log.wait(lambda evs: len(beams(evs)) == 4, "four played edges")
    sim.stop()
    assert beams(events) == [("finish", b) for _, b in edges]
    ts = [e["t"] for e in events if e["type"] == "beam"]
    assert ts == pytest.approx([log.t_of(origin) + t for t, _ in edges], abs=1e-6)
    # Outside a played edge (a pin driven by hand) the clock is the monotonic one.
    before = time.monotonic_ns()
    assert before <= sim.clock_ns() <= time.monotonic_ns()

def test_pin_factory_by_name_and_clear_errors():
    from gpiozero.pins.mock import MockFactory

    factory = make_pin_factory("mock")
    assert isinstance(factory, MockFactory)
    factory.close()
    with pytest.raises(PinFactoryError, match="unknown pin factory 'pigpio'"):
        make_pin_factory("pigpio")
    # This machine has neither lgpio nor RPi.GPIO nor a GPIO chip: never a silent fall-back.
    for name, hint in (("lgpio", "python3-lgpio"), ("rpigpio", "python3-rpi.gpio")):
        with pytest.raises(PinFactoryError) as info:
            make_pin_factory(name)
        message = str(info.value)
        assert f"hardware.pin_factory = {name!r}" in message
        assert hint in message or "GPIO chip" in message
