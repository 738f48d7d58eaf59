"""Issue 5, item 3: the station process is killed with SIGKILL at random moments while events
stream in; every event it acknowledged as stored is there afterwards and the database passes
`PRAGMA integrity_check`.

The process is the real worker and store (`python -m station.worker`): it stamps each line it
reads like a sensor callback, and prints the event back only once it is durable. Each round
restarts it on the same database (in the same boot, so it continues the same session) and
kills it after a random number of acknowledgements, sometimes before it is even ready.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import orjson
import pytest

from station.store import DB_NAME

ROUNDS = 100
DEADLINE_S = 20.0
IN_FLIGHT = 300

pytestmark = pytest.mark.slow


class Round:
    """One run of the station process: a writer thread streams events into its stdin, a
    reader thread collects what it acknowledges."""

    def __init__(self, data_dir, first_n: int):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "station.worker", "--data", str(data_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.acked: list[bytes] = []
        self.ready = False
        self.cond = threading.Condition()
        self.next_n = self.first_n = first_n
        self._threads = [threading.Thread(target=self._write, daemon=True),
                         threading.Thread(target=self._read, daemon=True)]
        for th in self._threads:
            th.start()

    def _write(self) -> None:
        broken = False
        try:
            while True:
                # Keep a few hundred events in flight, like sensors that do not wait for the
                # disk, without letting the database grow for nothing.
                with self.cond:
                    self.cond.wait_for(lambda: self.next_n - self.first_n - len(self.acked)
                                       < IN_FLIGHT or self.proc.poll() is not None, 1.0)
                chunk = []
                for _ in range(random.randint(1, 30)):
                    self.next_n += 1
                    broken = not broken
                    chunk.append(orjson.dumps({"type": "beam", "gate": "finish",
                                               "broken": broken, "n": self.next_n}) + b"\n")
                self.proc.stdin.write(b"".join(chunk))
                self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # killed

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.cond:
                if line.startswith(b'{"ready"'):
                    self.ready = True
                elif line.endswith(b"\n"):  # a line cut by the kill was not acknowledged
                    self.acked.append(line.rstrip(b"\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, predicate) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, DEADLINE_S)

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait(DEADLINE_S)
        for th in self._threads:
            th.join(DEADLINE_S)
        try:
            self.proc.stdin.close()
        except OSError:
            pass  # what the writer had buffered cannot reach a dead process
        self.proc.stdout.close()
        self.stderr = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()
        return rc


def kill_loop(data_dir, rounds: int, seed: int) -> tuple[list[bytes], int]:
    """Start, stream, SIGKILL, `rounds` times on one database; returns every acknowledged
    line and how many kills hit while events were streaming."""
    rng = random.Random(seed)
    acked: list[bytes] = []
    kills_while_streaming = 0
    next_n = 0
    for i in range(rounds):
        run = Round(data_dir, next_n)
        moment = rng.random()
        if moment < 0.1:
            pass  # at once: while it starts, opens the database, rebuilds
        elif moment < 0.2:
            assert run.wait_for(lambda: run.ready or run.proc.poll() is not None)
        else:
            want = rng.randint(1, 100)
            assert run.wait_for(lambda: len(run.acked) >= want or run.proc.poll() is not None), \
                f"round {i}: only {len(run.acked)} acks before the deadline"
            kills_while_streaming += 1
        assert run.kill() == -signal.SIGKILL, f"round {i} exited by itself:\n{run.stderr}"
        assert "Traceback" not in run.stderr, run.stderr
        acked.extend(run.acked)
        next_n = run.next_n + 1
    return acked, kills_while_streaming


def check_database(data_dir, acked: list[bytes]) -> int:
    db = sqlite3.connect(data_dir / DB_NAME)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {line.encode() for (line,) in db.execute("SELECT line FROM events")}
        missing = [a for a in acked if a not in stored]
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
        # Every restart was in the same boot: one session, one start event, no seq gaps.
        assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1
        assert db.execute("SELECT count(*) FROM events WHERE type = 'start'").fetchone()[0] == 1
        n, top = db.execute("SELECT count(*), max(seq) FROM events").fetchone()
        assert n == top
        return len(stored)
    finally:
        db.close()


def test_sigkill_at_random_loses_no_acknowledged_event(tmp_path):
    # Two stations (two databases) side by side, ROUNDS // 2 kills each: the same test in
    # half the wall time on two cores.
    started = time.monotonic()
    dirs = [tmp_path / "a", tmp_path / "b"]
    results: dict[int, tuple] = {}

    def loop(i: int) -> None:
        try:
            results[i] = kill_loop(dirs[i], ROUNDS // 2, seed=20261121 + i)
        except BaseException as exc:  # handed to the test thread
            results[i] = exc

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i in range(2):
        if isinstance(results[i], BaseException):
            raise results[i]
    acked = [line for i in range(2) for line in results[i][0]]
    kills_while_streaming = sum(results[i][1] for i in range(2))
    stored = sum(check_database(dirs[i], results[i][0]) for i in range(2))
    assert kills_while_streaming >= 70 and len(acked) > 2000
    print(f"\n{ROUNDS} kills ({kills_while_streaming} while streaming), {len(acked)} "
          f"acknowledged events, {stored} stored, {time.monotonic() - started:.1f} s")
