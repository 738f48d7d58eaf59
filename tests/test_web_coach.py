"""The coach's console through its forms: silencing alarms, lap corrections as events (so a
replay of the exported log agrees), downloads checked against `station replay`, settings and
roster validated by the config parser, the clock hook, health."""

from __future__ import annotations

import csv
import io

import orjson
import pytest
from webkit import EVIL_NAME, Station

from station.config import load_config
from station.events import iter_lines
from station.replay import csv_text, replay_events
from station.web import Hooks


@pytest.fixture
def st(tmp_path):
    station = Station(tmp_path)
    station.setup_coach()
    yield station
    station.close()


def stored(st, kind: str) -> list[dict]:
    return [orjson.loads(line) for line in st.store.lines() if f'"type":"{kind}"' in line]


def laps_of(state, bib):
    return [lap for lap in state.results.laps if lap.bib == bib]


def exported_replay(st):
    """What `station replay` concludes from the station's own exported event log."""
    raw = st.client.get("/coach/downloads/events.jsonl").data
    return replay_events(iter_lines(raw.splitlines()), st.worker.config)


# -- alarms -------------------------------------------------------------------------------

def test_an_alarm_shows_on_the_console_and_a_coach_silences_it(st):
    st.feed_scenario("spotter-dropout", seed=1, minutes=8, until_s=300)
    st.wait(lambda s: s.results.active_alarms, "the spotter alarm")
    console = st.client.get("/coach/").get_data(as_text=True)
    assert "<b>Bib 3</b> Ben ran backwards without a lookout" in console
    assert "Spotter alarm" in st.client.get("/").get_data(as_text=True)
    resp = st.post("/coach/silence", {"bib": "3"})
    assert resp.status_code == 302
    state = st.wait(lambda s: not s.results.active_alarms, "the alarm cleared")
    assert [a.reason for a in state.results.alarms] == ["silenced"]
    assert [(e["bib"], e["by"]) for e in stored(st, "silence")] == [(3, "kim")]
    assert "No alarm." in st.client.get("/coach/").get_data(as_text=True)
    # The silence is in the log: a replay of the export agrees.
    assert [a.reason for a in exported_replay(st).alarms] == ["silenced"]


# -- corrections --------------------------------------------------------------------------

def test_unidentified_passes_are_listed_and_assigned(st):
    st.feed_scenario("no-bib-solo", seed=1, minutes=5)
    state = st.wait(lambda s: len(s.results.passes) == 3, "three anonymous passes")
    assert all(p.bibs == () for p in state.results.passes)
    console = st.client.get("/coach/").get_data(as_text=True)
    assert console.count('value="assign"') >= 3 and "Every pass has a runner" not in console
    for p in state.results.passes:
        resp = st.post("/coach/correct", {"action": "assign", "gate": "finish",
                                          "pass_t": f"{p.t_s:.3f}", "bib": "7"})
        assert resp.status_code == 302
    state = st.wait_laps(7, 2)
    assert {lap.source for lap in laps_of(state, 7)} == {"manual"}
    assert "Every pass has a runner" in st.client.get("/coach/").get_data(as_text=True)
    assert [(lap.bib, lap.lap) for lap in exported_replay(st).laps] == [(7, 1), (7, 2)]


def test_delete_restore_and_add_a_pass(st):
    st.feed_scenario("solo-forward", seed=1, minutes=5)
    state = st.wait_laps(7, 3)
    passes = [p for p in state.results.passes if p.bibs == (7,)]
    middle = passes[1]
    t = f"{middle.t_s:.3f}"
    st.post("/coach/correct", {"action": "delete", "gate": "finish", "pass_t": t})
    state = st.wait_laps(7, 2)
    assert [p.deleted for p in state.results.passes if abs(p.t_s - middle.t_s) < 1e-3] == [True]
    console = st.client.get("/coach/").get_data(as_text=True)
    assert f'data-pass="finish@{t}"' in console and 'value="restore"' in console
    st.post("/coach/correct", {"action": "restore", "gate": "finish", "pass_t": t})
    st.wait_laps(7, 3)
    # A missed pass, added by hand: a fourth lap ending 95 s after the last pass.
    last = passes[-1].t_s
    st.post("/coach/correct", {"action": "add", "gate": "finish", "pass_t": f"{last + 95:.3f}",
                               "bib": "7"})
    state = st.wait_laps(7, 4)
    assert laps_of(state, 7)[-1].source == "manual"
    events = stored(st, "correct")
    assert [e["action"] for e in events] == ["delete", "restore", "add"]
    assert all(e["by"] == "kim" and e["gate"] == "finish" for e in events)
    replayed = exported_replay(st)
    assert [lap.lap_s for lap in replayed.laps] == pytest.approx(
        [lap.lap_s for lap in laps_of(state, 7)], abs=1e-3)


