"""The dashboard's gates: Host allow-list, CSRF on every change, nothing changes on a GET,
cookie flags, escaping of runners' names, coach login (first run, no default password,
rate-limited attempts, safe redirects)."""

from __future__ import annotations

import orjson
import pytest
from webkit import EVIL_NAME, Station, csrf_of

from station.web import host_allowed
from station.web.auth import LoginLimiter


@pytest.fixture
def st(tmp_path):
    station = Station(tmp_path)
    yield station
    station.close()


def stored(st, kind: str) -> list[dict]:
    return [orjson.loads(line) for line in st.store.lines() if f'"type":"{kind}"' in line]


# -- Host header -----------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "station.local", "STATION.LOCAL.",
                                  "192.168.4.1", "10.0.0.2:8080", "[::1]:8080", "[fe80::1]"])
def test_known_host_names_and_ip_literals_are_served(st, host):
    assert st.client.get("/", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "localhost.evil.example",
                                  "station.local.attacker.net", "", "192.168.4.1.nip.io"])
def test_other_host_names_are_refused(st, host):
    resp = st.client.get("/", headers={"Host": host})
    assert resp.status_code == 421
    assert b"does not answer" in resp.data


def test_refused_host_cannot_post_either(st):
    token = st.csrf()
    resp = st.client.post("/checkin", data={"bib": "7", "csrf": token},
                          headers={"Host": "rebind.example"})
    assert resp.status_code == 421
    st.worker.submit_now("checkout", bib=1).wait(5)  # a marker: everything before it is stored
    assert stored(st, "checkin") == []


def test_host_allowed_unit():
    assert host_allowed("Station.Local:80", ("station.local",))
    assert not host_allowed("station.local.evil", ("station.local",))
    assert host_allowed("[2001:db8::1]:8080", ())


# -- CSRF and GET --------------------------------------------------------------------------

def test_post_without_or_with_a_wrong_csrf_token_changes_nothing(st):
    st.client.get("/checkin")  # a session exists, with a token
    assert st.client.post("/checkin", data={"bib": "7"}).status_code == 400
    assert st.client.post("/checkin", data={"bib": "7", "csrf": "forged"}).status_code == 400
    other = st.app.test_client()  # another browser's valid token is no good here
    token = csrf_of(other.get("/checkin").get_data(as_text=True))
    assert st.client.post("/checkin", data={"bib": "7", "csrf": token}).status_code == 400
    st.worker.submit_now("checkout", bib=1).wait(5)
    assert stored(st, "checkin") == []


def test_post_with_the_token_is_accepted(st):
    resp = st.client.post("/checkin", data={"bib": "7", "csrf": st.csrf()})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/runner/7")
    assert [e["bib"] for e in stored(st, "checkin")] == [7]
    st.wait(lambda s: 7 in s.results.checked_in, "bib 7 checked in")


def test_csrf_is_checked_before_login(st):
    """A forged POST to a coach action gets nowhere, even with a coach logged in."""
    st.setup_coach()
    st.feed_scenario("no-bib-solo", seed=1, minutes=5)
    st.wait(lambda s: s.results.passes, "a pass")
    t = f"{st.worker.state.results.passes[0].t_s:.3f}"
    resp = st.client.post("/coach/correct", data={"action": "delete", "gate": "finish", "pass_t": t})
    assert resp.status_code == 400
    st.worker.submit_now("checkout", bib=1).wait(5)
    assert stored(st, "correct") == []


@pytest.mark.parametrize("path", ["/checkin?bib=7", "/checkout?bib=7", "/coach/silence",
                                  "/coach/correct?action=delete&gate=finish&pass_t=7.0",
                                  "/coach/clock?wall=2030-01-01T00:00:00Z", "/coach/logout",
                                  "/coach/health/buzzer"])
def test_nothing_changes_on_a_get(st, path):
    st.setup_coach()
    before = st.store.count()
    resp = st.client.get(path)
    assert resp.status_code in (200, 405)
    st.worker.submit_now("checkout", bib=1).wait(5)
    assert st.store.count() == before + 1  # only the marker
    assert st.client.get("/coach/").status_code == 200  # still logged in


