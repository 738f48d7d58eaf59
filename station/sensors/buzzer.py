"""The buzzer: distinct sound patterns, played in the background, never failing loudly.

Patterns (a coach learns them in a minute):
- alarm: a fast, insistent two-tone "bee-baa" repeating until `alarm_off()` (spotter alarm);
- self_test: three rising beeps at start-up, so a coach hears the buzzer works;
- chirp: one short high blip when a coach silences an alarm.

gpiozero's `Buzzer` (on/off) or `TonalBuzzer` (PWM tones) does the sound; one thread plays
the current pattern, so the worker's calls (`alarm_on`, `alarm_off`, `chirp`) return at once.
A buzzer that raises (pin taken, driver gone) is reported as a `buzzer_failed` fault through
the sink, and closed again when it works; it never raises into the worker.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)

# A pattern is ((tone_hz or None for silence, seconds), ...). An on/off Buzzer plays any
# tone as "on". Tones stay inside TonalBuzzer's default range (A3..A5, 220-880 Hz).
ALARM = ((880.0, 0.18), (660.0, 0.18), (None, 0.08))
SELF_TEST = ((440.0, 0.08), (None, 0.06), (587.0, 0.08), (None, 0.06), (784.0, 0.12))
CHIRP = ((880.0, 0.05),)


class StationBuzzer:
    """Patterns on a gpiozero buzzer.

    `StationBuzzer(17, sink, tonal=False, pin_factory=f)` opens a Buzzer (or TonalBuzzer) on
    GPIO17; a ready gpiozero device may be passed instead of the pin, and None is a silent
    buzzer. `sink` (the worker, or its `submit`) receives `buzzer_failed` faults.
    """

    def __init__(self, pin=None, sink=None, *, tonal: bool = False, pin_factory=None,
                 source: str = "buzzer"):
        from station.sensors.beam import submitter

        self.submit = submitter(sink) if sink is not None else None
        self.source = source
        self.failed: str | None = None      # message of the open fault, if any
        self.played: list[str] = []          # names of patterns started, for the dashboard/tests
        self.device = None
        self._pin, self._tonal, self._factory = None, tonal, pin_factory
        if isinstance(pin, (int, str)):
            self._pin = pin
            self._open()
        else:
            self.device = pin
        self.tonal = tonal or hasattr(self.device, "play")
        self._lock = threading.Lock()
        self._pattern: tuple[str, tuple, bool] | None = None  # name, steps, repeat
        self._alarm = False
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="buzzer", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, config, sink=None, *, pin_factory) -> "StationBuzzer":
        """The configured buzzer (`hardware.buzzer_pin`, `buzzer_tonal`), or a silent one."""
        return cls(config.buzzer_pin, sink, tonal=config.buzzer_tonal, pin_factory=pin_factory)

    def _open(self) -> bool:
        try:
            if self._tonal:
                from gpiozero import TonalBuzzer
                self.device = TonalBuzzer(self._pin, pin_factory=self._factory)
            else:
                from gpiozero import Buzzer
                self.device = Buzzer(self._pin, pin_factory=self._factory)
            return True
        except Exception as exc:  # noqa: BLE001 - any driver error means no buzzer (yet)
            self._fault(f"cannot open the buzzer on GPIO {self._pin}: {exc!r}")
            return False

    # -- what the worker calls (never blocks, never raises) -----------------------------
    def alarm_on(self) -> None:
        self._alarm = True
        self._start("alarm", ALARM, repeat=True)

    def alarm_off(self) -> None:
        self._alarm = False
        with self._lock:
            if self._pattern and self._pattern[0] == "alarm":
                self._pattern = None
        self._wake.set()

    def chirp(self) -> None:
        self._start("chirp", CHIRP, repeat=False)

    def self_test(self) -> None:
        self._start("self_test", SELF_TEST, repeat=False)

    @property
    def alarm(self) -> bool:
        return self._alarm

    @property
    def busy(self) -> bool:
        """A pattern is playing (or about to)."""
        with self._lock:
            return self._pattern is not None

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(2.0)
        if self.device is not None:
            try:
                self.device.close()
            except Exception:  # noqa: BLE001
                pass

    # -- the player thread ---------------------------------------------------------------
    def _start(self, name: str, steps: tuple, repeat: bool) -> None:
        with self._lock:
            self._pattern = (name, steps, repeat)
            self.played.append(name)
        self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                current = self._pattern
            if current is None:
                self._sound(None)
                continue
            name, steps, repeat = current
            interrupted = False
            while not interrupted and not self._closed:
                for tone, seconds in steps:
                    self._sound(tone)
                    # A new pattern (or alarm_off) interrupts at once.
                    if self._wake.wait(seconds):
                        interrupted = True
                        break
                if not repeat:
                    break
            self._sound(None)
            with self._lock:
                if not interrupted and self._pattern is current:
                    # A one-shot (chirp) during an alarm: the alarm resumes afterwards.
                    self._pattern = ("alarm", ALARM, True) if self._alarm else None
                    if self._alarm:
                        self._wake.set()

    def _sound(self, tone: float | None) -> None:
        if self.device is None and (self._pin is None or not self._open()):
            return
        try:
            if tone is None:
                self.device.stop() if self.tonal else self.device.off()
            elif self.tonal:
                self.device.play(tone)
            else:
                self.device.on()
        except Exception as exc:  # noqa: BLE001 - reported as a fault, never raised
            self._fault(f"{type(exc).__name__}: {exc}")
            return
        if self.failed is not None:
            self.failed = None
            self._submit(active=False, message="buzzer works again")

    def _fault(self, message: str) -> None:
        if self.failed is None:
            log.warning("buzzer failed: %s", message)
            self.failed = message
            self._submit(active=True, message=message)

    def _submit(self, *, active: bool, message: str) -> None:
        if self.submit is not None:
            self.submit("fault", time.monotonic_ns(), kind="buzzer_failed",
                             source=self.source, active=active, message=message)