@pytest.mark.parametrize("form, message", [
    ({"action": "explode", "gate": "finish", "pass_t": "1"}, "action must be one of"),
    ({"action": "delete", "gate": "moon", "pass_t": "1"}, "not one of this station"),
])
def test_tampered_correction_forms_are_refused(st, form, message):
    # No form on the page sends these: a 400 page, and nothing recorded.
    resp = st.post("/coach/correct", form)
    assert resp.status_code == 400 and message in resp.get_data(as_text=True)
    st.worker.submit_now("checkout", bib=1).wait(5)
    assert stored(st, "correct") == []


@pytest.mark.parametrize("form, message", [
    ({"action": "delete", "gate": "finish", "pass_t": "soon"}, "the time must be"),
    ({"action": "assign", "gate": "finish", "pass_t": "1", "bib": "x"}, "the bib must be a number"),
    ({"action": "add", "gate": "finish", "pass_t": "1:30", "bib": "400"},
     "the bib must be a number"),
    ({"action": "assign", "gate": "finish", "pass_t": "1", "bib": "\uff13"},  # a full-width 3
     "the bib must be a number"),
    # A pass added in the future would end every runner's next lap: refused.
    ({"action": "add", "gate": "finish", "pass_t": "99:00:00", "bib": "3"}, "later than now"),
])
def test_a_mistyped_correction_goes_back_to_the_console_saying_why(st, form, message):
    resp = st.post("/coach/correct", {**form, "back": "/coach/"})
    assert resp.status_code == 302 and resp.location.endswith("/coach/")
    page = st.client.get("/coach/").get_data(as_text=True)
    error = page.split('<p class="error" role="alert">Not done: ', 1)[1].split("</p>")[0]
    assert message in error.replace("&#39;", "'")
    st.worker.submit_now("checkout", bib=1).wait(5)
    assert stored(st, "correct") == []


# -- downloads ----------------------------------------------------------------------------

def test_downloads_equal_a_replay_of_the_exported_log(st):
    st.feed_scenario("backward-spotted", seed=1, minutes=5)
    st.wait_laps(3, 2)
    st.wait_laps(4, 2)
    # What a coach does at home: the raw log and the station's config, both downloaded.
    from station.config import loads_config
    raw = st.client.get("/coach/downloads/events.jsonl").data
    toml = st.client.get("/coach/downloads/station.toml")
    assert toml.status_code == 200 and "attachment" in toml.headers["Content-Disposition"]
    replayed = replay_events(iter_lines(raw.splitlines()), loads_config(toml.get_data(as_text=True)))
    for table in ("laps", "passes", "alarms", "splits"):
        resp = st.client.get(f"/coach/downloads/{table}.csv")
        assert resp.status_code == 200 and resp.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert "attachment" in resp.headers["Content-Disposition"]
        assert resp.get_data(as_text=True) == csv_text(replayed, f"{table}.csv"), table
    laps = list(csv.DictReader(io.StringIO(st.client.get("/coach/downloads/laps.csv").get_data(as_text=True))))
    assert {r["bib"] for r in laps} == {"3", "4"} and {r["q4"] for r in laps if r["bib"] == "3"} == {"backward"}


def test_downloads_for_one_runner_as_csv_and_json(st):
    st.feed_scenario("backward-spotted", seed=1, minutes=5)
    st.wait_laps(4, 2)
    rows = list(csv.DictReader(io.StringIO(
        st.client.get("/coach/downloads/laps.csv?bib=4").get_data(as_text=True))))
    assert [(r["bib"], r["name"], r["lap"]) for r in rows] == [("4", "Cleo", "1"), ("4", "Cleo", "2")]
    data = st.client.get("/coach/downloads/laps.json?bib=4").json
    assert [(d["bib"], d["lap"]) for d in data] == [(4, 1), (4, 2)]
    assert isinstance(data[0]["lap_s"], float)
    passes = st.client.get("/coach/downloads/passes.json?bib=4").json
    assert passes and all(4 in p["bibs"] for p in passes)


