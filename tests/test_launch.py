"""`station run --simulate`: the whole station as systemd starts it. READY only once the
dashboard answers, watchdog pings while healthy, laps from the simulated world (mock beam
pins, rendered camera frames, real detector and engine) visible over HTTP, a clean stop on
SIGTERM, and the shown laps in the exported log."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from station import cli
from station.engine import Engine
from station.events import iter_lines
from station.notify import Notifier

DEADLINE_S = 90.0

pytestmark = pytest.mark.slow


class NotifySocket:
    """A stand-in for systemd's notification socket: a thread collects what it receives."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []
        self.cond = threading.Condition()
        self.closed = False
        self.sock.settimeout(0.2)  # so close() can end the collector
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self) -> None:
        while not self.closed:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            with self.cond:
                self.messages.append(data.decode())
                self.cond.notify_all()

    def wait_for(self, line: str, deadline: float) -> None:
        with self.cond:
            if not self.cond.wait_for(
                    lambda: any(line in m.split("\n") for m in self.messages),
                    deadline - time.monotonic()):
                pytest.fail(f"no {line} from the station; got {self.messages[-5:]}")

    def close(self) -> None:
        self.closed = True
        self.thread.join(5)
        self.sock.close()


def test_notifier_speaks_the_sd_notify_protocol(tmp_path, monkeypatch):
    box = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", box.path)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    n = Notifier()
    assert n.ready("up") and n.watchdog() and n.status("3 laps")
    deadline = time.monotonic() + 5
    box.wait_for("WATCHDOG=1", deadline)
    box.wait_for("STATUS=3 laps", deadline)
    assert box.messages[0] == "READY=1\nSTATUS=up"
    assert Notifier.watchdog_interval_s() == 15.0
    assert not Notifier(address="").ready()  # not under systemd: silently nothing
    box.close()


def get(url: str, timeout_s: float = 30.0):
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return resp.status, resp.read()


def test_simulated_station_runs_end_to_end(tmp_path):
    box = NotifySocket(tmp_path / "notify")
    env = dict(os.environ, NOTIFY_SOCKET=box.path, WATCHDOG_USEC="1000000", PYTHONUNBUFFERED="1")
    env.pop("WATCHDOG_PID", None)
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "station", "run", "--simulate", "--scenario", "indoor-200",
         "--speed", "5", "--port", "0", "--data", str(data), "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    stderr: list[str] = []
    threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True).start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        box.wait_for("READY=1", deadline)
        url = re.search(r"dashboard at (http://\S+)", proc.stdout.readline()).group(1)
        status, page = get(url)  # READY means the dashboard already answers
        assert status == 200 and b"<html" in page.lower()

        # Follow the live board as a phone does, until a runner has a lap.
        have, laps, bib = "", 0, None
        while laps < 1:
            assert time.monotonic() < deadline, f"no lap on the board; stderr: {''.join(stderr)}"
            _, body = get(f"{url}live/board?h={have}&wait=10")
            answer = json.loads(body)
            have = answer["h"]
            if answer["html"]:
                rows = re.findall(r'<b class="bib">(\d+)</b>.*?<td class="n">(\d+)</td>',
                                  answer["html"], re.S)
                bib, laps = max(((int(b), int(n)) for b, n in rows), key=lambda r: r[1],
                                default=(None, 0))
        box.wait_for("WATCHDOG=1", deadline)  # pinged while the worker is healthy
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"no clean stop within 30 s of SIGTERM: {''.join(stderr)}")
    assert rc == 0, "".join(stderr)
    box.wait_for("STOPPING=1", time.monotonic() + 5)
    assert "Traceback" not in "".join(stderr), "".join(stderr)
    box.close()

    # What the station showed is in its log: a replay of the export has the lap too.
    out = tmp_path / "events.jsonl"
    assert cli.main(["export", "--data", str(data), "--out", str(out)]) == 0
    from station.sim.scenarios import build
    from station.launch import simulated_config
    config = simulated_config(build("indoor-200", seed=0).config)
    engine = Engine(config)
    lines = out.read_bytes().splitlines()
    for ev in iter_lines(lines):
        engine.feed(ev)
    engine.finish()
    replayed = [lap for lap in engine.results().laps if lap.bib == bib]
    assert len(replayed) >= laps
    types = {ev["type"] for ev in iter_lines(lines)}
    assert {"start", "beam", "tag"} <= types  # the mock pins and the rendered frames both ran


def test_phone_clock_goes_through_station_clock_service_unless_simulating(tmp_path):
    """`web.set_system_clock` gives the dashboard a setter that writes the request file
    station-clock.path watches (the hardened station cannot set the clock itself); a
    simulation never touches the clock, and without the setting nothing is offered."""
    from station.clock_request import REQUEST_NAME
    from station.config import loads_config
    from station.launch import make_hooks
    from station.store import Store

    toml = "[track]\nlength_m = 400\n[[gates]]\nid = 'finish'\nposition_m = 0\n"
    store = Store(tmp_path)
    try:
        on = loads_config(toml + "[web]\nset_system_clock = true\n")
        hooks = make_hooks(on, store, None, None, simulate=False)
        hooks.set_clock("2026-05-02T09:30:00.000Z")
        request = json.loads((tmp_path / REQUEST_NAME).read_text())
        assert request["wall"] == "2026-05-02T09:30:00.000Z"
        assert make_hooks(on, store, None, None, simulate=True).set_clock is None
        assert make_hooks(loads_config(toml), store, None, None).set_clock is None
    finally:
        store.close()
