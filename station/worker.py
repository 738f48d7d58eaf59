"""The worker: the one thread that owns the station's state.

Sensors and web requests hand it events (`submit`, `submit_now`: thread-safe, never block).
For each batch it turns monotonic stamps into session seconds, stores the events durably
(one transaction per batch), feeds them to the engine, and only then publishes an immutable
`LiveState` for the dashboard, so nothing is shown that a power cut could take back. Every
`TICK_S` it advances the engine's clock (timeouts, alarms), drives the buzzer from the active
alarms and tells the photo keeper about new passes.

It never dies: a store that is full or locked is a fault while the events wait in memory and
are retried; an event the engine chokes on is logged and becomes a fault, and stays in the
store. `python -m station.worker` runs it alone, fed JSON lines on stdin, acknowledging each
event once it is on disk (the durability test kills it at random).
"""

from __future__ import annotations

import argparse
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from station.config import Config
from station.events import check_event, dumps
from station.store import Session, Store, StoreError

log = logging.getLogger(__name__)

TICK_S = 0.05
# The station's own sensors are nearly in order: beam edges are queued at the callback, and a
# camera read is stamped at exposure and queued after detection (~0.1-0.2 s on a Pi 4). A
# later event makes the engine rebuild. Together with the engine's 0.25 s merge gap this
# window sets how soon a pass shows (bench/pass_latency.py): keep the sum under a second.
REORDER_S = 0.4
# A camera that delivers later than that (a loaded Pi) widens the window up to SPEC's bound
# on out-of-order lines, so a slow camera costs a rebuild or two, not one per frame.
MAX_REORDER_S = 2.0
LATE_MARGIN_S = 0.1
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0
# Events held while the store cannot take them; past this the newest camera reads are dropped
# (and counted) so a long disk-full cannot exhaust memory. Beam edges and people's actions
# are always kept.
MAX_PENDING = 200_000


@dataclass(frozen=True)
class Fault:
    """A fault the worker itself knows of (store, engine, buzzer), shown beside the engine's."""
    kind: str
    source: str
    since_s: float
    message: str = ""


@dataclass(frozen=True)
class LiveState:
    version: int                 # bumps when anything shown changes (not for the clock alone)
    results: Any                 # engine Results, or None before the first build
    session: Session
    now_s: float                 # session clock at publication
    faults: tuple[Fault, ...] = ()
    pending: int = 0             # events waiting for the store
    buzzer_on: bool = False
    config: Config | None = field(default=None, repr=False)


class Receipt:
    """Handed back by `submit_now` and control calls: `wait()` returns once the action is
    stored and shown (or failed: `error`)."""

    __slots__ = ("_done", "event", "error")

    def __init__(self, event: dict | None = None):
        self._done = threading.Event()
        self.event = event
        self.error: BaseException | None = None

    def wait(self, timeout_s: float | None = None) -> bool:
        return self._done.wait(timeout_s)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _finish(self, error: BaseException | None = None) -> None:
        self.error = error
        self._done.set()


_STOP = object()