def test_the_one_runner_form_leads_to_any_table(st):
    resp = st.client.get("/coach/downloads/runner?bib=4&what=alarms.json")
    assert resp.status_code == 302 and resp.location.endswith("/coach/downloads/alarms.json?bib=4")
    assert st.client.get("/coach/downloads/runner?bib=4&what=secrets.txt").status_code == 400
    assert st.client.get("/coach/downloads/runner?what=laps.csv").status_code == 400


def test_a_bad_roster_import_keeps_what_was_pasted_and_says_why_once(st):
    pasted = "bib,name\n7,Ana\nseven,Ben\n"
    resp = st.post("/coach/roster", {"action": "import", "text": pasted}, page="/coach/roster")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 400 and page.count("Roster not changed") == 1
    assert 'class="error"' in page and "seven,Ben" in page
    assert 'class="flash"' not in page


def test_download_of_a_day_joins_its_sessions(st):
    st.feed_scenario("solo-forward", seed=1, minutes=3)
    st.wait_laps(7, 2)
    day = st.worker.state.session.started[:10]
    text = st.client.get(f"/coach/downloads/laps.csv?day={day}").get_data(as_text=True)
    header, *rows = list(csv.reader(io.StringIO(text)))
    assert header[-1] == "session" and header[:12] == ["bib", "name", "run", "lap", "start_s",
                                                       "end_s", "lap_s", "q1", "q2", "q3", "q4",
                                                       "source"]
    assert len(rows) == 2 and {r[-1] for r in rows} == {str(st.worker.state.session.id)}
    assert st.client.get("/coach/downloads/laps.csv?day=1999-01-01").status_code == 404


def test_an_earlier_session_is_replayed_for_download(st):
    st.feed_scenario("solo-forward", seed=1, minutes=3)
    st.wait_laps(7, 2)
    old = st.worker.state.session.id
    old_csv = st.client.get("/coach/downloads/laps.csv").get_data(as_text=True)
    st.worker.new_session().wait(10)
    assert st.worker.state.session.id != old
    assert st.client.get("/coach/downloads/laps.csv").get_data(as_text=True).count("\n") == 1
    again = st.client.get(f"/coach/downloads/laps.csv?session={old}").get_data(as_text=True)
    assert again.splitlines()[1:] == old_csv.splitlines()[1:]


def test_raw_event_log_download_is_the_stored_log(st):
    st.feed_scenario("solo-forward", seed=1, minutes=2)
    st.worker.submit_now("checkout", bib=1).wait(5)
    raw = st.client.get("/coach/downloads/events.jsonl").get_data(as_text=True)
    assert raw == "".join(line + "\n" for line in st.store.lines())
    assert st.client.get("/coach/downloads/nope.csv").status_code == 404
    assert st.client.get("/coach/downloads/laps.csv?session=x").status_code == 400


# -- settings and roster --------------------------------------------------------------------

def settings_form(st, **changes):
    form = {"form": "fields", "track.length_m": "400", "laps.min_lap_s": "20",
            "laps.max_lap_s": "900", "safety.spotter_lead_s": "2", "safety.spotter_timeout_s": "5",
            "passes.glitch_ms": "6", "passes.merge_ms": "250", "passes.blocked_after_s": "10"}
    form.update(changes)
    return st.post("/coach/settings", form, page="/coach/settings")


@pytest.mark.parametrize("changes, key", [
    ({"laps.min_lap_s": "abc"}, "laps.min_lap_s"),
    ({"laps.min_lap_s": "-3"}, "laps.min_lap_s"),
    ({"laps.max_lap_s": "10"}, "laps.max_lap_s"),
    ({"track.length_m": "0"}, "track.length_m"),
    ({"passes.merge_ms": "nan"}, "passes.merge_ms"),
])
def test_bad_settings_are_refused_naming_the_key(st, changes, key):
    before = st.config_path.read_text()
    resp = settings_form(st, **changes)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert f"<b>{key}</b>" in html and 'aria-invalid="true"' in html
    assert st.config_path.read_text() == before
    assert st.worker.config.min_lap_s == 20