def test_session_cookie_is_httponly_and_samesite(st):
    resp = st.client.get("/checkin")
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_pages_forbid_outside_scripts_and_framing(st):
    headers = st.client.get("/").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"


# -- escaping ------------------------------------------------------------------------------

def test_runner_names_are_escaped_everywhere(st):
    st.setup_coach()
    st.client.post("/checkin", data={"bib": "9", "csrf": st.csrf()})
    st.wait(lambda s: 9 in s.results.checked_in, "bib 9 checked in")
    st.feed_scenario("no-bib-solo", seed=1, minutes=5, start_now=True)  # solo-credited to 9
    st.wait(lambda s: any(9 in p.bibs for p in s.results.passes), "a pass for bib 9")
    escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
    shown_on = ["/", "/runner/9", "/checkin", "/coach/", "/coach/roster", "/live/board",
                "/live/console"]
    for path in shown_on + ["/live/runner?arg=9", "/coach/downloads/"]:
        resp = st.client.get(path)
        html = resp.json["html"] if resp.is_json else resp.get_data(as_text=True)
        assert EVIL_NAME not in html, path
        if path in shown_on:
            assert escaped in html, path


# -- coach login ----------------------------------------------------------------------------

def test_first_run_asks_for_a_coach_login_and_there_is_no_default(st):
    assert not st.store.users_exist()
    resp = st.client.get("/coach/")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/coach/setup")
    resp = st.client.post("/coach/login", data={"name": "admin", "password": "admin",
                                                "csrf": st.csrf()})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/coach/setup")
    assert st.client.get("/coach/roster").status_code == 302


def test_setup_checks_the_password_then_closes(st):
    token = st.csrf("/coach/setup")
    resp = st.client.post("/coach/setup", data={"name": "kim", "password": "short",
                                                "repeat": "short", "csrf": token})
    assert resp.status_code == 400 and b"at least 8" in resp.data
    resp = st.client.post("/coach/setup", data={"name": "kim", "password": "long-enough",
                                                "repeat": "different!", "csrf": token})
    assert resp.status_code == 400 and b"differ" in resp.data
    assert not st.store.users_exist()
    st.setup_coach("kim", "long-enough")
    user = st.store.get_user("kim")
    assert user["password_hash"] != "long-enough" and user["password_hash"].startswith("scrypt:")
    # Setup is closed now: another phone cannot create a second "first" coach.
    other = st.app.test_client()
    page = other.get("/coach/setup")
    assert page.status_code == 302 and page.headers["Location"].endswith("/coach/login")
    token = csrf_of(other.get("/checkin").get_data(as_text=True))
    other.post("/coach/setup", data={"name": "eve", "password": "eve-password",
                                     "repeat": "eve-password", "csrf": token})
    assert st.store.get_user("eve") is None


def login(client, name, password, remote="10.0.0.5"):
    token = csrf_of(client.get("/coach/login").get_data(as_text=True))
    return client.post("/coach/login", data={"name": name, "password": password, "csrf": token},
                       environ_base={"REMOTE_ADDR": remote})


def test_login_logout_and_wrong_password(st):
    st.setup_coach("kim", "track-secret-1")
    coach = st.app.test_client()
    assert login(coach, "kim", "wrong-password").status_code == 401
    assert coach.get("/coach/").status_code == 302
    resp = login(coach, "kim", "track-secret-1")
    assert resp.status_code == 302
    assert coach.get("/coach/").status_code == 200
    token = csrf_of(coach.get("/coach/").get_data(as_text=True))
    coach.post("/coach/logout", data={"csrf": token})
    assert coach.get("/coach/").status_code == 302


def test_login_attempts_are_rate_limited_per_client(st):
    st.setup_coach("kim", "track-secret-1")
    guesser = st.app.test_client()
    for _ in range(5):
        assert login(guesser, "kim", "guess", remote="10.0.0.66").status_code == 401
    # Locked out now, even with the right password.
    resp = login(guesser, "kim", "track-secret-1", remote="10.0.0.66")
    assert resp.status_code == 429 and b"Too many failed attempts" in resp.data
    assert guesser.get("/coach/").status_code == 302
    # The coach on another phone is not locked out.
    assert login(st.app.test_client(), "kim", "track-secret-1", remote="10.0.0.7").status_code == 302


