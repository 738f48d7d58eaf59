"""The dashboard in a real browser: headless Chromium (Debian's, through Playwright) at a
phone's viewport against the station served by waitress on 127.0.0.1, with a real store,
worker and engine. Simulated runs are submitted to the worker as sensors would."""

from __future__ import annotations

import csv
import io
import time
import shutil
import threading
from pathlib import Path

import pytest
from webkit import Station

from station.web import make_server, stop_server
from conftest import require

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    require(Path(CHROMIUM).exists(), "chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


class Served:
    """The dashboard of a station served by waitress in a thread; `stop`/`start` take it off
    the network and back (what a phone sees when the Wi-Fi drops)."""

    def __init__(self, st: Station):
        self.st = st
        self.port = 0
        self.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self):
        self.server = make_server(self.st.app, "127.0.0.1", self.port, threads=8)
        self.port = self.server.effective_port
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def stop(self):
        stop_server(self.server, self.st.app)
        self.thread.join(5)

    def __getattr__(self, name):
        return getattr(self.st, name)


@pytest.fixture
def served(tmp_path):
    st = Station(tmp_path)
    web = Served(st)
    yield web
    web.stop()
    st.close()


@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                  accept_downloads=True)
    yield context
    context.close()


def expect():
    from playwright.sync_api import expect as _expect
    return _expect


def test_a_pass_appears_live_on_every_open_phone(served, phone):
    board = phone.new_page()
    board.goto(served.url + "/")
    runner = phone.new_page()
    runner.goto(served.url + "/runner/7")
    expect()(board.locator("#live")).to_contain_text("Nobody has passed the line yet")
    expect()(runner.locator("#live")).to_contain_text("No laps yet")

    served.feed_scenario("solo-forward", seed=1, minutes=3)  # Ana runs two laps

    expect()(board.locator("table.board tbody tr")).to_contain_text("Ana", timeout=WAIT_MS)
    expect()(board.locator("table.board tbody tr td").nth(1)).to_have_text("2", timeout=WAIT_MS)
    expect()(runner.locator("table.laps tbody tr")).to_have_count(2, timeout=WAIT_MS)
    expect()(runner.locator(".chart svg rect.bar")).to_have_count(2)
    expect()(runner.locator(".track svg path.q.forward")).to_have_count(1)  # Q4, seen forward
    # Nothing reloaded: the live region was updated in place.
    assert board.evaluate("performance.getEntriesByType('navigation').length") == 1


def test_a_phone_that_lost_the_wifi_catches_up_by_itself(served, phone):
    page = phone.new_page()
    page.goto(served.url + "/runner/3")
    expect()(page.locator("#live")).to_contain_text("No laps yet")
    served.stop()  # the phone loses the station
    expect()(page.locator("#offline")).to_be_visible(timeout=WAIT_MS)
    served.feed_scenario("backward-spotted", seed=1, minutes=5)
    served.wait_laps(3, 2)
    served.start()  # back on the Wi-Fi: no reload, no tap
    expect()(page.locator("table.laps tbody tr")).to_have_count(2, timeout=WAIT_MS)
    expect()(page.locator("#offline")).to_be_hidden()
    expect()(page.locator(".strip i.backward").first).to_be_visible()
    expect()(page.locator(".track figcaption")).to_contain_text("backward in Q4")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1


def test_a_coach_sets_up_silences_an_alarm_corrects_a_lap_and_downloads_the_csv(served, phone):
    page = phone.new_page()
    page.goto(served.url + "/coach/")
    # First run: the console sends the coach to create a login (there is no default one).
    expect()(page).to_have_url(served.url + "/coach/setup")
    page.fill("#name", "kim")
    page.fill("#password", "track-secret-1")
    page.fill("#repeat", "track-secret-1")
    page.click("button.go")
    expect()(page).to_have_url(served.url + "/coach/")

    served.feed_scenario("spotter-dropout", seed=1, minutes=8, until_s=300)
    alarm = page.locator("#live li.alarm")
    expect()(alarm).to_contain_text("Bib 3", timeout=WAIT_MS)
    alarm.get_by_role("button", name="Silence").click()
    expect()(page.locator(".flash")).to_contain_text("Alarm silenced")
    expect()(page.locator("#live")).to_contain_text("No alarm.", timeout=WAIT_MS)

    # Correct a lap: delete Ben's second pass, which merges his first two laps into one.
    state = served.wait(lambda s: len([x for x in s.results.laps if x.bib == 3]) >= 2,
                        "two laps of Ben")
    ben_before = [x for x in state.results.laps if x.bib == 3]
    second = [p for p in state.results.passes if p.bibs == (3,)][1]
    t = f"{second.t_s:.3f}"
    row = page.locator(f'li[data-pass="finish@{t}"]')
    row.get_by_role("button", name="Delete").click()
    expect()(page.locator(f'li.deleted[data-pass="finish@{t}"]')).to_be_visible(timeout=WAIT_MS)
    after = served.wait(lambda s: len([x for x in s.results.laps if x.bib == 3])
                        == len(ben_before) - 1, "one lap fewer for Ben")
    ben_after = [x for x in after.results.laps if x.bib == 3]

    page.goto(served.url + "/coach/downloads/")
    with page.expect_download() as info:
        page.locator("section.card").first.get_by_role("link", name="laps.csv").click()
    download = info.value
    text = Path(download.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "bib,name,run,lap,start_s,end_s,lap_s,q1,q2,q3,q4,source"
    ben_rows = [r for r in rows if r["bib"] == "3"]
    assert [r["lap_s"] for r in ben_rows] == [f"{x.lap_s:.3f}" for x in ben_after]
    assert ben_rows[0]["start_s"] == f"{ben_before[0].start_s:.3f}"
    assert ben_rows[0]["end_s"] == f"{ben_before[1].end_s:.3f}"  # the merged lap
    assert all(r["name"] == "Ben" for r in ben_rows)

    # The login ends elsewhere (logged out on another phone, or expired): the open console
    # says so and links to the login, instead of "Reconnecting…" for ever.
    page.goto(served.url + "/coach/")
    expect()(page.locator("#live")).to_be_visible()
    phone.clear_cookies()
    # Somebody crosses the line: the console changes, so its held poll answers.
    t0_ns = time.monotonic_ns()
    served.worker.submit("beam", t0_ns, gate="finish", broken=True)
    served.worker.submit("beam", t0_ns + 150_000_000, gate="finish", broken=False)
    banner = page.locator("#offline")
    expect()(banner).to_contain_text("Logged out", timeout=WAIT_MS)
    assert "/coach/login?next=" in banner.locator("a").get_attribute("href")
