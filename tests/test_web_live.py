"""Runners' pages and live updates: the board and runner pages show what the engine
concluded; a long-poll returns as soon as its fragment changes, at once for a phone that
comes back with an old hash, and never pins more threads than allowed; check-in works
without a login and refuses bad numbers."""

from __future__ import annotations

import threading
import time

import pytest
from webkit import Station

from station.web import live


@pytest.fixture
def st(tmp_path):
    station = Station(tmp_path)
    yield station
    station.close()


def laps_of(state, bib):
    return [lap for lap in state.results.laps if lap.bib == bib]


def test_board_and_runner_page_show_the_engines_laps(st):
    st.feed_scenario("solo-forward", seed=1, minutes=5)
    laps = laps_of(st.wait_laps(7, 3), 7)  # all the laps of this run (a replay gives 3)
    board = st.client.get("/").get_data(as_text=True)
    assert "Ana" in board and '<a href="/runner/7">' in board
    page = st.client.get("/runner/7").get_data(as_text=True)
    from station.web.views import fmt_s
    for lap in laps:
        assert f">{fmt_s(lap.lap_s)}</td>" in page
    # The quarter strip: the finish camera watches Q4, so Q4 is forward, the rest unseen.
    assert '<i class="forward">F</i>' in page and '<i class="unobserved">' in page
    assert '<i class="backward">' not in page.split('class="legend"')[0]
    assert "<svg" in page and 'aria-label="Lap times' in page  # the chart is drawn
    assert f"{len(laps) * 400 / 1000:.1f} km" in page or f"{len(laps) * 400:.0f} m" in page


def test_backward_quarters_show_on_the_strip_diagram_and_totals(st):
    st.feed_scenario("backward-spotted", seed=1, minutes=5)
    state = st.wait_laps(3, 2)
    n_back = sum(lap.q4 == "backward" for lap in laps_of(state, 3))
    assert n_back >= 1
    page = st.client.get("/runner/3").get_data(as_text=True)
    assert '<i class="backward">B</i>' in page
    assert 'class="q backward"' in page  # the track diagram marks Q4
    assert "backward in Q4" in page
    assert f"<b>{n_back * 100:.0f} m</b><span>backward</span>" in page


def test_a_runner_page_for_a_bib_that_does_not_exist(st):
    assert st.client.get("/runner/0").status_code == 404
    assert st.client.get("/runner/293").status_code == 404
    resp = st.client.get("/runner?bib=abc")
    assert resp.status_code == 302


def test_long_poll_answers_as_soon_as_the_fragment_changes(st):
    first = st.client.get("/live/board").json
    assert "Nobody has passed" in first["html"]
    answer = {}

    def wait_for_change():
        answer["json"] = st.app.test_client().get(f"/live/board?h={first['h']}").json

    waiter = threading.Thread(target=wait_for_change)
    waiter.start()
    st.feed_scenario("solo-forward", seed=1, minutes=3)
    waiter.join(live.HOLD_S + 5)
    assert not waiter.is_alive()
    got = answer["json"]
    assert got["h"] != first["h"] and "Ana" in got["html"]


def test_a_phone_coming_back_with_an_old_hash_catches_up_at_once(st):
    old = st.client.get("/live/runner?arg=7").json
    st.feed_scenario("solo-forward", seed=1, minutes=5)
    st.wait(lambda s: len(laps_of(s, 7)) >= 2, "two laps")
    back = st.client.get(f"/live/runner?arg=7&h={old['h']}&wait=0").json
    assert back["html"] is not None and 'data-laps="' in back["html"]
    assert 'data-laps="0"' not in back["html"]


def test_an_unchanged_fragment_is_not_sent_again(st):
    current = st.client.get("/live/board").json
    again = st.client.get(f"/live/board?h={current['h']}&wait=0.2").json
    assert again["html"] is None and again["h"] == current["h"]
    assert again["now_s"] >= current["now_s"]  # the clock for the page's ticking timers


def test_waiting_polls_are_capped_so_pages_still_load(st):
    live.configure_waiters(st.app, threads=live.RESERVED_THREADS + 1)  # room for one waiter
    h = st.client.get("/live/board").json["h"]
    holder_done = threading.Event()

    def hold():
        st.app.test_client().get(f"/live/board?h={h}&wait=10")
        holder_done.set()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        # Once the holder waits in the one slot, another poll is told to come back later
        # (wait=0: a poll that gets the slot answers at once too, so this loop never blocks).
        deadline = time.monotonic() + 10
        while True:
            answer = st.client.get(f"/live/board?h={h}&wait=0").json
            if answer["retry_ms"] > 0 or time.monotonic() > deadline:
                break
        assert answer["retry_ms"] == live.BUSY_RETRY_MS and answer["html"] is None
        assert st.client.get("/").status_code == 200
    finally:
        st.worker.submit_now("checkin", bib=5)  # a change releases the holder
        holder.join(15)
    assert holder_done.is_set()


