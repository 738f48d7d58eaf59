"""Configuration (SPEC §3): defaults, and errors that name the key."""

from __future__ import annotations

import pytest

from station.config import ConfigError, load_config, loads_config

MINIMAL = """
[track]
length_m = 400

[[gates]]
id = "finish"
position_m = 0
"""

CAMERA = """
[[cameras]]
id = "finish-cam"
gate = "finish"
covers_m = [370, 400]
looks = "oncoming"
"""


def test_minimal_config_gets_spec_defaults():
    cfg = loads_config(MINIMAL)
    assert cfg.length_m == 400
    assert cfg.finish.id == "finish"
    assert (cfg.min_lap_s, cfg.max_lap_s) == (20, 900)
    assert (cfg.spotter_lead_s, cfg.spotter_timeout_s) == (2, 5)
    assert cfg.blocked_after_s == 10
    assert cfg.cameras == () and cfg.runners == ()


def test_examples_load(examples_dir):
    for folder in sorted(examples_dir.iterdir()):
        if (folder / "station.toml").exists():
            cfg = load_config(folder / "station.toml")
            assert cfg.cameras[0].quarter == 4  # [370, 400] is the home straight


def test_camera_quarter_and_roster():
    cfg = loads_config(MINIMAL + CAMERA + '[[runners]]\nbib = 7\nname = "Ana"\n')
    cam = cfg.cameras[0]
    assert (cam.covers_m, cam.looks, cam.quarter) == ((370.0, 400.0), "oncoming", 4)
    assert cfg.runner_name(7) == "Ana" and cfg.runner_name(8) == ""


def test_indoor_track_quarters():
    cfg = loads_config(MINIMAL.replace("400", "200") + CAMERA.replace("[370, 400]", "[0, 30]"))
    assert cfg.cameras[0].quarter == 1
    assert cfg.quarter_of(149.9) == 3 and cfg.quarter_of(150) == 4


@pytest.mark.parametrize(
    "text, key",
    [
        (MINIMAL + "[laps]\nmin_lap = 20\n", "laps.min_lap"),
        (MINIMAL + "[colour]\nx = 1\n", "colour"),
        (MINIMAL + CAMERA.replace("[370, 400]", "[90, 110]"), "cameras[0].covers_m"),
        (MINIMAL + CAMERA.replace('gate = "finish"', 'gate = "back"'), "cameras[0].gate"),
        (MINIMAL + CAMERA.replace('"oncoming"', '"sideways"'), "cameras[0].looks"),
        (MINIMAL.replace("position_m = 0", "position_m = 100"), "gates"),
        ("[[gates]]\nid = 'finish'\nposition_m = 0\n", "track.length_m"),
        (MINIMAL.replace("400", '"400"'), "track.length_m"),
        (MINIMAL.replace("400", "true"), "track.length_m"),
        (MINIMAL + "[laps]\nmin_lap_s = 100\nmax_lap_s = 50\n", "laps.max_lap_s"),
        (MINIMAL + '[[runners]]\nbib = 300\n', "runners[0].bib"),
        (MINIMAL + '[[gates]]\nid = "finish"\nposition_m = 100\n', "gates[1].id"),
        (MINIMAL + '[[gates]]\nid = "back"\nposition_m = 400\n', "gates[1].position_m"),
        (MINIMAL + '[hardware]\npin_factory = "native"\n', "hardware.pin_factory"),
        (MINIMAL + "[track\n", "config"),
    ],
)
def test_bad_config_names_the_key(text, key):
    with pytest.raises(ConfigError) as err:
        loads_config(text)
    assert err.value.key == key
    assert str(err.value).startswith(key + ":")


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