def test_good_settings_are_saved_and_used(st):
    resp = settings_form(st, **{"laps.min_lap_s": "30", "safety.spotter_timeout_s": "6.5"})
    assert resp.status_code == 302
    saved = load_config(st.config_path)
    assert saved.min_lap_s == 30 and saved.spotter_timeout_s == 6.5
    assert [r.name for r in saved.runners] == ["Ben", "Cleo", "Ana", EVIL_NAME]
    assert st.config_path.with_name("station.toml.bak").exists()
    assert st.app.extensions["station"].config.min_lap_s == 30
    st.worker.submit_now("checkout", bib=1).wait(5)
    assert st.worker.config.min_lap_s == 30  # the engine was rebuilt with it


def test_the_whole_toml_is_checked_before_it_is_saved(st):
    before = st.config_path.read_text()
    bad = before + '\n[[cameras]]\nid = "x"\ngate = "nowhere"\ncovers_m = [0, 10]\nlooks = "oncoming"\n'
    resp = st.post("/coach/settings", {"form": "toml", "toml": bad}, page="/coach/settings")
    assert resp.status_code == 400 and "<b>cameras[1].gate</b>" in resp.get_data(as_text=True)
    resp = st.post("/coach/settings", {"form": "toml", "toml": before + "\n[laps]\nfast = 1\n"},
                   page="/coach/settings")
    assert resp.status_code == 400 and "<b>laps.fast</b>" in resp.get_data(as_text=True)
    assert st.config_path.read_text() == before


def test_roster_import_export_and_errors(st):
    text = "bib,name\n12,Zoe\n5,=HYPERLINK(\"x\")\n7,Ana B\n"
    resp = st.post("/coach/roster", {"action": "import", "text": text}, page="/coach/roster")
    assert resp.status_code == 302
    saved = load_config(st.config_path)
    assert [(r.bib, r.name) for r in saved.runners] == [(5, '=HYPERLINK("x")'), (7, "Ana B"),
                                                        (12, "Zoe")]
    exported = st.client.get("/coach/roster.csv").get_data(as_text=True)
    assert exported == "bib,name\n5,\"'=HYPERLINK(\"\"x\"\")\"\n7,Ana B\n12,Zoe\n"
    # The export imports back to the same roster.
    st.post("/coach/roster", {"action": "import", "text": exported}, page="/coach/roster")
    assert [(r.bib, r.name) for r in load_config(st.config_path).runners] == \
        [(r.bib, r.name) for r in saved.runners]
    resp = st.post("/coach/roster", {"action": "import", "text": "bib,name\n1,A\nx,B\n"},
                   page="/coach/roster")
    assert resp.status_code == 400 and "line 3: bib must be a number" in resp.get_data(as_text=True)
    resp = st.post("/coach/roster", {"action": "import", "text": "1,A\n1,B\n"}, page="/coach/roster")
    assert "line 2: bib 1 is already on line 1" in resp.get_data(as_text=True)
    assert len(load_config(st.config_path).runners) == 3


def test_roster_add_rename_remove_changes_names_shown(st):
    st.post("/coach/roster", {"action": "save", "bib": "21", "name": "Rae <b>"}, page="/coach/roster")
    assert (21, "Rae <b>") in [(r.bib, r.name) for r in load_config(st.config_path).runners]
    html = st.client.get("/coach/roster").get_data(as_text=True)
    assert "Rae &lt;b&gt;" in html
    st.post("/coach/roster", {"action": "remove", "bib": "21"}, page="/coach/roster")
    assert 21 not in [r.bib for r in load_config(st.config_path).runners]
    resp = st.post("/coach/roster", {"action": "save", "bib": "300", "name": "X"}, page="/coach/roster")
    assert resp.status_code == 400


# -- health and clock --------------------------------------------------------------------

def test_setting_the_clock_records_an_event_and_calls_the_hook(tmp_path):
    calls = []
    st = Station(tmp_path, hooks=Hooks(set_clock=calls.append))
    try:
        st.setup_coach()
        resp = st.post("/coach/clock", {"wall": "2026-05-01T10:11:12.345Z"}, page="/coach/health")
        assert resp.status_code == 302
        [event] = stored(st, "clock")
        assert event["wall"] == "2026-05-01T10:11:12.345Z" and event["by"] == "kim"
        assert event["previous"].endswith("Z")
        assert calls == ["2026-05-01T10:11:12.345Z"]
        resp = st.post("/coach/clock", {"wall": "yesterday"}, page="/coach/health")
        assert resp.status_code == 400 and "ISO 8601" in resp.get_data(as_text=True)
        assert len(stored(st, "clock")) == 1
    finally:
        st.close()