def test_unknown_live_fragment_and_bad_argument(st):
    assert st.client.get("/live/nothing").status_code == 404
    assert st.client.get("/live/runner?arg=x").status_code == 400


def test_check_in_without_a_bib_credits_the_solo_runners_passes(st):
    resp = st.client.post("/checkin", data={"bib": "9", "csrf": st.csrf()})
    assert resp.status_code == 302
    st.wait(lambda s: 9 in s.results.checked_in, "checked in")
    assert "checked in" in st.client.get("/live/runner?arg=9").json["html"]
    st.feed_scenario("no-bib-solo", seed=1, minutes=5, start_now=True)  # runs after check-in
    st.wait(lambda s: laps_of(s, 9), "a lap credited to the checked-in runner")
    html = st.client.get("/").get_data(as_text=True)
    assert '<a href="/runner/9">' in html
    resp = st.client.post("/checkout", data={"bib": "9", "csrf": st.csrf()})
    st.wait(lambda s: 9 not in s.results.checked_in, "checked out")


@pytest.mark.parametrize("bib, message", [("abc", "Give your bib number"),
                                          ("0", "does not exist"), ("999", "does not exist")])
def test_check_in_refuses_bad_numbers(st, bib, message):
    resp = st.client.post("/checkin", data={"bib": bib, "csrf": st.csrf()}, follow_redirects=True)
    assert message in resp.get_data(as_text=True)
    st.worker.submit_now("checkout", bib=1).wait(5)
    assert not [line for line in st.store.lines() if '"checkin"' in line]


def test_check_in_page_lists_the_roster(st):
    html = st.client.get("/checkin").get_data(as_text=True)
    assert '<option value="7">Ana (7)</option>' in html


def test_board_shows_a_crossing_before_its_credit_and_the_stations_own_faults(st):
    # A pass must reach phones within a second, while credit waits for the cameras: the
    # board shows the engine's provisional crossings, and the worker's own faults (a full
    # disk, a busy database) next to the engine's.
    import dataclasses

    from station.engine.model import Results
    from station.worker import Fault

    state = dataclasses.replace(
        st.worker.state, version=10_001,
        results=Results(provisional=(("finish", 125.4),)),
        faults=(Fault("disk_full", "store", 120.0, "database or disk is full"),))
    with st.app.test_request_context("/live/board"):
        _, html = live.render("board", state)
    assert "Pass at finish 0:02:05" in html and "identifying" in html
    assert "disk full" in html and "store" in html


def test_a_live_poll_never_sets_the_session_cookie(st):
    # A long-poll answered just after a form post would otherwise carry the session as it was
    # when the poll began, and the browser would lose what the post did (a flash, a login).
    st.setup_coach()
    for path in ("/live/console", "/live/board", "/live/runner?arg=7"):
        resp = st.client.get(path)
        assert resp.status_code == 200
        assert resp.headers.getlist("Set-Cookie") == [], path
    page = st.client.get("/coach/")  # pages still refresh the coach's session as before
    assert any("station_session=" in c for c in page.headers.getlist("Set-Cookie"))


def test_the_lap_chart_axis_covers_every_bar_with_whole_second_labels():
    from station.web.views import lap_chart

    for laps in ([125.3, 130.47], [61.0], [88.2, 91.9, 90.05], [0.4, 300.6]):
        chart = lap_chart(laps)
        ticks = sorted(chart["ticks"], key=lambda t: t["y"])   # top first
        top_y = ticks[0]["y"]
        assert all(bar["y"] >= top_y for bar in chart["bars"]), laps  # no bar above the top
        seconds = [sum(float(x) * 60 ** i for i, x in enumerate(reversed(t["label"].split(":"))))
                   for t in ticks]
        # The top label is at least the slowest lap (a 2:10.47 lap under "2:10" looked off
        # the scale), the bottom one at most the fastest.
        assert seconds[0] >= max(laps) and seconds[2] <= min(laps), (laps, seconds)
        assert ticks[1]["y"] == pytest.approx((ticks[0]["y"] + ticks[2]["y"]) / 2)
