"""Every number in the configuration has an allowed range: a typo (`merge_ms = 1e23`) is refused
naming the key and the range, in the TOML file and in the settings form alike, while the values
real stations use (sprinters, walkers, a 200 m indoor track, rain, a long blocked beam) pass.
Runner names are one line of text."""

from __future__ import annotations

import tomllib

import pytest
from test_config import CAMERA, MINIMAL

from station.config import NUM, TOP_LEVEL, ConfigError, loads_config, parse_config


def ranged_keys():
    """(table, key, (lo, hi)) of every number in the schema."""
    for table, (_, schema) in TOP_LEVEL.items():
        for key, (types, _, *allowed) in schema.items():
            types = types if isinstance(types, tuple) else (types,)
            if set(types) & set(NUM):
                yield table, key, (allowed[0] if allowed else None)


def document(table: str, key: str, value) -> dict:
    """A valid document (gate, camera, runner and the other keys at their defaults) with one
    key set; min/max lap and gate position are given room so only `key`'s range decides."""
    raw = tomllib.loads(MINIMAL + CAMERA + '[[gates]]\nid = "g2"\nposition_m = 200\n'
                        + "[[runners]]\nbib = 1\n")
    if (table, key) == ("laps", "min_lap_s"):
        raw["laps"] = {"max_lap_s": 10_800}
    if (table, key) == ("laps", "max_lap_s"):
        raw["laps"] = {"min_lap_s": 1}
    if (table, key) == ("gates", "position_m"):
        raw["track"]["length_m"] = 10_000
        raw["cameras"][0]["covers_m"] = [9_970, 10_000]
    if (table, key) == ("track", "length_m"):
        raw["cameras"] = []
        raw["gates"] = raw["gates"][:1]
    if TOP_LEVEL[table][0] == "array":
        raw[table][-1][key] = value
    else:
        raw.setdefault(table, {})[key] = value
    return raw


def test_every_number_in_the_schema_has_a_range():
    missing = [f"{t}.{k}" for t, k, allowed in ranged_keys() if allowed is None]
    assert missing == []
    assert len(list(ranged_keys())) >= 19  # the introspection finds them


@pytest.mark.parametrize("table, key, allowed", list(ranged_keys()),
                         ids=[f"{t}.{k}" for t, k, _ in ranged_keys()])
def test_each_bound_is_allowed_and_just_beyond_it_is_refused(table, key, allowed):
    lo, hi = allowed
    # A gate stands before the end of the lap, so position_m's top is the longest track's end.
    for value in (lo, hi) if key != "position_m" else (lo, hi - 0.001):
        parse_config(document(table, key, value))
    integer = isinstance(lo, int) and isinstance(hi, int) and key not in (
        "length_m", "position_m") and not key.endswith(("_s", "_ms"))
    step = 1 if integer else 0.001
    for value in (lo - step, hi + step):
        with pytest.raises(ConfigError) as err:
            parse_config(document(table, key, value))
        where = {"gates": "gates[1]", "cameras": "cameras[0]", "runners": "runners[0]"}.get(table, table)
        assert err.value.key == f"{where}.{key}"
        assert f"must be between {lo:g} and {hi:g}" in str(err.value)


@pytest.mark.parametrize("extra, message", [
    # The reviewer's findings: each of these used to be accepted and rewrote the session.
    ("[passes]\nmerge_ms = 1e23", "passes.merge_ms: must be between 0 and 2000 (ms), not 1e+23"),
    ("[passes]\nmerge_ms = 99999", "passes.merge_ms: must be between 0 and 2000 (ms), not 99999"),
    ("[passes]\nglitch_ms = 100000", "passes.glitch_ms: must be between 0 and 20 (ms), not 100000"),
    ("[passes]\nglitch_ms = -1", "passes.glitch_ms: must be between 0 and 20 (ms), not -1"),
    ("[passes]\nblocked_after_s = 0.001",
     "passes.blocked_after_s: must be between 2 and 600 (s), not 0.001"),
    ("[safety]\nspotter_timeout_s = 1e9",
     "safety.spotter_timeout_s: must be between 0.5 and 120 (s), not 1e+09"),
    ("[laps]\nmax_lap_s = 1e12", "laps.max_lap_s: must be between 5 and 86400 (s), not 1e+12"),
    # TOML has nan and inf; neither is a duration.
    ("[passes]\nmerge_ms = nan", "passes.merge_ms: must be between 0 and 2000 (ms), not nan"),
    ("[safety]\nspotter_lead_s = inf", "safety.spotter_lead_s: must be between 0 and 60 (s), not inf"),
    ("[web]\nport = 70000", "web.port: must be between 1 and 65535, not 70000"),
])
def test_values_that_would_rewrite_the_session_are_refused(extra, message):
    with pytest.raises(ConfigError) as err:
        loads_config(MINIMAL + extra + "\n")
    assert str(err.value) == message


