"""Checkpoint gates over MQTT: a gate Pi publishes its events, the finish station feeds them to
its worker with their own `t`.

Topics (`<id>` is the finish station's `station.id`):

- `station/<id>/session` (retained, from the finish station): `{"session", "origin_wall_ns",
  "speed"}`, the wall-clock time of the session's t = 0.
- `station/<id>/events/<gate>` (QoS 1, from a gate): one event per message, the JSON object of
  its log line, plus `_src` (the publisher's run) and `_seq` (its count) to drop duplicates.

**Time.** Every event keeps the time its sensor stamped, not its arrival time. The gate stamps
`time.monotonic_ns()` like any sensor; when it publishes, it turns the stamp into the finish
station's session seconds with the retained session message:
`t = (stamp + (gate wall - gate monotonic) - origin_wall_ns) / 1e9`. That relies on both wall
clocks agreeing, which chrony gives (the gates take their time from the finish Pi over the
hotspot: deploy/install.sh, docs/HARDWARE.md), to a millisecond or two on Wi-Fi. A wall
clock set mid-session moves on both Pis together (the finish station republishes its origin
when its own wall clock jumps). Lap times never read a wall clock: only this hand-over does.

**Flaky Wi-Fi.** QoS 1 with persistent sessions (`clean_session=False`, fixed client ids) on
both sides: while the gate is cut off, paho keeps its messages and sends them when it is back;
while the finish station is cut off, the broker keeps them for it. At-least-once delivery can
repeat a message after a reconnect, so the bridge drops repeats by (`_src`, `_seq`). Events
that arrive later than the worker's re-ordering window make it rebuild from the store, which
sorts by `t`: a late event changes nothing but how soon it shows.

`GatePublisher.submit` has the worker's signature, so a gate's `BeamGate` takes it as its sink.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import orjson
import paho.mqtt.client as mqtt

from station.events import check_event

log = logging.getLogger(__name__)

KEEPALIVE_S = 10          # a dead Wi-Fi link is noticed within about 1.5 x this
RECONNECT_MAX_S = 8
# The wall clock moving against the monotonic clock by more than this is a clock change.
CLOCK_JUMP_NS = 50_000_000
SEEN_PER_SOURCE = 50_000  # (src, seq) remembered to drop repeats; far more than a Wi-Fi gap


def session_topic(station_id: str) -> str:
    return f"station/{station_id}/session"


def events_topic(station_id: str, gate_id: str = "+") -> str:
    return f"station/{station_id}/events/{gate_id}"


def wall_offset_ns() -> int:
    """This machine's wall clock minus its monotonic clock, now."""
    return time.time_ns() - time.monotonic_ns()


def session_t_s(stamp_ns: int, origin_wall_ns: int, speed: float = 1.0,
                offset_ns: int | None = None) -> float:
    """A monotonic stamp of this machine as seconds on the finish station's session clock."""
    offset_ns = wall_offset_ns() if offset_ns is None else offset_ns
    return round((stamp_ns + offset_ns - origin_wall_ns) * speed / 1e9, 4)


def _client(client_id: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=False, protocol=mqtt.MQTTv311)
    client.reconnect_delay_set(min_delay=1, max_delay=RECONNECT_MAX_S)
    # Keep every QoS 1 message until it is acknowledged, however long the link is down.
    client.max_queued_messages_set(0)
    return client


class GatePublisher:
    """On a gate Pi: publishes its events to the finish station's broker.

    `submit(type, t_ns, **fields)` never blocks (gpiozero callbacks call it). Events wait
    until the finish station's session is known, then go out in order, QoS 1."""

    def __init__(self, station_id: str, gate_id: str, host: str, port: int = 1883, *,
                 client_id: str | None = None):
        self.station_id, self.gate_id = station_id, gate_id
        self.topic = events_topic(station_id, gate_id)
        self.source = secrets.token_hex(4)   # this run: its _seq count starts at 1
        self._seq = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._session: dict | None = None
        self._session_ready = threading.Condition()
        self._waiting: list[tuple] = []
        self.connected = threading.Event()
        self._client = _client(client_id or f"station-{station_id}-gate-{gate_id}")
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_session
        self._host, self._port = host, port
        self._thread: threading.Thread | None = None
        self._stop = object()

    # the sink API (same as Worker.submit)
    def submit(self, type: str, t_ns: int, **fields) -> None:
        self._queue.put((type, t_ns, fields))

    def submit_now(self, type: str, **fields) -> None:
        self.submit(type, time.monotonic_ns(), **fields)

    @property
    def session(self) -> dict | None:
        return self._session

    def start(self) -> GatePublisher:
        self._client.connect_async(self._host, self._port, keepalive=KEEPALIVE_S)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name=f"mqtt-gate-{self.gate_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (within timeout_s if connected), then disconnect."""
        if self._thread is not None:
            self._queue.put(self._stop)
            self._thread.join(timeout_s)
            self._thread = None
        deadline = time.monotonic() + timeout_s
        while self.connected.is_set() and self.unacknowledged() and time.monotonic() < deadline:
            time.sleep(0.02)
        self._client.disconnect()
        self._client.loop_stop()

    def unacknowledged(self) -> int:
        """Messages paho still holds (not yet acknowledged by the broker)."""
        return len(getattr(self._client, "_out_messages", ()))

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("mqtt gate %s: broker refused: %s", self.gate_id, reason_code)
            return
        client.subscribe(session_topic(self.station_id), qos=1)
        self.connected.set()
        log.info("mqtt gate %s: connected", self.gate_id)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.warning("mqtt gate %s: disconnected (%s); events are kept until it is back",
                    self.gate_id, reason_code)

    def _on_session(self, client, userdata, msg) -> None:
        try:
            info = orjson.loads(msg.payload)
            session = {"session": int(info["session"]), "origin_wall_ns": int(info["origin_wall_ns"]),
                       "speed": float(info.get("speed", 1.0))}
        except (ValueError, KeyError, TypeError) as exc:
            log.error("mqtt gate %s: bad session message %r: %s", self.gate_id, msg.payload[:200], exc)
            return
        with self._session_ready:
            self._session = session
            self._session_ready.notify_all()
        self._queue.put(None)  # wake the sender: events may be waiting for this

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._stop:
                self._send_waiting()
                return
            if item is not None:
                self._waiting.append(item)
            self._send_waiting()

    def _send_waiting(self) -> None:
        session = self._session
        if session is None or not self._waiting:
            return
        offset_ns = wall_offset_ns()
        for type_, t_ns, fields in self._waiting:
            t = session_t_s(t_ns, session["origin_wall_ns"], session["speed"], offset_ns)
            self._seq += 1
            ev = {"t": t, "type": type_, **fields, "_src": self.source, "_seq": self._seq}
            # Queued by paho even while disconnected; sent, and resent, until acknowledged.
            self._client.publish(self.topic, orjson.dumps(ev), qos=1)
        self._waiting = []