def test_login_limiter_window_and_overall_cap():
    now = [0.0]
    limiter = LoginLimiter(per_client=3, overall=5, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        limiter.failed("a")
    assert limiter.retry_after_s("a") == pytest.approx(60)
    assert limiter.retry_after_s("b") == 0
    now[0] = 30.0
    assert limiter.retry_after_s("a") == pytest.approx(30)
    limiter.failed("b")
    limiter.failed("c")  # five failures in the window from anywhere: everyone waits
    assert limiter.retry_after_s("d") > 0
    now[0] = 61.0
    assert limiter.retry_after_s("a") == 0 and limiter.retry_after_s("d") == 0


@pytest.mark.parametrize("target", [
    "//evil.example/x",
    "/%09/evil.example",      # browsers drop the tab: //evil.example
    "/%0d%0aSet-Cookie:x=1",  # a newline cannot go in a header (was a 500)
    "/\\evil.example",
])
def test_login_never_redirects_off_the_station(st, target):
    st.setup_coach("kim", "track-secret-1")
    coach = st.app.test_client()
    token = csrf_of(coach.get("/coach/login").get_data(as_text=True))
    resp = coach.post(f"/coach/login?next={target}",
                      data={"name": "kim", "password": "track-secret-1", "csrf": token})
    assert resp.status_code == 302 and resp.headers["Location"] == "/coach/"


def test_a_locked_out_login_says_when_to_try_again(st):
    st.setup_coach("kim", "track-secret-1")
    guesser = st.app.test_client()
    for _ in range(5):
        login(guesser, "kim", "guess", remote="10.0.0.66")
    resp = login(guesser, "kim", "guess", remote="10.0.0.66")
    assert resp.status_code == 429 and 1 <= int(resp.headers["Retry-After"]) <= 301


def test_a_wrong_method_names_the_allowed_one(st):
    resp = st.client.get("/coach/logout")
    assert resp.status_code == 405 and resp.headers["Allow"].split(", ").count("POST") == 1
    assert b"405" in resp.data and b"station.css" in resp.data  # the station's own page


@pytest.mark.parametrize("path", [
    "/coach/downloads/laps.csv?session=\uff11",     # a full-width 1 (was a 500)
    "/coach/downloads/laps.csv?bib=\u00b2",         # a superscript 2
    "/coach/roster/bibs.pdf?bib=\uff13",
    "/coach/photo/1/finish/1e308.jpg",              # a file name too long (was a 500)
    "/coach/photo/1/finish/nan.jpg",
    "/coach/photo/1/finish/-5.jpg",
])
def test_odd_numbers_in_urls_are_refused_not_a_crash(st, path):
    st.setup_coach()
    assert st.client.get(path).status_code in (400, 404)


def test_a_bug_in_a_view_is_a_styled_page_and_names_no_internals(tmp_path):
    station = Station(tmp_path)
    try:
        station.app.testing = False  # as served: exceptions become the 500 page

        @station.app.route("/boom")
        def boom():
            raise RuntimeError("secret detail")

        resp = station.client.get("/boom")
        assert resp.status_code == 500 and b"Laps and everything recorded are safe" in resp.data
        assert b"secret detail" not in resp.data
    finally:
        station.close()


def test_coach_pages_and_live_console_need_a_login(st):
    st.setup_coach()
    anon = st.app.test_client()
    for path in ["/coach/", "/coach/roster", "/coach/settings", "/coach/health",
                 "/coach/downloads/", "/coach/downloads/laps.csv", "/coach/downloads/events.jsonl",
                 "/coach/roster.csv"]:
        resp = anon.get(path)
        assert resp.status_code == 302 and "/coach/login" in resp.headers["Location"], path
    assert anon.get("/live/console").status_code == 403
    token = csrf_of(anon.get("/checkin").get_data(as_text=True))
    resp = anon.post("/coach/silence", data={"csrf": token})
    assert resp.status_code == 302 and "/coach/login" in resp.headers["Location"]
