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


# -- [mqtt]: checkpoint gates on other Pis ------------------------------------------------

CHECKPOINT = MINIMAL + '[[gates]]\nid = "g200"\nposition_m = 200\npin = 27\n'


def test_mqtt_defaults_to_no_broker():
    cfg = loads_config(MINIMAL)
    assert (cfg.mqtt_host, cfg.mqtt_port, cfg.mqtt_role, cfg.mqtt_gate) == ("", 1883, "finish", "")
    assert (cfg.mqtt_username, cfg.mqtt_password_file) == ("", "")


def test_mqtt_finish_and_gate_roles():
    finish = loads_config(CHECKPOINT + '[mqtt]\nhost = "127.0.0.1"\nusername = "station"\n'
                          'password_file = "/etc/station/mqtt-password"\n')
    assert (finish.mqtt_host, finish.mqtt_role, finish.mqtt_username) == ("127.0.0.1", "finish", "station")
    assert finish.mqtt_password_file == "/etc/station/mqtt-password"
    gate = loads_config(CHECKPOINT + '[mqtt]\nhost = "10.42.0.1"\nport = 1884\nrole = "gate"\ngate = "g200"\n')
    assert (gate.mqtt_role, gate.mqtt_gate, gate.mqtt_port) == ("gate", "g200", 1884)


@pytest.mark.parametrize("table, key, words", [
    ('role = "relay"', "mqtt.role", "finish, gate"),
    ('host = "h"\nport = 0', "mqtt.port", "between 1 and 65535, not 0"),
    ('port = "1883"', "mqtt.port", "integer"),
    ('role = "gate"\ngate = "g200"', "mqtt.host", "finish station's address"),
    ('host = "h"\nrole = "gate"', "mqtt.gate", "which of [[gates]]"),
    ('host = "h"\nrole = "gate"\ngate = "g300"', "mqtt.gate", "unknown gate 'g300'"),
    ('host = "h"\nrole = "gate"\ngate = "finish"', "mqtt.gate", "is the finish gate"),
    ('host = "h"\ngate = "g200"', "mqtt.gate", 'only for role = "gate"'),
    ('host = "h"\npassword_file = "/etc/p"', "mqtt.password_file", "needs mqtt.username"),
    ('host = "h"\nusername = "u"\npassword_file = "p.txt"', "mqtt.password_file", "absolute"),
    ('hots = "h"', "mqtt.hots", "unknown key"),
])
def test_bad_mqtt_table_names_the_key(table, key, words):
    with pytest.raises(ConfigError) as err:
        loads_config(CHECKPOINT + "[mqtt]\n" + table + "\n")
    assert err.value.key == key
    assert words in str(err.value)
