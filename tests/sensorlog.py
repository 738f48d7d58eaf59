"""Test helper for the sensor tests: the real worker and a real SQLite store in tmp_path,
with a way to wait (condition + deadline, never a sleep) until events reached the log."""

from __future__ import annotations

import threading
import time

import pytest

from station.config import loads_config
from station.store import Store
from station.worker import Worker

DEADLINE_S = 15.0

CONFIG = """
[track]
length_m = 400

[[gates]]
id = "finish"
position_m = 0
pin = 17

[[cameras]]
id = "finish-cam"
gate = "finish"
covers_m = [370, 400]
looks = "oncoming"
width = 640
height = 360
"""


class EventLog:
    """A running Worker on a Store in `folder`; `wait(pred)` returns the stored events once
    `pred(events)` holds, or fails the test at the deadline."""

    def __init__(self, folder, config_text: str = CONFIG):
        self.config = loads_config(config_text)
        self.store = Store(folder)
        self._cond = threading.Condition()
        self._events: list[dict] = []
        self.worker = Worker(self.config, self.store, on_stored=self._stored).start()
        self.submit = self.worker.submit

    def _stored(self, evs: list[dict]) -> None:
        with self._cond:
            self._events.extend(evs)
            self._cond.notify_all()

    @property
    def events(self) -> list[dict]:
        with self._cond:
            return list(self._events)

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]

    def wait(self, predicate, what: str, timeout_s: float = DEADLINE_S) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self._events):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"timed out waiting for {what}; log: {self._events[-10:]}")
                self._cond.wait(left)
            return list(self._events)

    def on_disk(self) -> list[dict]:
        """What the store holds for this session (what an export would give)."""
        return list(self.store.events(self.worker.session.id))

    def t_of(self, t_ns: int) -> float:
        return self.worker.session.t_of(t_ns)

    def close(self) -> None:
        self.worker.stop()
        self.store.close()


def faults(events, kind: str) -> list[dict]:
    return [e for e in events if e["type"] == "fault" and e["kind"] == kind]


def poll_until(predicate, what: str, timeout_s: float = DEADLINE_S) -> None:
    """For hardware state with no change notification (a mock output pin): check every
    10 ms until it holds, within the deadline."""
    deadline = time.monotonic() + timeout_s
    tick = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        tick.wait(0.01)