def test_a_bad_track_length_is_reported_as_itself_not_as_the_camera_it_breaks():
    with pytest.raises(ConfigError) as err:
        loads_config(MINIMAL.replace("400", "1") + CAMERA)
    assert err.value.key == "track.length_m"
    assert "between 50 and 10000 (m), not 1" in str(err.value)
    # A key's own range comes before rules across tables, whichever table comes first.
    with pytest.raises(ConfigError) as err:
        loads_config(MINIMAL + CAMERA.replace("[370, 400]", "[90, 110]")
                     + "[passes]\nmerge_ms = -5\n")
    assert err.value.key == "passes.merge_ms"


@pytest.mark.parametrize("extra", [
    "[laps]\nmin_lap_s = 10\nmax_lap_s = 120\n",          # sprinters on a 200 m indoor track
    "[laps]\nmin_lap_s = 1\nmax_lap_s = 10800\n",          # a walker on a long park loop
    "[passes]\nglitch_ms = 15\nmerge_ms = 800\nblocked_after_s = 3\n",  # rain; 1 s torso walkers
    "[passes]\nglitch_ms = 0\nblocked_after_s = 600\n",    # keep every break; tolerate a long block
    "[safety]\nspotter_lead_s = 0\nspotter_timeout_s = 20\n",  # walking spotters
    "[web]\nthreads = 8\nport = 80\n[hardware]\nbuzzer_pin = 18\n",
])
def test_real_world_settings_are_accepted(extra):
    loads_config(MINIMAL + CAMERA + extra)


def test_indoor_and_park_tracks_are_accepted():
    indoor = MINIMAL.replace("400", "200") + CAMERA.replace("[370, 400]", "[0, 30]")
    assert loads_config(indoor).length_m == 200
    assert loads_config(MINIMAL.replace("400", "5000")).length_m == 5000


@pytest.mark.parametrize("name", ["Ana\nMaria", "Ana\tMaria", "Ana\x00", "Ana\rB", "\x7fAna",
                                  "Ana\x85B", "Ana\u2028B", "Ana\u2029B"])
def test_a_name_with_control_characters_is_refused(name):
    roster = {"runners": [{"bib": 1, "name": "Ben"}, {"bib": 2, "name": name}]}
    with pytest.raises(ConfigError) as err:
        parse_config({**tomllib.loads(MINIMAL), **roster})
    assert err.value.key == "runners[1].name"
    assert f"U+{ord(next(c for c in name if not c.isalpha())):04X}" in str(err.value)


@pytest.mark.parametrize("name", ["Zoé", "محمد علي", "שרה כהן", "王小明", "🏃‍♀️ Ana 🇫🇷",
                                  "O'Brien-Smith Jr.", "\u202eevil", "x" * 500, ""])
def test_names_of_any_script_are_accepted(name):
    cfg = parse_config({**tomllib.loads(MINIMAL), "runners": [{"bib": 5, "name": name}]})
    assert cfg.runner_name(5) == name


def test_the_settings_form_refuses_out_of_range_values_with_the_same_message(tmp_path):
    from tests.webkit import Station

    st = Station(tmp_path)
    try:
        st.setup_coach()
        before = st.config_path.read_text()
        form = {"form": "fields", "track.length_m": "400", "laps.min_lap_s": "20",
                "laps.max_lap_s": "900", "safety.spotter_lead_s": "2",
                "safety.spotter_timeout_s": "5", "passes.glitch_ms": "6",
                "passes.merge_ms": "1e23", "passes.blocked_after_s": "10"}
        resp = st.post("/coach/settings", form, page="/coach/settings")
        html = resp.get_data(as_text=True)
        assert resp.status_code == 400
        assert "<b>passes.merge_ms</b>: must be between 0 and 2000 (ms), not 1e+23" in html
        assert st.config_path.read_text() == before and st.worker.config.merge_ms == 250
    finally:
        st.close()
