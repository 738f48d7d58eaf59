"""Many phones on one station: starts `station run --simulate` (simulated runners, beams and
cameras) in its own process, then loads its dashboard with simulated phones on loopback for a
bounded time and prints latency, errors and the station's memory.

Each phone behaves like the dashboard's own script: it keeps one long-poll open on a live
fragment (the board, or its runner's page) with the hash it holds, and every few seconds
loads a page with its stylesheet and script on a second keep-alive connection.

Figures:
- page loads: time to fetch a page, /static files and an immediate live answer;
- live delivery: for every change, how long after the first phone each other phone had it
  (the fan-out delay of one pass to every open phone);
- errors: failed requests and non-200 answers; memory: the station's peak RSS.

    python bench/phones_bench.py --phones 50 --seconds 30
Target (issue 4): 50 phones, p95 < 100 ms, no errors, station memory < 150 MB.

Memory, measured here (2 cores, demo at 4x, camera on): peak RSS 194 MB when the photo ring
held 200 raw 480-px frames (77 MB); 117 MB since it holds them as ~23 KB JPEGs (5.5 MB).
The rest: Python + numpy + OpenCV + Flask loaded ~60 MB, the station without camera ~72 MB,
frames in flight and OpenCV's buffers ~20 MB, 50 phones ~5 MB.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


class Results:
    def __init__(self):
        self.lock = threading.Lock()
        self.page_ms: list[float] = []
        self.errors: list[str] = []
        self.first_seen: dict[str, float] = {}   # hash -> first time any phone had it
        self.seen: list[tuple[str, float]] = []  # (hash, time) for each phone's delivery
        self.polls = 0
        self.busy = 0

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)


class Phone(threading.Thread):
    def __init__(self, n: int, port: int, stop: threading.Event, res: Results, bibs: list[int],
                 page_every_s: float):
        super().__init__(daemon=True, name=f"phone-{n}")
        self.port, self.stop_ev, self.res = port, stop, res
        self.rng = random.Random(n)
        bib = self.rng.choice(bibs) if bibs and n % 2 else None
        self.live = f"/live/runner?arg={bib}" if bib else "/live/board"
        self.page = f"/runner/{bib}" if bib else "/"
        self.page_every_s = page_every_s
        self.pages = threading.Thread(target=self._pages, daemon=True)

    def _conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=40)

    def _get(self, conn, path: str):
        conn.request("GET", path, headers={"Host": "localhost"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}")
        return body

    def run(self):
        self.pages.start()
        conn, h = self._conn(), ""
        while not self.stop_ev.is_set():
            try:
                sep = "&" if "?" in self.live else "?"
                j = json.loads(self._get(conn, f"{self.live}{sep}h={h}"))
                now = time.monotonic()
                with self.res.lock:
                    self.res.polls += 1
                    if j["html"] is not None:
                        self.res.first_seen.setdefault(j["h"], now)
                        self.res.seen.append((j["h"], now))
                    if j["retry_ms"]:
                        self.res.busy += 1
                h = j["h"]
                if j["retry_ms"]:
                    self.stop_ev.wait(j["retry_ms"] / 1000)
            except Exception as exc:
                if self.stop_ev.is_set():
                    break
                self.res.error(f"live: {exc!r}")
                conn.close()
                conn = self._conn()
                self.stop_ev.wait(1)
        conn.close()

    def _pages(self):
        conn = self._conn()
        self.stop_ev.wait(self.rng.uniform(0, self.page_every_s))
        while not self.stop_ev.is_set():
            try:
                for path in (self.page, "/static/station.css", "/static/station.js",
                             self.live + ("&" if "?" in self.live else "?") + "h=x"):
                    t0 = time.perf_counter()
                    self._get(conn, path)
                    with self.res.lock:
                        self.res.page_ms.append((time.perf_counter() - t0) * 1000)
            except Exception as exc:
                if self.stop_ev.is_set():
                    break
                self.res.error(f"page: {exc!r}")
                conn.close()
                conn = self._conn()
            self.stop_ev.wait(self.rng.uniform(0.5, 1.5) * self.page_every_s)
        conn.close()


def start_station(args, data_dir: str):
    cmd = [sys.executable, "-m", "station", "run", "--simulate", "--port", "0", "--data",
           data_dir, "--speed", str(args.speed), "--log-level", "WARNING"]
    if args.scenario:
        cmd += ["--scenario", args.scenario]
    if args.no_camera:
        cmd.append("--no-camera")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.search(r"http://[^:]+:(\d+)/", line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise SystemExit("the station did not start (no dashboard URL printed)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--phones", type=int, default=50)
    p.add_argument("--seconds", type=float, default=30, help="how long to load it (max 300)")
    p.add_argument("--page-every", type=float, default=5.0, metavar="S",
                   help="each phone loads a page about this often")
    p.add_argument("--speed", type=float, default=4.0, help="simulated world speed")
    p.add_argument("--scenario", help="simulated session (default: the station's demo)")
    p.add_argument("--no-camera", action="store_true", help="station without camera frames")
    args = p.parse_args(argv)
    args.phones = max(1, min(args.phones, 500))
    args.seconds = max(1.0, min(args.seconds, 300.0))

    with tempfile.TemporaryDirectory(prefix="phones-bench-") as data:
        proc, port = start_station(args, data)
        try:
            res = Results()
            stop = threading.Event()
            # Wait for the first runners, so phones have bibs to follow.
            bibs: list[int] = []
            deadline = time.monotonic() + 30
            while not bibs and time.monotonic() < deadline:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/live/board", headers={"Host": "localhost"})
                html = json.loads(conn.getresponse().read())["html"]
                conn.close()
                bibs = sorted({int(b) for b in re.findall(r'href="/runner/(\d+)"', html)})
                if not bibs:
                    time.sleep(0.5)
            rss_idle = rss_mb(proc.pid)
            phones = [Phone(i, port, stop, res, bibs, args.page_every) for i in range(args.phones)]
            for ph in phones:
                ph.start()
            peak = rss_idle
            t_end = time.monotonic() + args.seconds
            while time.monotonic() < t_end:
                peak = max(peak, rss_mb(proc.pid))
                time.sleep(0.5)
            stop.set()
            for ph in phones:
                ph.join(25)
                ph.pages.join(5)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    fan = [t - res.first_seen[h] for h, t in res.seen if h in res.first_seen]
    fan_ms = [x * 1000 for x in fan]
    print(f"phones: {args.phones}  time: {args.seconds:.0f} s  scenario: "
          f"{args.scenario or 'demo'} at {args.speed:g}x  camera: "
          f"{'off' if args.no_camera else 'on'}  runners on the board: {len(bibs)}")
    print(f"page loads: {len(res.page_ms)} requests  p50 {pct(res.page_ms, 50):.1f} ms  "
          f"p95 {pct(res.page_ms, 95):.1f} ms  max {max(res.page_ms, default=float('nan')):.1f} ms")
    print(f"live: {res.polls} polls, {len(res.seen)} updates delivered, "
          f"{res.busy} told to retry (waiters full)")
    print(f"live fan-out delay behind the first phone: p50 {pct(fan_ms, 50):.1f} ms  "
          f"p95 {pct(fan_ms, 95):.1f} ms  max {max(fan_ms, default=float('nan')):.1f} ms")
    print(f"errors: {len(res.errors)}" + (f"  first: {res.errors[0]}" if res.errors else ""))
    print(f"station memory (RSS): {rss_idle:.0f} MB before phones, peak {peak:.0f} MB")
    if res.page_ms:
        print(f"mean page load {statistics.mean(res.page_ms):.1f} ms")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