def test_health_page_reports_disk_beams_and_clock(st):
    html = st.client.get("/coach/health").get_data(as_text=True)
    assert "MB free of" in html and "<b>finish</b>" in html and "finish-cam" in html
    assert "Set the station clock from this phone" in html
    assert st.client.get("/coach/health/snapshot.jpg").status_code == 404  # no camera here


def test_camera_snapshot_and_buzzer_test_use_the_hooks(tmp_path, mock_factory):
    from gpiozero import Buzzer

    buzzer = Buzzer(22, pin_factory=mock_factory)
    jpeg = b"\xff\xd8\xff\xe0fake-jpeg-bytes\xff\xd9"
    st = Station(tmp_path, hooks=Hooks(snapshot=lambda: jpeg, buzzer_test=buzzer.on))
    try:
        st.setup_coach()
        resp = st.client.get("/coach/health/snapshot.jpg")
        assert resp.status_code == 200 and resp.data == jpeg and resp.mimetype == "image/jpeg"
        assert not buzzer.is_active
        st.post("/coach/health/buzzer", {}, page="/coach/health")
        assert buzzer.is_active and mock_factory.pin(22).state
    finally:
        buzzer.close()
        st.close()


def test_another_coach_login_and_password_change(st):
    resp = st.post("/coach/account", {"action": "add", "name": "lee", "password": "lee-password",
                                      "repeat": "lee-password"}, page="/coach/account")
    assert resp.status_code == 302 and st.store.get_user("lee")
    resp = st.post("/coach/account", {"action": "password", "old": "wrong", "password": "new-password-1",
                                      "repeat": "new-password-1"}, page="/coach/account")
    assert resp.status_code == 400
    resp = st.post("/coach/account", {"action": "password", "old": "track-secret-1",
                                      "password": "new-password-1", "repeat": "new-password-1"},
                   page="/coach/account")
    assert resp.status_code == 302
    from station.web.auth import password_ok
    assert password_ok(st.store.get_user("kim")["password_hash"], "new-password-1")


def test_bib_sheets_download_as_pdf(st):
    resp = st.client.get("/coach/roster/bibs.pdf?bib=7")
    assert resp.status_code == 200 and resp.mimetype == "application/pdf"
    assert resp.data.startswith(b"%PDF") and resp.data.count(b"/Type /Page") >= 2  # front, back
    assert st.client.get("/coach/roster/bibs.pdf?bib=999").status_code == 400


def test_faults_show_on_the_console_and_health_page(st):
    st.worker.submit_now("fault", kind="camera_missing", source="finish-cam", active=True,
                         message="no camera found").wait(5)
    st.wait(lambda s: s.results.active_faults, "the camera fault")
    assert "camera missing" in st.client.get("/coach/").get_data(as_text=True)
    health = st.client.get("/coach/health").get_data(as_text=True)
    assert "camera missing" in health


def test_photo_of_an_unidentified_pass_is_shown_to_coaches(tmp_path):
    jpeg = b"\xff\xd8\xff\xe0pass-photo\xff\xd9"
    wanted = {}

    def photo(gate, t_s, session):
        wanted["asked"] = (gate, t_s, session)
        return jpeg if gate == "finish" else None

    st = Station(tmp_path, hooks=Hooks(photo=photo))
    try:
        st.setup_coach()
        st.feed_scenario("no-bib-solo", seed=1, minutes=3)
        state = st.wait(lambda s: s.results.passes, "an anonymous pass")
        t = f"{state.results.passes[0].t_s:.3f}"
        s = state.session.id
        console = st.client.get("/coach/").get_data(as_text=True)
        assert f'src="/coach/photo/{s}/finish/{t}.jpg"' in console
        resp = st.client.get(f"/coach/photo/{s}/finish/{t}.jpg")
        assert resp.data == jpeg and wanted["asked"] == ("finish", float(t), s)
        assert st.client.get(f"/coach/photo/{s}/back/{t}.jpg").status_code == 404
        assert st.app.test_client().get(f"/coach/photo/{s}/finish/{t}.jpg").status_code == 302
    finally:
        st.close()
