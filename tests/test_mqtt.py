"""Checkpoint gates over MQTT against a real mosquitto on 127.0.0.1: a gate's events reach the
finish station's worker and store with their own `t`, exactly once, through a Wi-Fi link that
drops (a real TCP relay we cut), and while the finish station itself is offline."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import pytest

from station.config import loads_config
from station.mqtt import GateBridge, GatePublisher, session_t_s, wait_until
from station.store import Store
from station.worker import Worker
from conftest import require

pytestmark = pytest.mark.mqtt

CONFIG = """
[station]
id = "club"
[track]
length_m = 400
[[gates]]
id = "finish"
position_m = 0
[[gates]]
id = "g200"
position_m = 200
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def broker(tmp_path):
    exe = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto",) if shutil.os.path.exists(p)), None)
    require(exe is not None, "mosquitto is not installed (apt-get install mosquitto)")
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        if not wait_until(lambda: _accepts(port) or proc.poll() is not None, 10) or proc.poll() is not None:
            pytest.fail(f"mosquitto did not start: {proc.stderr.read().decode()[-500:]}")
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


class Relay:
    """A TCP relay between a client and the broker that can be cut and restored: the Wi-Fi."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.up = False
        with self._lock:
            for s in self._conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._conns = []

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def station(tmp_path):
    config = loads_config(CONFIG)
    store = Store(tmp_path / "data")
    store.begin_session(config.station_id)
    worker = Worker(config, store).start()
    yield worker, store
    worker.stop()
    store.close()


def _gate_events(store: Store) -> list[dict]:
    return [ev for ev in store.events() if ev.get("gate") == "g200"]


def test_session_clock_conversion():
    # Gate monotonic 5 s, gate wall = monotonic + 1000 s; the session began at wall 1003 s.
    assert session_t_s(5_000_000_000, 1_003_000_000_000, offset_ns=1_000_000_000_000) == 2.0
    assert session_t_s(5_000_000_000, 1_003_000_000_000, speed=10, offset_ns=1_000_000_000_000) == 20.0


def test_gate_events_arrive_with_their_own_time(broker, station):
    worker, store = station
    bridge = GateBridge(worker, "club", port=broker).start()
    gate = GatePublisher("club", "g200", "127.0.0.1", broker).start()
    try:
        assert wait_until(lambda: gate.session is not None, 10), "no session origin reached the gate"
        assert gate.session["session"] == worker.session.id
        # Edges stamped on the gate's monotonic clock; sent a moment later.
        stamp = time.monotonic_ns()
        expected_t = worker.session.t_of(stamp)
        gate.submit("beam", stamp, gate="g200", broken=True)
        gate.submit("beam", stamp + 180_000_000, gate="g200", broken=False)
        assert wait_until(lambda: len(_gate_events(store)) == 2, 10)
        first, second = _gate_events(store)
        # Same machine, same clocks: the hand-over through the wall clock costs microseconds.
        assert abs(first["t"] - expected_t) < 0.005
        assert abs(second["t"] - first["t"] - 0.18) < 0.0011
        assert first["broken"] is True and second["broken"] is False
        assert "_seq" not in first and "_src" not in first  # transport fields are not stored
        assert bridge.received == 2 and bridge.rejected == 0
    finally:
        gate.stop()
        bridge.stop()


def test_flaky_wifi_loses_and_repeats_nothing(broker, station):
    worker, store = station
    relay = Relay(broker)
    bridge = GateBridge(worker, "club", port=broker).start()
    gate = GatePublisher("club", "g200", "127.0.0.1", relay.port).start()
    try:
        assert wait_until(lambda: gate.session is not None and gate.connected.is_set(), 10)
        base = time.monotonic_ns()
        sent = 0
        for outage in range(3):
            for _ in range(10):
                gate.submit("beam", base + sent * 1_000_000, gate="g200", broken=sent % 2 == 0)
                sent += 1
            relay.cut()  # mid-flight: some of these may be unacknowledged
            assert wait_until(lambda: not gate.connected.is_set(), 30), "gate never noticed the cut"
            for _ in range(15):  # while the link is down
                gate.submit("beam", base + sent * 1_000_000, gate="g200", broken=sent % 2 == 0)
                sent += 1
            relay.restore()
            assert wait_until(gate.connected.is_set, 30), "gate did not reconnect"
        assert wait_until(lambda: len(_gate_events(store)) >= sent, 20)
        got = _gate_events(store)
        assert len(got) == sent  # none lost, none twice
        expected = sorted(worker.session.t_of(base + i * 1_000_000) for i in range(sent))
        assert [round(ev["t"], 3) for ev in sorted(got, key=lambda e: e["t"])] == \
            [round(t, 3) for t in expected]
    finally:
        gate.stop()
        bridge.stop()
        relay.close()


def test_finish_station_offline_gets_the_events_later(broker, station):
    worker, store = station
    relay = Relay(broker)
    bridge = GateBridge(worker, "club", port=relay.port).start()
    gate = GatePublisher("club", "g200", "127.0.0.1", broker).start()
    try:
        assert wait_until(lambda: bridge.connected.is_set() and gate.session is not None, 10)
        relay.cut()
        assert wait_until(lambda: not bridge.connected.is_set(), 30)
        stamp = time.monotonic_ns()
        for i in range(6):
            gate.submit("beam", stamp + i * 50_000_000, gate="g200", broken=i % 2 == 0)
        assert wait_until(lambda: gate.unacknowledged() == 0, 10)  # the broker holds them now
        assert _gate_events(store) == []
        relay.restore()
        assert wait_until(lambda: len(_gate_events(store)) == 6, 30)
    finally:
        gate.stop()
        bridge.stop()
        relay.close()


def test_bad_messages_are_dropped_and_named(broker, station, caplog):
    import paho.mqtt.client as mqtt

    worker, store = station
    bridge = GateBridge(worker, "club", port=broker).start()
    raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder")
    raw.connect("127.0.0.1", broker)
    raw.loop_start()
    try:
        assert wait_until(bridge.connected.is_set, 10)
        t = worker.now_s()
        for payload in (b"not json", b"[1, 2]", b'{"t": 1.0, "type": "beam", "gate": "g200"}',
                        b'{"t": 1.0, "type": "beam", "gate": "finish", "broken": true}'):
            raw.publish("station/club/events/g200", payload, qos=1).wait_for_publish(5)
        good = f'{{"t": {t:.4f}, "type": "beam", "gate": "g200", "broken": true}}'.encode()
        raw.publish("station/club/events/g200", good, qos=1).wait_for_publish(5)
        assert wait_until(lambda: len(_gate_events(store)) == 1, 10)
        assert bridge.rejected == 4 and bridge.received == 1
        messages = " ".join(r.getMessage() for r in caplog.records)
        assert "not JSON" in messages and "missing field 'broken'" in messages
        assert "event for gate 'finish' on gate 'g200'" in messages
        assert not any(ev.get("gate") == "finish" for ev in store.events())
    finally:
        raw.loop_stop()
        raw.disconnect()
        bridge.stop()
