"""Checkpoint gates over MQTT: a gate Pi publishes its events, the finish station feeds them to
its worker with their own `t`.

**Set-up.** The finish Pi runs mosquitto (deploy/install.sh: listening on 127.0.0.1 and the
hotspot address, password required, persistence on). Every Pi has the club's station.toml
with all gates; its `[mqtt]` table says which part it plays:

    [mqtt]                        # the finish station          # a checkpoint Pi
    host = "127.0.0.1"            #                             host = "10.42.0.1"
    role = "finish"               #                             role = "gate"
    username = "station"          #                             gate = "g200"
    password_file = "/etc/station/mqtt-password"

`station run` then starts a `GateBridge` (finish) or a `GatePublisher` (gate, launch.py). A
gate Pi keeps its own worker and log as well (its dashboard shows its beam and camera health,
and its log is a backup of everything it sent); only its own gate's beam and cameras run.
`station.id` must be the same on all Pis: it names the topics.

Topics (`<id>` is `station.id`):

- `station/<id>/session` (retained, from the finish station): `{"session", "origin_wall_ns",
  "speed"}`, the wall-clock time of the session's t = 0.
- `station/<id>/events/<gate>` (QoS 1, from a gate): one event per message, the JSON object of
  its log line, plus `_src` (the publisher's run) and `_seq` (its count) to drop duplicates.
- `station/<id>/gates/<gate>` (retained, QoS 1): `online` from the gate, `offline` from the
  broker as the gate's last will when its link dies. The finish station logs a `fault`
  `gate_offline` (source: the gate) for as long as it lasts.

**Time.** Every event keeps the time its sensor stamped, not its arrival time. The gate stamps
`time.monotonic_ns()` like any sensor; when it publishes, it turns the stamp into the finish
station's session seconds with the retained session message:
`t = (stamp + (gate wall - gate monotonic) - origin_wall_ns) / 1e9`. That relies on both wall
clocks agreeing, which chrony gives: the finish Pi serves its time over the hotspot (`local
stratum 10`, no internet needed) and each gate is its chrony client, stepping whenever it is
off by more than 0.1 s (deploy/install.sh --gate). Over Wi-Fi they agree to a millisecond or
two. The gate holds its events until chrony says its clock is synchronised (`synced`), so a
gate that booted with a wrong clock never sends wrong times. A coach setting the finish
Pi's clock mid-session moves its origin: the bridge republishes it, and the gate keeps using
the old origin until its own clock has followed (chrony steps it within a poll, <= 16 s), so
no event is converted with one side stepped and the other not. Monotonic stamps never step,
so events stamped before a step convert correctly after it. Lap times never read a wall
clock: only this hand-over does.

**Flaky Wi-Fi.** QoS 1 with persistent sessions (`clean_session=False`, fixed client ids) on
both sides: while the gate is cut off, paho keeps its messages (unbounded queue) and sends
them when it is back; while the finish station is cut off, the broker keeps them for it (up to
`max_queued_messages`, set high by the installer, and across a broker restart: persistence).
At-least-once delivery can repeat a message after a reconnect, so the bridge drops repeats by
(`_src`, `_seq`). Events that arrive later than the worker's re-ordering window make it
rebuild from the store, which sorts by `t`: a late event changes nothing but how soon it shows.
What paho holds is in memory: a gate that loses power while cut off loses those messages on
the finish station, but not from its own log (`station export` on the gate).
"""

from __future__ import annotations

import logging
import queue
import secrets
import shutil
import subprocess
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt

from station.config import ConfigError
from station.events import check_event

log = logging.getLogger(__name__)

KEEPALIVE_S = 10          # a dead Wi-Fi link is noticed within about 1.5 x this
RECONNECT_MAX_S = 8
# The wall clock moving against the monotonic clock by more than this is a clock change.
CLOCK_JUMP_NS = 50_000_000
SEEN_PER_SOURCE = 50_000  # (src, seq) remembered to drop repeats; far more than a Wi-Fi gap
SYNC_CHECK_S = 2.0        # how often a gate asks chrony whether its clock is synchronised
FOLLOW_WARN_S = 60.0      # a gate clock that has not followed the finish's step by then: say so


def session_topic(station_id: str) -> str:
    return f"station/{station_id}/session"


