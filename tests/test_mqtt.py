"""Checkpoint gates over MQTT against a real mosquitto on 127.0.0.1: a gate's events reach the
finish station's worker and store with their own `t`, exactly once, through a Wi-Fi link that
drops (a real TCP relay we cut), and while the finish station itself is offline."""

from __future__ import annotations

import getpass
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


# -- a checkpoint Pi as `station run` builds it, end to end ----------------------------------

def _hashed_password_file(tmp_path, users: dict[str, str]):
    """A mosquitto password file made the way deploy/install.sh makes it (mosquitto_passwd -U)."""
    exe = shutil.which("mosquitto_passwd")
    require(exe is not None, "mosquitto_passwd is missing (apt-get install mosquitto)")
    path = tmp_path / "mosquitto.passwd"
    path.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
    path.chmod(0o600)
    subprocess.run([exe, "-U", str(path)], check=True, capture_output=True)
    assert "secret" not in path.read_text()
    return path


@pytest.fixture
def auth_broker(tmp_path):
    """mosquitto with passwords required, as the finish Pi runs it."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    require(shutil.os.path.exists(exe), "mosquitto is not installed (apt-get install mosquitto)")
    users = {"station": "secret-finish-1", "gate": "secret-gate-2"}
    passwd = _hashed_password_file(tmp_path, users)
    port = _free_port()
    conf = tmp_path / "mosquitto-auth.conf"
    # (As root, mosquitto would drop to its own user, who cannot read tmp_path.)
    conf.write_text(f"user {getpass.getuser()}\n"
                    f"per_listener_settings false\nallow_anonymous false\npassword_file {passwd}\n"
                    f"persistence false\nmax_queued_messages 100000\nlistener {port} 127.0.0.1\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not wait_until(lambda: _accepts(port) or proc.poll() is not None, 10) or proc.poll() is not None:
            pytest.fail(f"mosquitto did not start: {proc.stderr.read().decode()[-500:]}")
        yield port, users
    finally:
        proc.terminate()
        proc.wait(5)


CLUB = """
[station]
id = "club"
[track]
length_m = 400
[laps]
min_lap_s = 1
[[gates]]
id = "finish"
position_m = 0
[[gates]]
id = "g200"
position_m = 200
{gate_pin}
[hardware]
pin_factory = "mock"
[web]
host = "127.0.0.1"
[mqtt]
host = "127.0.0.1"
port = {port}
{mqtt}
"""


def _pass(worker, stamp_ns: int, gate: str = "finish", break_ms: int = 150) -> None:
    worker.submit("beam", stamp_ns, gate=gate, broken=True)
    worker.submit("beam", stamp_ns + break_ms * 1_000_000, gate=gate, broken=False)


def test_checkpoint_pi_splits_reach_the_finish_station_through_a_cut(tmp_path, auth_broker, monkeypatch):
    """A gate Pi (`station run` with mqtt.role = "gate", its beam on a MockFactory pin) and the
    finish station's worker: the gate's beam gives the runner a split on the finish station,
    over a broker that wants passwords, and a Wi-Fi cut between them loses nothing."""
    import station.mqtt
    from station import cli, launch
    from station.config import load_config
    from station.sensors.beam import SimulatedBeam

    port, users = auth_broker
    relay = Relay(port)
    # chrony is the outside world here: this machine's clock is the finish station's.
    monkeypatch.setattr(station.mqtt, "chrony_synced", lambda: True)
    for name, password in users.items():
        (tmp_path / f"{name}-password").write_text(password + "\n")
    finish_toml = tmp_path / "finish.toml"
    finish_toml.write_text(CLUB.format(gate_pin="", port=port, mqtt=(
        f'username = "station"\npassword_file = "{tmp_path}/station-password"')))
    gate_toml = tmp_path / "gate.toml"
    gate_toml.write_text(CLUB.format(gate_pin="pin = 27", port=relay.port, mqtt=(
        f'role = "gate"\ngate = "g200"\nusername = "gate"\npassword_file = "{tmp_path}/gate-password"')))

    # The finish station: its session began a while ago; a runner checked in.
    config = load_config(finish_toml)
    store = Store(tmp_path / "finish")
    t0 = time.monotonic_ns()
    store.begin_session("club", now_ns=t0 - 200 * 10**9)
    worker = Worker(config, store).start()
    link = launch.make_gate_link(config, worker)
    args = cli.build_parser().parse_args(["run", "--config", str(gate_toml), "--data",
                                          str(tmp_path / "gate"), "--port", "0"])
    gate = launch.build(args)
    try:
        assert link.role == "finish" and gate.link.role == "gate"
        assert [b.gate_id for b in gate.beams] == ["g200"]  # only its own gate is wired here
        assert wait_until(lambda: gate.link.session is not None, 15), "no session origin at the gate"
        beam = SimulatedBeam.for_gate(gate.config.gate("g200"), gate.beams[0].device.pin_factory)

        def gate_pass() -> int:
            base = time.monotonic_ns()
            beam.play([(0.0, True), (0.15, False)], lambda s: base + int(s * 1e9)).join(5)
            return base

        def not_before(ns: int) -> None:
            """The runner takes real time between gates (laps shorter than min_lap_s are one)."""
            assert wait_until(lambda: time.monotonic_ns() >= ns, 10)

        def at_finish() -> list[dict]:
            return [ev for ev in store.events() if ev.get("gate") == "g200"]

        worker.submit("checkin", t0 - 100 * 10**9, bib=7)
        _pass(worker, t0 - 60 * 10**9)                  # lap 1 starts
        gate_a_ns = gate_pass()                         # checkpoint, live, through the broker
        assert wait_until(lambda: len(at_finish()) == 2, 15), "the gate's edges did not arrive"
        not_before(gate_a_ns + 600_000_000)
        pass2_ns = time.monotonic_ns()
        _pass(worker, pass2_ns)                         # lap 1 ends, lap 2 starts

        relay.cut()                                     # the Wi-Fi drops
        assert wait_until(lambda: not gate.link.connected.is_set(), 30)
        not_before(gate_a_ns + 1_300_000_000)
        gate_b_ns = gate_pass()                         # checkpoint of lap 2, while cut off
        assert wait_until(lambda: len([e for e in gate.store.events() if e["type"] == "beam"]) == 4, 10)
        assert len(at_finish()) == 2
        relay.restore()
        assert wait_until(lambda: len(at_finish()) == 4, 30), "events sent while cut off were lost"
        not_before(max(pass2_ns + 1_300_000_000, gate_b_ns + 600_000_000))
        _pass(worker, time.monotonic_ns())              # lap 2 ends

        def two_splits(state) -> bool:
            return state.results is not None and len(state.results.splits) == 2
        assert wait_until(lambda: two_splits(worker.state), 20), "\n".join(map(repr, worker.state.results.passes + worker.state.results.laps + worker.state.results.splits))
        splits = worker.state.results.splits
        assert [(s.bib, s.run, s.lap, s.gate) for s in splits] == [(7, 1, 1, "g200"), (7, 1, 2, "g200")]
        # Timed where the gate's beam was broken (at the torso, within the 150 ms break).
        assert splits[0].t_s == pytest.approx(worker.session.t_of(gate_a_ns) + 0.075, abs=0.08)
        assert splits[1].t_s == pytest.approx(worker.session.t_of(gate_b_ns) + 0.075, abs=0.08)
        lap1_start_s = worker.state.results.laps[0].start_s
        assert splits[0].split_s == pytest.approx(splits[0].t_s - lap1_start_s, abs=0.001)
        # Same edges, same spacing, on both Pis' logs: nothing lost, nothing twice, own times.
        here = [e for e in gate.store.events() if e["type"] == "beam"]
        there = at_finish()
        assert [e["broken"] for e in there] == [e["broken"] for e in here] == [True, False] * 2
        for a, b in ((0, 1), (1, 2), (2, 3)):
            assert there[b]["t"] - there[a]["t"] == pytest.approx(here[b]["t"] - here[a]["t"], abs=0.002)
        assert link.status()["repeats"] >= 0 and link.status()["rejected"] == 0
        # The cut is in the finish station's log as the gate's fault, opened and closed.
        faults = [(e["kind"], e["source"], e["active"]) for e in store.events() if e["type"] == "fault"]
        assert ("gate_offline", "g200", True) in faults and faults[-1] == ("gate_offline", "g200", False)
    finally:
        gate.stop()
        link.stop()
        worker.stop()
        store.close()
        relay.close()


def test_wrong_password_is_refused_and_nothing_is_taken(auth_broker, station, caplog):
    port, _ = auth_broker
    worker, store = station
    bridge = GateBridge(worker, "club", port=port, username="station", password="wrong").start()
    try:
        assert wait_until(lambda: "broker refused" in caplog.text, 15)
        assert not bridge.connected.is_set()
    finally:
        bridge.stop()


def test_a_camera_of_another_gate_is_refused(broker, station, caplog):
    import paho.mqtt.client as mqtt

    worker, store = station
    bridge = GateBridge(worker, "club", port=broker).start()
    raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="confused-gate")
    raw.connect("127.0.0.1", broker)
    raw.loop_start()
    try:
        assert wait_until(bridge.connected.is_set, 10)
        t = worker.now_s()
        for payload in (f'{{"t": {t:.4f}, "type": "tag", "camera": "finish-cam", "tag": 14}}',
                        f'{{"t": {t:.4f}, "type": "fault", "kind": "camera_missing", '
                        f'"source": "finish-cam", "active": true}}',
                        f'{{"t": {t:.4f}, "type": "beam", "gate": "g200", "broken": true}}'):
            raw.publish("station/club/events/g200", payload.encode(), qos=1).wait_for_publish(5)
        raw.publish("station/club/events/g999", f'{{"t": {t:.4f}, "type": "beam", "gate": "g999", '
                    f'"broken": true}}'.encode(), qos=1).wait_for_publish(5)
        assert wait_until(lambda: bridge.received + bridge.rejected == 4, 10)
        assert bridge.received == 1 and bridge.rejected == 3
        assert "gate 'g999' is not in this station's [[gates]]" in caplog.text
        assert "camera 'finish-cam' does not belong to gate 'g200'" in caplog.text
        assert "fault from 'finish-cam'" in caplog.text
    finally:
        raw.loop_stop()
        raw.disconnect()
        bridge.stop()


def test_gate_waits_for_its_clock_then_sends(broker, station):
    worker, store = station
    synced = [False]
    bridge = GateBridge(worker, "club", port=broker).start()
    gate = GatePublisher("club", "g200", "127.0.0.1", broker, synced=lambda: synced[0]).start()
    try:
        assert wait_until(lambda: gate.session is not None, 10)
        stamp = time.monotonic_ns()
        gate.submit("beam", stamp, gate="g200", broken=True)
        assert wait_until(lambda: gate.status()["waiting"] == 1, 10)
        status = gate.status()
        assert status["sent"] == 0 and not status["clock_synced"]
        assert _gate_events(store) == []
        synced[0] = True  # chrony has synchronised this Pi's clock
        assert wait_until(lambda: len(_gate_events(store)) == 1, 15)
        assert abs(_gate_events(store)[0]["t"] - worker.session.t_of(stamp)) < 0.005
    finally:
        gate.stop()
        bridge.stop()


def test_finish_clock_step_mid_session_changes_no_gate_time(broker, station):
    """A coach sets the finish Pi's clock an hour forward: the gate keeps the old origin until
    its own clock (chrony) has followed, so every event keeps its true session time."""
    worker, store = station
    real = time.time_ns() - time.monotonic_ns()
    finish_wall, gate_wall = [real], [real]
    bridge = GateBridge(worker, "club", port=broker, check_every_s=0.05,
                        wall_offset=lambda: finish_wall[0]).start()
    gate = GatePublisher("club", "g200", "127.0.0.1", broker,
                         wall_offset=lambda: gate_wall[0]).start()
    try:
        assert wait_until(lambda: gate.session is not None, 10)
        stamps = []

        def send() -> None:
            stamps.append(time.monotonic_ns())
            gate.submit("beam", stamps[-1], gate="g200", broken=len(stamps) % 2 == 1)
            assert wait_until(lambda: len(_gate_events(store)) == len(stamps), 10)

        send()
        finish_wall[0] += 3600 * 10**9                    # the coach's phone was an hour ahead
        assert wait_until(lambda: gate.status()["clock_step_pending"], 10)
        send()                                            # the gate's clock has not moved yet
        gate_wall[0] += 3600 * 10**9                      # chrony steps the gate's clock
        assert wait_until(lambda: not gate.status()["clock_step_pending"], 10)
        send()
        got = [ev["t"] for ev in _gate_events(store)]
        assert got == pytest.approx([worker.session.t_of(s) for s in stamps], abs=0.005)
    finally:
        gate.stop()
        bridge.stop()