class GateBridge:
    """On the finish station: subscribes to its gates' events and submits them into the
    worker with their own `t`; publishes the session's clock origin for the gates."""

    def __init__(self, worker, station_id: str, host: str = "127.0.0.1", port: int = 1883, *,
                 client_id: str | None = None, check_every_s: float = 2.0):
        self.worker = worker
        self.station_id = station_id
        self.received = 0
        self.repeats = 0
        self.rejected = 0
        self.connected = threading.Event()
        self._seen: OrderedDict[str, OrderedDict[int, None]] = OrderedDict()
        self._client = _client(client_id or f"station-{station_id}-finish")
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._host, self._port = host, port
        self._check_every_s = check_every_s
        self._published: tuple | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> GateBridge:
        self._client.connect_async(self._host, self._port, keepalive=KEEPALIVE_S)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._watch_clock, name="mqtt-bridge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._client.disconnect()
        self._client.loop_stop()

    # -- the session's clock origin, for the gates --

    def session_info(self) -> dict:
        session = self.worker.session
        return {"session": session.id, "speed": session.speed,
                "origin_wall_ns": session.origin_ns + wall_offset_ns()}

    def publish_session(self, force: bool = False) -> bool:
        """(Re)publish the origin when the session or the wall clock changed; True if sent."""
        info = self.session_info()
        key = (info["session"], info["speed"])
        if (not force and self._published is not None and self._published[0] == key
                and abs(self._published[1] - info["origin_wall_ns"]) < CLOCK_JUMP_NS):
            return False
        self._client.publish(session_topic(self.station_id), orjson.dumps(info), qos=1, retain=True)
        self._published = (key, info["origin_wall_ns"])
        log.info("mqtt: session %s origin published for the gates", info["session"])
        return True

    def _watch_clock(self) -> None:
        while not self._stopping.wait(self._check_every_s):
            if self.connected.is_set():
                self.publish_session()

    # -- events from the gates --

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("mqtt: broker refused: %s", reason_code)
            return
        client.subscribe(events_topic(self.station_id), qos=1)
        self.publish_session(force=True)
        self.connected.set()
        log.info("mqtt: connected; listening to %s", events_topic(self.station_id))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.warning("mqtt: disconnected (%s); the broker keeps the gates' events", reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self._take(msg.topic, msg.payload)
        except Exception:  # a bad message must never stop the bridge
            self.rejected += 1
            log.exception("mqtt: message on %s failed", msg.topic)

    def _take(self, topic: str, payload: bytes) -> None:
        gate = topic.rsplit("/", 1)[-1]
        try:
            ev = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return self._reject(topic, f"not JSON: {exc}")
        if not isinstance(ev, dict):
            return self._reject(topic, "not a JSON object")
        src, seq = ev.pop("_src", None), ev.pop("_seq", None)
        problem = check_event(ev)
        if problem:
            return self._reject(topic, problem)
        if "gate" in ev and ev["gate"] != gate:
            return self._reject(topic, f"event for gate {ev['gate']!r} on gate {gate!r}'s topic")
        if src is not None and seq is not None and self._repeat(str(src), seq):
            self.repeats += 1
            return None
        session = self.worker.session
        t_ns = session.origin_ns + round(ev.pop("t") / session.speed * 1e9)
        self.worker.submit(ev.pop("type"), t_ns, **ev)
        self.received += 1
        return None

    def _repeat(self, src: str, seq) -> bool:
        seen = self._seen.get(src)
        if seen is None:
            seen = self._seen[src] = OrderedDict()
            while len(self._seen) > 64:  # gates restart now and then; forget old runs
                self._seen.popitem(last=False)
        if seq in seen:
            return True
        seen[seq] = None
        if len(seen) > SEEN_PER_SOURCE:
            seen.popitem(last=False)
        return False

    def _reject(self, topic: str, why: str) -> None:
        self.rejected += 1
        log.error("mqtt: dropped a message on %s: %s", topic, why)


def wait_until(condition: Callable[[], bool], timeout_s: float, step_s: float = 0.01) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes (for start-up and tests)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step_s)
    return True