def events_topic(station_id: str, gate_id: str = "+") -> str:
    return f"station/{station_id}/events/{gate_id}"


def status_topic(station_id: str, gate_id: str = "+") -> str:
    return f"station/{station_id}/gates/{gate_id}"


def wall_offset_ns() -> int:
    """This machine's wall clock minus its monotonic clock, now."""
    return time.time_ns() - time.monotonic_ns()


def session_t_s(stamp_ns: int, origin_wall_ns: int, speed: float = 1.0,
                offset_ns: int | None = None) -> float:
    """A monotonic stamp of this machine as seconds on the finish station's session clock."""
    offset_ns = wall_offset_ns() if offset_ns is None else offset_ns
    return round((stamp_ns + offset_ns - origin_wall_ns) * speed / 1e9, 4)


def read_password(path: str | Path) -> str:
    """The broker password from its file (first line); a clear error naming the key if not."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("mqtt.password_file", f"cannot read {path}: {exc.strerror}") from None
    password = text.splitlines()[0].strip() if text.strip() else ""
    if not password:
        raise ConfigError("mqtt.password_file", f"{path} is empty")
    return password


def chrony_synced(command: str = "chronyc") -> bool:
    """True if chrony says the system clock is synchronised. Without chrony (a laptop) there is
    nothing to ask: True."""
    exe = shutil.which(command)
    if exe is None:
        return True
    try:
        done = subprocess.run([exe, "-n", "tracking"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return True
    if done.returncode != 0:  # chronyd not running: no clock service to wait for
        return True
    for line in done.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Leap status":
            return value.strip() != "Not synchronised"
    return True


def _client(client_id: str, username: str | None, password: str | None) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=False, protocol=mqtt.MQTTv311)
    client.reconnect_delay_set(min_delay=1, max_delay=RECONNECT_MAX_S)
    # Keep every QoS 1 message until it is acknowledged, however long the link is down.
    client.max_queued_messages_set(0)
    if username:
        client.username_pw_set(username, password)
    return client


class Tee:
    """A sink that hands each event to several (a gate Pi: its own worker and the publisher)."""

    def __init__(self, *sinks):
        self._submits = [s.submit if hasattr(s, "submit") else s for s in sinks]

    def submit(self, type: str, t_ns: int, **fields) -> None:
        for submit in self._submits:
            submit(type, t_ns, **fields)


class GatePublisher:
    """On a gate Pi: publishes its events to the finish station's broker.

    `submit(type, t_ns, **fields)` never blocks (gpiozero callbacks call it). Events wait
    until the finish station's session is known and this Pi's clock is synchronised
    (`synced()`, default: always), then go out in order, QoS 1."""

    role = "gate"

    def __init__(self, station_id: str, gate_id: str, host: str, port: int = 1883, *,
                 client_id: str | None = None, username: str | None = None,
                 password: str | None = None, synced: Callable[[], bool] | None = None,
                 keepalive_s: int = KEEPALIVE_S, wall_offset: Callable[[], int] = wall_offset_ns):
        self.station_id, self.gate_id = station_id, gate_id
        self._wall_offset = wall_offset  # this Pi's wall minus monotonic clock (tests step it)
        self._keepalive_s = keepalive_s
        self.topic = events_topic(station_id, gate_id)
        self.source = secrets.token_hex(4)   # this run: its _seq count starts at 1
        self.sent = 0
        self._seq = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._session: dict | None = None
        # A finish-side clock step waiting for this Pi's clock to follow:
        # (new session info, this Pi's wall offset when it came, monotonic time it came).
        self._next_session: tuple[dict, int, float] | None = None
        self._synced = synced or (lambda: True)
        self._clock_ok = False
        self._clock_checked = float("-inf")
        self._waiting: list[tuple] = []
        self.connected = threading.Event()
        self._client = _client(client_id or f"station-{station_id}-gate-{gate_id}",
                               username, password)
        self._client.will_set(status_topic(station_id, gate_id), b"offline", qos=1, retain=True)
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
        self._client.connect_async(self._host, self._port, keepalive=self._keepalive_s)
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
        if self.connected.is_set():
            # A clean stop is not a dead link: say so, since the will is only for a dead one.
            self._client.publish(status_topic(self.station_id, self.gate_id), b"stopped",
                                 qos=1, retain=True)
        self._client.disconnect()
        self._client.loop_stop()

    def unacknowledged(self) -> int:
        """Messages paho still holds (not yet acknowledged by the broker)."""
        return len(getattr(self._client, "_out_messages", ()))

    def status(self) -> dict:
        """For the health page."""
        return {"role": "gate", "gate": self.gate_id, "broker": f"{self._host}:{self._port}",
                "connected": self.connected.is_set(), "session": self._session is not None,
                "clock_synced": self._clock_ok, "sent": self.sent,
                "waiting": len(self._waiting), "unacknowledged": self.unacknowledged(),
                "clock_step_pending": self._next_session is not None}

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("mqtt gate %s: broker refused: %s", self.gate_id, reason_code)
            return
        client.subscribe(session_topic(self.station_id), qos=1)
        client.publish(status_topic(self.station_id, self.gate_id), b"online", qos=1, retain=True)
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
        self._queue.put(("session", session))  # the sender thread owns the session state

    def _take_session(self, session: dict) -> None:
        old = self._session
        same = old is not None and (old["session"], old["speed"]) == (session["session"], session["speed"])
        if same and abs(session["origin_wall_ns"] - old["origin_wall_ns"]) >= CLOCK_JUMP_NS:
            # The finish Pi's wall clock was stepped. Ours follows at chrony's next poll;
            # until then the old origin still matches our (unstepped) clock.
            self._next_session = (session, self._wall_offset(), time.monotonic())
            log.info("mqtt gate %s: the finish station's clock moved by %+.3f s; waiting for "
                     "this Pi's clock to follow", self.gate_id,
                     (session["origin_wall_ns"] - old["origin_wall_ns"]) / 1e9)
            return
        self._session, self._next_session = session, None

    def _follow_clock_step(self) -> None:
        if self._next_session is None:
            return
        session, offset_then, since = self._next_session
        moved_ns = self._wall_offset() - offset_then
        if abs(moved_ns) >= CLOCK_JUMP_NS:
            # Our clock stepped too (chrony followed, or found its own error): the new origin
            # is the one that matches our clock now.
            self._session, self._next_session = session, None
            log.info("mqtt gate %s: this Pi's clock followed (%+.3f s)", self.gate_id, moved_ns / 1e9)
        elif time.monotonic() - since > FOLLOW_WARN_S:
            log.warning("mqtt gate %s: this Pi's clock has not followed the finish station's "
                        "for %.0f s: is chrony running? (chronyc tracking)", self.gate_id,
                        time.monotonic() - since)
            self._next_session = (session, offset_then, time.monotonic())

    def _clock_ready(self) -> bool:
        now = time.monotonic()
        if not self._clock_ok and now - self._clock_checked >= SYNC_CHECK_S:
            self._clock_checked = now
            try:
                self._clock_ok = bool(self._synced())
            except Exception:  # noqa: BLE001 - a broken check must not stop the gate
                log.exception("mqtt gate %s: clock check failed", self.gate_id)
                self._clock_ok = True
            if not self._clock_ok:
                log.warning("mqtt gate %s: clock not synchronised yet (chrony); %d events wait",
                            self.gate_id, len(self._waiting))
        return self._clock_ok

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                item = None
            if item is self._stop:
                self._send_waiting()
                return
            if item is not None and item[0] == "session" and len(item) == 2:
                self._take_session(item[1])
            elif item is not None:
                self._waiting.append(item)
            self._follow_clock_step()
            self._send_waiting()

    def _send_waiting(self) -> None:
        session = self._session
        if session is None or not self._waiting or not self._clock_ready():
            return
        offset_ns = self._wall_offset()
        for type_, t_ns, fields in self._waiting:
            t = session_t_s(t_ns, session["origin_wall_ns"], session["speed"], offset_ns)
            self._seq += 1
            ev = {"t": t, "type": type_, **fields, "_src": self.source, "_seq": self._seq}
            # Queued by paho even while disconnected; sent, and resent, until acknowledged.
            self._client.publish(self.topic, orjson.dumps(ev), qos=1)
            self.sent += 1
        self._waiting = []


class GateBridge:
    """On the finish station: subscribes to its gates' events and submits them into the
    worker with their own `t`; publishes the session's clock origin for the gates."""

    role = "finish"

    def __init__(self, worker, station_id: str, host: str = "127.0.0.1", port: int = 1883, *,
                 client_id: str | None = None, check_every_s: float = 2.0,
                 username: str | None = None, password: str | None = None,
                 wall_offset: Callable[[], int] = wall_offset_ns):
        self.worker = worker
        self._wall_offset = wall_offset
        self.station_id = station_id
        self.received = 0
        self.repeats = 0
        self.rejected = 0
        self.gates: dict[str, str] = {}   # gate id -> online / offline / stopped
        self.connected = threading.Event()
        self._seen: OrderedDict[str, OrderedDict[int, None]] = OrderedDict()
        self._client = _client(client_id or f"station-{station_id}-finish", username, password)
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

    def status(self) -> dict:
        """For the health page."""
        return {"role": "finish", "broker": f"{self._host}:{self._port}",
                "connected": self.connected.is_set(), "received": self.received,
                "repeats": self.repeats, "rejected": self.rejected, "gates": dict(self.gates)}

    # -- the session's clock origin, for the gates --

    def session_info(self) -> dict:
        session = self.worker.session
        return {"session": session.id, "speed": session.speed,
                "origin_wall_ns": session.origin_ns + self._wall_offset()}

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
        client.subscribe([(events_topic(self.station_id), 1), (status_topic(self.station_id), 1)])
        self.publish_session(force=True)
        self.connected.set()
        log.info("mqtt: connected; listening to %s", events_topic(self.station_id))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.warning("mqtt: disconnected (%s); the broker keeps the gates' events", reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            if msg.topic.startswith(status_topic(self.station_id, "")):
                self._gate_status(msg.topic.rsplit("/", 1)[-1], msg.payload)
            else:
                self._take(msg.topic, msg.payload)
        except Exception:  # a bad message must never stop the bridge
            self.rejected += 1
            log.exception("mqtt: message on %s failed", msg.topic)

    def _gate_status(self, gate: str, payload: bytes) -> None:
        status = payload.decode("utf-8", "replace")[:20]
        before = self.gates.get(gate)
        self.gates[gate] = status
        if gate not in {g.id for g in self.worker.config.gates}:
            return
        # Only a dead link is a fault; a gate stopped on purpose is not.
        if status == "offline" and before != "offline":
            log.warning("mqtt: checkpoint gate %s is offline (its link died)", gate)
            self.worker.submit_now("fault", kind="gate_offline", source=gate, active=True,
                                   message="the checkpoint Pi's link to the broker died")
        elif status != "offline" and before in (None, "offline"):
            # (None: this station restarted; a fault its log left open ends here.)
            self.worker.submit_now("fault", kind="gate_offline", source=gate, active=False)

    def _take(self, topic: str, payload: bytes) -> None:
        gate = topic.rsplit("/", 1)[-1]
        try:
            ev = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            return self._reject(topic, f"not JSON: {exc}")
        if not isinstance(ev, dict):
            return self._reject(topic, "not a JSON object")
        src, seq = ev.pop("_src", None), ev.pop("_seq", None)
        problem = check_event(ev) or self._foreign(gate, ev)
        if problem:
            return self._reject(topic, problem)
        if src is not None and seq is not None and self._repeat(str(src), seq):
            self.repeats += 1
            return None
        session = self.worker.session
        t_ns = session.origin_ns + round(ev.pop("t") / session.speed * 1e9)
        self.worker.submit(ev.pop("type"), t_ns, **ev)
        self.received += 1
        return None

    def _foreign(self, gate: str, ev: dict) -> str | None:
        """Why an event on gate's topic is not that gate's to send (None if it is)."""
        if "gate" in ev and ev["gate"] != gate:
            return f"event for gate {ev['gate']!r} on gate {gate!r}'s topic"
        config = getattr(self.worker, "config", None)
        if config is None:
            return None
        if gate not in {g.id for g in config.gates}:
            return f"gate {gate!r} is not in this station's [[gates]] (add it to station.toml)"
        own = {c.id for c in config.cameras_of(gate)}
        if ev["type"] == "tag" and ev["camera"] not in own:
            return f"camera {ev['camera']!r} does not belong to gate {gate!r}"
        if ev["type"] == "fault" and ev["source"] not in own | {gate}:
            return f"fault from {ev['source']!r} on gate {gate!r}'s topic"
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
