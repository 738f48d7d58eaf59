"""The buzzer: distinct patterns on gpiozero Buzzer / TonalBuzzer (MockFactory pins), played
in the background; a failing buzzer becomes a `buzzer_failed` fault in the log, never an
exception in the caller."""

from __future__ import annotations

import pytest
from gpiozero.pins.mock import MockPin, MockPWMPin
from sensorlog import EventLog, faults, poll_until

from station.sensors.buzzer import StationBuzzer


@pytest.fixture
def log(tmp_path):
    log = EventLog(tmp_path)
    yield log
    log.close()


@pytest.fixture
def buzzers():
    made = []
    yield made
    for b in made:
        b.close()


def pulses(pin) -> list[float]:
    """Lengths (s) of the on-pulses a MockPin went through, from its recorded states."""
    out, on_for = [], None
    for delta, state in pin.states[1:]:
        if state and on_for is None:
            on_for = 0.0
        elif not state and on_for is not None:
            out.append(on_for + delta)
            on_for = None
    return out


def test_self_test_chirp_and_alarm_are_distinct_and_do_not_block(mock_factory, log, buzzers):
    b = StationBuzzer(5, log, pin_factory=mock_factory)
    buzzers.append(b)
    pin = mock_factory.pin(5)

    b.self_test()
    assert b.busy  # returned while the pattern still plays
    poll_until(lambda: not b.busy and not pin.state, "the self-test to end")
    assert len(pulses(pin)) == 3

    pin.clear_states()
    b.chirp()
    poll_until(lambda: not b.busy and not pin.state, "the chirp to end")
    chirp = pulses(pin)
    assert len(chirp) == 1

    pin.clear_states()
    b.alarm_on()
    poll_until(lambda: len(pulses(pin)) >= 3, "three alarm cycles")
    assert b.busy  # still going: the alarm repeats until stopped
    b.alarm_off()
    poll_until(lambda: not b.busy and not pin.state, "the alarm to stop")
    alarm = pulses(pin)
    # The alarm's tones are long, the chirp is a blip: a coach tells them apart by ear.
    assert min(alarm) > 2 * chirp[0]
    assert faults(log.events, "buzzer_failed") == []


def test_a_chirp_during_an_alarm_returns_to_the_alarm(mock_factory, buzzers):
    b = StationBuzzer(5, pin_factory=mock_factory)
    buzzers.append(b)
    pin = mock_factory.pin(5)
    b.alarm_on()
    poll_until(lambda: pin.state, "the alarm to sound")
    b.chirp()
    pin.clear_states()
    poll_until(lambda: len(pulses(pin)) >= 3, "the alarm to carry on after the chirp")
    assert b.alarm and b.busy
    b.alarm_off()
    poll_until(lambda: not b.busy and not pin.state, "silence")


class RecordingPWMPin(MockPWMPin):
    """A PWM pin that remembers every frequency it was set to (the tones played)."""

    def __init__(self, factory, info):
        super().__init__(factory, info)
        self.tones: list[float] = []

    def _set_frequency(self, value):
        super()._set_frequency(value)
        if value is not None:
            self.tones.append(round(value))


def test_tonal_buzzer_plays_two_tone_alarm_and_rising_self_test(mock_factory, buzzers):
    mock_factory.pin_class = RecordingPWMPin
    b = StationBuzzer(12, tonal=True, pin_factory=mock_factory)
    buzzers.append(b)
    pin = mock_factory.pin(12)
    pin.tones.clear()  # gpiozero's own set-up frequency
    b.self_test()
    poll_until(lambda: not b.busy, "the self-test to end")
    assert pin.tones[:3] == [440, 587, 784]
    assert pin.frequency is None  # silent afterwards
    pin.tones.clear()
    b.alarm_on()
    poll_until(lambda: len(pin.tones) >= 4, "two alarm cycles")
    b.alarm_off()
    poll_until(lambda: not b.busy, "silence")
    assert pin.tones[:4] == [880, 660, 880, 660]


class BrokenPin(MockPin):
    """A pin whose driver fails while `broken` (a pulled wire, a dead GPIO chip)."""

    broken = True

    def _set_state(self, value):
        if BrokenPin.broken:
            raise OSError(5, "Input/output error")
        super()._set_state(value)


def test_a_failing_buzzer_is_a_fault_in_the_log_and_never_raises(mock_factory, log, buzzers):
    BrokenPin.broken = False
    mock_factory.pin(6, pin_class=BrokenPin)
    b = StationBuzzer(6, log, pin_factory=mock_factory)
    buzzers.append(b)
    BrokenPin.broken = True  # the wire comes loose while the station runs
    b.alarm_on()  # must not raise
    events = log.wait(lambda evs: faults(evs, "buzzer_failed"), "a buzzer fault")
    fault = faults(events, "buzzer_failed")[0]
    assert fault["active"] is True and fault["source"] == "buzzer"
    assert "Input/output error" in fault["message"]
    assert b.failed
    BrokenPin.broken = False  # the wire is back
    b.alarm_off()
    b.chirp()
    events = log.wait(lambda evs: len(faults(evs, "buzzer_failed")) == 2, "the fault to close")
    assert faults(events, "buzzer_failed")[1]["active"] is False
    assert b.failed is None


def test_a_buzzer_pin_that_cannot_be_opened_is_a_fault_not_a_crash(mock_factory, log, buzzers):
    from gpiozero import LED

    led = LED(7, pin_factory=mock_factory)  # someone else holds GPIO7
    b = StationBuzzer(7, log, pin_factory=mock_factory)
    buzzers.append(b)
    b.alarm_on()
    b.alarm_off()
    events = log.wait(lambda evs: faults(evs, "buzzer_failed"), "a buzzer fault")
    assert "GPIO 7" in faults(events, "buzzer_failed")[0]["message"]
    led.close()  # the pin is free again: the next pattern opens the buzzer and plays
    b.chirp()
    events = log.wait(lambda evs: len(faults(evs, "buzzer_failed")) == 2, "the fault to close")
    assert faults(events, "buzzer_failed")[1]["active"] is False
    poll_until(lambda: not b.busy, "the chirp")
    assert b.device is not None