class Worker:
    def __init__(self, config: Config, store: Store, buzzer=None, photos=None, *,
                 reorder_s: float = REORDER_S, tick_s: float = TICK_S,
                 engine_factory: Callable | None = None,
                 on_stored: Callable[[list[dict]], None] | None = None):
        self.config = config
        self.store = store
        self.buzzer = buzzer
        self.photos = photos
        self.reorder_s = reorder_s
        self.tick_s = tick_s
        self.on_stored = on_stored
        if engine_factory is None:
            from station.engine import Engine
            engine_factory = Engine
        self._engine_factory = engine_factory
        self.session = store.session or store.begin_session(config.station_id)
        self.engine = None
        self.rebuilds = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: list[tuple[dict, str, Receipt | None]] = []
        self._dropped = 0
        self._retry_at = 0.0
        self._retry_s = RETRY_FIRST_S
        self._faults: dict[tuple[str, str], Fault] = {}
        self._awaiting: list[tuple[float, Receipt]] = []  # (event t, receipt)
        self._advanced_s = float("-inf")
        self._arrival_lag_s = 0.0
        self._buzzer_on = False
        self._photo_seen: set = set()
        self._engine_version = None
        self._results = None
        self._cond = threading.Condition()
        self._state = LiveState(0, None, self.session, self.now_s(), config=config)
        self._beat = time.monotonic()
        self._thread: threading.Thread | None = None

    # -- the API other threads use -----------------------------------------------------

    def submit(self, type: str, t_ns: int, **fields) -> None:
        """Queue an event stamped `t_ns` (time.monotonic_ns() at the sensor). Never blocks."""
        self._queue.put((type, t_ns, fields, None))

    def submit_now(self, type: str, **fields) -> Receipt:
        """Queue an event stamped now (web actions); `.wait()` on the receipt to see it shown."""
        receipt = Receipt()
        self._queue.put((type, time.monotonic_ns(), fields, receipt))
        return receipt

    def reconfigure(self, config: Config) -> Receipt:
        """Use a new configuration (settings, roster): the engine is rebuilt from the log."""
        return self._call(lambda: self._reconfigure(config))

    def flush(self) -> Receipt:
        """A receipt that is done once everything submitted before it is stored and fed."""
        return self._call(lambda: None)

    def new_session(self) -> Receipt:
        """Close the session and start a new one (a coach's "new session")."""
        return self._call(self._new_session)

    @property
    def state(self) -> LiveState:
        return self._state

    def wait_for_change(self, version: int, timeout_s: float) -> LiveState:
        """The state once its version differs from `version`, or the current one at timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._state.version != version, timeout_s)
            return self._state

    def now_s(self) -> float:
        return self.session.t_of(time.monotonic_ns())

    def healthy(self, max_age_s: float = 5.0) -> bool:
        """The loop is running and went round recently (for the systemd watchdog)."""
        return (self._thread is not None and self._thread.is_alive()
                and time.monotonic() - self._beat < max_age_s)

    def start(self) -> Worker:
        self._rebuild()
        self._publish(force=True)
        self._thread = threading.Thread(target=self._loop, name="worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Process everything queued, then stop."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        self._thread = None

    def _call(self, fn: Callable[[], None]) -> Receipt:
        receipt = Receipt()
        self._queue.put((fn, receipt))
        return receipt

    # -- the loop ----------------------------------------------------------------------

    def _loop(self) -> None:
        next_tick = time.monotonic()
        stopping = False
        while not stopping:
            self._beat = time.monotonic()
            items = []
            try:
                items.append(self._queue.get(timeout=max(0.0, next_tick - time.monotonic())))
                while True:  # drain: one transaction for a burst
                    items.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            try:
                stopping = self._handle(items)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.tick_s
                    self._tick()
            except Exception as exc:  # the loop must survive anything
                log.exception("worker: unexpected error")
                self._set_fault("worker_error", "worker", True, repr(exc))
                self._publish()
        self._flush_on_stop()

    def _handle(self, items: list) -> bool:
        stopping = False
        batch: list[tuple[dict, str, Receipt | None]] = []
        for item in items:
            if item is _STOP:
                stopping = True
            elif len(item) == 2:  # a control call: runs between batches, in order
                self._store_and_feed(batch)
                batch = []
                fn, receipt = item
                try:
                    fn()
                    self._publish()
                    receipt._finish()
                except Exception as exc:
                    log.exception("worker: control call failed")
                    receipt._finish(exc)
            else:
                built = self._build_event(*item)
                if built is not None:
                    batch.append(built)
        self._store_and_feed(batch)
        return stopping

    def _build_event(self, type_: str, t_ns: int, fields: dict, receipt: Receipt | None):
        """(event, its JSON line, receipt), or None for an event that must not be stored (an
        exported log must read back without errors); a bad one never spoils its batch."""
        try:
            ev = {"t": self.session.t_of(t_ns), "type": type_, **fields}
            problem = check_event(ev)
            line = None if problem else dumps(ev).decode()
        except Exception as exc:
            ev, problem = {"type": type_, "t_ns": t_ns, **fields}, repr(exc)
        if problem:
            log.error("worker: refused event %r: %s", ev, problem)
            if receipt is not None:
                receipt._finish(ValueError(problem))
            return None
        if receipt is not None:
            receipt.event = ev
        return ev, line, receipt

    def _store_and_feed(self, batch: list[tuple[dict, str, Receipt | None]]) -> None:
        if self._pending:
            self._hold(batch)
            if time.monotonic() < self._retry_at:
                return
            batch, self._pending = self._pending, []
        if not batch:
            return
        recovered = [f for f in self._faults.values() if f.source == "store"]
        evs = [ev for ev, _, _ in batch]
        lines = [line for _, line, _ in batch]
        if recovered:
            # The store is back: log when it failed and that it recovered, around what waited.
            now = self.now_s()
            opened = [self._fault_event(f, True, f.since_s) for f in recovered]
            closed = [self._fault_event(f, False, now) for f in recovered]
            evs = opened + evs + closed
            lines = [dumps(ev).decode() for ev in opened] + lines + [
                dumps(ev).decode() for ev in closed]
        try:
            try:
                self.store.append_many(evs, lines)
            except StoreError:
                raise
            except Exception as exc:  # a bug, not the disk: still hold the events, and say so
                log.exception("store: append failed")
                raise StoreError("store_error", repr(exc)) from exc
        except StoreError as exc:
            self._pending = batch
            self._retry_at = time.monotonic() + self._retry_s
            self._retry_s = min(RETRY_MAX_S, self._retry_s * 2)
            if self._set_fault(exc.kind, "store", True, str(exc)):
                log.error("store: %s; %d events held in memory", exc, len(batch))
            self._publish()
            return
        self._retry_s = RETRY_FIRST_S
        for f in recovered:
            self._set_fault(f.kind, f.source, False)
        if self.on_stored is not None:
            try:
                self.on_stored(evs)
            except Exception:
                log.exception("worker: on_stored callback failed")
        if evs:
            # How long after its own time the oldest of these arrived: if the engine finds it
            # late, the window must be at least this wide from now on.
            self._arrival_lag_s = self._advanced_s - min(ev["t"] for ev in evs)
        for ev in evs:
            self._feed(ev)
        for ev, _, receipt in batch:
            if receipt is not None:
                # Shown once the engine has processed it. Asking the engine, not adding the
                # window to t here: t + w <= now and t <= now - w differ in the last bit.
                self._awaiting.append((ev["t"], receipt))
        self._after_feed()

    def _hold(self, batch: list[tuple[dict, str, Receipt | None]]) -> None:
        for item in batch:
            if len(self._pending) >= MAX_PENDING and item[0]["type"] == "tag":
                self._dropped += 1
                continue
            self._pending.append(item)

    def _feed(self, ev: dict) -> None:
        try:
            self.engine.feed(ev)
        except Exception as exc:
            log.exception("worker: engine failed on %r", ev)
            self._set_fault("worker_error", "engine", True,
                            f"event at t={ev.get('t')} ({ev.get('type')}): {exc!r}")
            return
        if ev["type"] == "silence" and self.buzzer is not None:
            self._buzz("chirp")

    def _after_feed(self) -> None:
        if self.engine.late:
            # The engine already decided a time this event belongs to, and results already
            # shown must not be retracted: replay the session, sorted, with a window wide
            # enough for events as late as this one from now on.
            lag_s = self._arrival_lag_s
            wider_s = min(MAX_REORDER_S, lag_s + LATE_MARGIN_S)
            log.info("worker: %d late event(s) (arrived %.2f s after their time); rebuilding "
                     "from the store, re-ordering window %.2f s -> %.2f s", self.engine.late, lag_s,
                     self.reorder_s, max(self.reorder_s, wider_s))
            self.reorder_s = max(self.reorder_s, wider_s)
            self._rebuild()
        self._advance()
        self._publish()

    def _tick(self) -> None:
        if self._pending and time.monotonic() >= self._retry_at:
            self._store_and_feed([])
        self._advance()
        self._publish()

    def _advance(self) -> None:
        now_s = self.now_s()
        try:
            self.engine.advance(now_s)
            self._advanced_s = now_s
        except Exception as exc:
            log.exception("worker: engine.advance failed")
            self._set_fault("worker_error", "engine", True, repr(exc))

    def _rebuild(self) -> None:
        """A fresh engine fed the whole session from the store, sorted by t."""
        engine = self._engine_factory(self.config, reorder_s=self.reorder_s)
        self.engine = engine
        for ev in self.store.events(self.session.id):
            self._feed(ev)
        self._photo_seen = None  # passes already kept are not new
        self.rebuilds += 1
        self._engine_version = None

    def _reconfigure(self, config: Config) -> None:
        self.config = config
        self._rebuild()
        self._advance()

    def _new_session(self) -> None:
        self._store_and_feed([])
        self.session = self.store.begin_session(self.config.station_id, new=True,
                                                speed=self.session.speed)
        self._rebuild()
        self._advance()

    # -- publishing, buzzer, photos ------------------------------------------------------

    def _publish(self, force: bool = False) -> None:
        changed = force
        if self.engine is not None and self.engine.version != self._engine_version:
            self._engine_version = self.engine.version
            self._results = self.engine.results()
            changed = True
            self._drive_buzzer()
            self._tell_photos()
        old = self._state
        faults = tuple(self._faults.values())
        pending = len(self._pending)
        if faults != old.faults or pending != old.pending or self._buzzer_on != old.buzzer_on:
            changed = True
        state = LiveState(old.version + 1 if changed else old.version, self._results,
                          self.session, self.now_s(), faults, pending, self._buzzer_on,
                          self.config)
        with self._cond:
            self._state = state
            if changed:
                self._cond.notify_all()
        if self._awaiting:
            waiting = []
            decided_s = self.engine.decided_until_s
            for t_s, receipt in self._awaiting:
                if t_s <= decided_s:
                    receipt._finish()
                else:
                    waiting.append((t_s, receipt))
            self._awaiting = waiting

    def _drive_buzzer(self) -> None:
        if self.buzzer is None or self._results is None:
            return
        want = any(getattr(a, "cleared_s", None) in (None, "")
                   for a in getattr(self._results, "alarms", ()))
        if want != self._buzzer_on:
            if self._buzz("alarm_on" if want else "alarm_off"):
                self._buzzer_on = want

    def _buzz(self, action: str) -> bool:
        try:
            getattr(self.buzzer, action)()
        except Exception as exc:
            log.exception("buzzer: %s failed", action)
            if self._set_fault("buzzer_failed", "buzzer", True, repr(exc)):
                self.submit_now("fault", kind="buzzer_failed", source="buzzer", active=True,
                                message=f"{action}: {exc!r}")
            return False
        if self._set_fault("buzzer_failed", "buzzer", False):
            self.submit_now("fault", kind="buzzer_failed", source="buzzer", active=False)
        return True

    def _tell_photos(self) -> None:
        passes = getattr(self._results, "passes", ())
        if self._photo_seen is None:  # after a rebuild: everything so far is old
            self._photo_seen = {(p.gate, p.t_s) for p in passes}
            return
        if self.photos is None:
            return
        for p in passes:
            key = (p.gate, p.t_s)
            if key not in self._photo_seen:
                self._photo_seen.add(key)
                try:
                    self.photos.on_pass(p, self.session.origin_ns
                                        + int(p.t_s / self.session.speed * 1e9))
                except Exception:
                    log.exception("photos: on_pass failed")

    # -- faults -----------------------------------------------------------------------

    def _set_fault(self, kind: str, source: str, active: bool, message: str = "") -> bool:
        """Open or close a worker-known fault; True if that changed anything."""
        key = (kind, source)
        if active:
            if key in self._faults:
                old = self._faults[key]
                if message and message != old.message:
                    self._faults[key] = replace(old, message=message)
                return False
            self._faults[key] = Fault(kind, source, self.now_s(), message)
            return True
        return self._faults.pop(key, None) is not None

    def _fault_event(self, f: Fault, active: bool, t_s: float) -> dict:
        ev = {"t": t_s, "type": "fault", "kind": f.kind, "source": f.source, "active": active}
        if active and f.message:
            ev["message"] = f.message + (f" ({self._dropped} camera reads dropped)"
                                         if self._dropped else "")
        return ev

    def _flush_on_stop(self) -> None:
        for _, receipt in self._awaiting:
            receipt._finish()
        if self._pending:
            try:
                self.store.append_many([ev for ev, _, _ in self._pending],
                                       [line for _, line, _ in self._pending])
                self._pending = []
            except StoreError as exc:
                log.error("stopping with %d events not stored: %s", len(self._pending), exc)


# -- `python -m station.worker`: the worker alone, fed from stdin ----------------------------


def main(argv: list[str] | None = None) -> int:
    """Read events as JSON lines on stdin (`{"type": ..., fields}`; stamped on arrival like a
    sensor would), print each one back on stdout once it is durable."""
    import orjson

    from station.config import load_config, loads_config

    p = argparse.ArgumentParser(prog="python -m station.worker", description=main.__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--config")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = (load_config(args.config) if args.config else loads_config(
        '[track]\nlength_m = 400\n[[gates]]\nid = "finish"\nposition_m = 0\n'))
    out = sys.stdout.buffer

    def ack(evs: list[dict]) -> None:
        out.write(b"".join(orjson.dumps(ev) + b"\n" for ev in evs))
        out.flush()

    worker = Worker(config, Store(args.data), on_stored=ack).start()
    out.write(b'{"ready": true}\n')
    out.flush()
    for line in sys.stdin.buffer:
        if line.strip():
            ev = orjson.loads(line)
            worker.submit(ev.pop("type"), time.monotonic_ns(), **ev)
    worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
