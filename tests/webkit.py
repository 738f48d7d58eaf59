"""Helpers for the dashboard tests: a real station (SQLite store in tmp_path, worker with the
real engine, Flask app) fed with simulated or example event logs, and form helpers.

Nothing here fakes the station: events go through `worker.submit` exactly as sensors' do.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from station.config import loads_config
from station.events import read_log
from station.store import Store
from station.web import Hooks, create_app
from station.worker import Worker

DEADLINE_S = 20.0
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "examples"

# The examples' station, plus a runner whose name is an attack on the page.
EVIL_NAME = "<script>alert('x')</script>"
STATION_TOML = f"""
[station]
id = "web-test"

[track]
length_m = 400

[[gates]]
id = "finish"
position_m = 0

[[cameras]]
id = "finish-cam"
gate = "finish"
covers_m = [370, 400]
looks = "oncoming"

[[runners]]
bib = 3
name = "Ben"

[[runners]]
bib = 4
name = "Cleo"

[[runners]]
bib = 7
name = "Ana"

[[runners]]
bib = 9
name = "{EVIL_NAME}"
"""


class Station:
    """A running station for one test: `.config .store .worker .app .client`."""

    def __init__(self, tmp_path: Path, toml: str = STATION_TOML, hooks: Hooks | None = None,
                 past_s: float = 1000.0):
        self.config_path = tmp_path / "station.toml"
        self.config_path.write_text(toml)
        self.config = loads_config(toml)
        self.store = Store(tmp_path / "data")
        # The session began `past_s` ago, so the simulated runs fed below lie in the past,
        # as sensor events do, and a coach's correction (stamped now) comes after them.
        self.store.begin_session(self.config.station_id,
                                 now_ns=time.monotonic_ns() - int(past_s * 1e9))
        self.worker = Worker(self.config, self.store).start()
        self.app = create_app(self.worker, self.store, self.config, config_path=self.config_path,
                              hooks=hooks, testing=True)
        self.client = self.app.test_client()

    def close(self):
        self.worker.stop()
        self.store.close()

    # -- feeding the station -------------------------------------------------------------

    def feed(self, events, until_s: float | None = None, start_now: bool = False) -> int:
        """Submit events as sensors would (monotonic stamps on the session clock). The log's
        times are session times, or (`start_now`) times from now on."""
        origin = self.worker.session.origin_ns
        if start_now:
            origin = time.monotonic_ns()
        n = 0
        for ev in events:
            if ev["type"] == "start" or (until_s is not None and ev["t"] >= until_s):
                continue
            ev = dict(ev)
            t_ns = origin + round(ev.pop("t") * 1e9)
            self.worker.submit(ev.pop("type"), t_ns, **ev)
            n += 1
        # Pages are looked at once the station has taken everything in: an alarm seen
        # half-way through the feed may be cleared by a later event of the same feed.
        assert self.worker.flush().wait(DEADLINE_S), "the worker did not take in the feed"
        return n

    def feed_example(self, name: str, until_s: float | None = None, start_now=False) -> int:
        return self.feed(read_log(EXAMPLES / name / "events.jsonl"), until_s, start_now)

    def feed_scenario(self, name: str, seed: int, minutes: float, until_s: float | None = None,
                      start_now: bool = False):
        from station.sim.scenarios import build
        from station.sim.sensors import iter_events

        scenario = build(name, seed=seed, minutes=minutes)
        return self.feed(iter_events(scenario.world, scenario.sensors, seed), until_s, start_now)

    def wait_laps(self, bib: int, n: int):
        """The state once bib has exactly `n` laps (so pages fetched now show those)."""
        return self.wait(lambda s: len([x for x in s.results.laps if x.bib == bib]) == n,
                         f"{n} laps of bib {bib}")

    def wait(self, predicate, what: str):
        """The first state for which predicate(state) holds, within the deadline."""
        deadline = time.monotonic() + DEADLINE_S
        state = self.worker.state
        while not (state.results is not None and predicate(state)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            state = self.worker.wait_for_change(state.version, left)
        return state

    # -- using the dashboard ---------------------------------------------------------------

    def csrf(self, path: str = "/checkin") -> str:
        return csrf_of(self.client.get(path).get_data(as_text=True))

    def setup_coach(self, name: str = "kim", password: str = "track-secret-1"):
        token = self.csrf("/coach/setup")
        resp = self.client.post("/coach/setup", data={"name": name, "password": password,
                                                      "repeat": password, "csrf": token})
        assert resp.status_code == 302, resp.get_data(as_text=True)
        return name, password

    def post(self, path: str, data: dict, page: str = "/coach/"):
        return self.client.post(path, data={**data, "csrf": self.csrf(page)})


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def example_config(name: str) -> str:
    return (EXAMPLES / name / "station.toml").read_text()
