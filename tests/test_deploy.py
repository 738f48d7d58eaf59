"""deploy/: install.sh and uninstall.sh (dry runs on this Debian machine, shellcheck), the
default station.toml, the hotspot QR helper and the give-up note of station-failed@.service."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from station import deploy_info, service_failed
from station.config import load_config
from conftest import require

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "deploy" / "install.sh"
UNINSTALL = ROOT / "deploy" / "uninstall.sh"
PASSPHRASE = "abcd-efgh-jkmn-pqrs"


def _sandbox(tmp_path: Path) -> dict[str, str]:
    """Environment pointing the scripts' writable places into tmp_path (tests only)."""
    env = dict(os.environ)
    env.update(STATION_APP_DIR=str(tmp_path / "opt"), STATION_ETC_DIR=str(tmp_path / "etc"),
               STATION_UNIT_DIR=str(tmp_path / "units"),
               STATION_CHRONY_CONF=str(tmp_path / "chrony" / "station.conf"),
               STATION_CHRONY_MAIN=str(tmp_path / "chrony.conf"),
               STATION_MOSQUITTO_DIR=str(tmp_path / "mosquitto"))
    return env


def _run(script: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env,
                          timeout=60)


def _commands(stdout: str) -> list[str]:
    return [line.strip()[2:] for line in stdout.splitlines() if line.strip().startswith("+ ")]


def _files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*")) if path.exists() else []


def test_scripts_pass_shellcheck():
    require(shutil.which("shellcheck") is not None, "shellcheck is missing (apt-get install shellcheck)")
    done = subprocess.run(["shellcheck", "-x", "deploy/install.sh", "deploy/uninstall.sh", "deploy/lib.sh"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_install_dry_run_prints_every_step_and_changes_nothing(tmp_path):
    env = _sandbox(tmp_path)
    watched = [Path("/opt/station"), Path("/etc/station"), Path("/etc/systemd/system/station.service"),
               Path("/etc/chrony/conf.d/station.conf"), Path("/etc/mosquitto/conf.d/station.conf"),
               Path("/etc/mosquitto/station.passwd")]
    before = {p: p.exists() for p in watched}
    done = _run(INSTALL, "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    cmds = "\n".join(_commands(out))
    # Every step, in order, with its title.
    titles = re.findall(r"^== (\d+)/12 ", out, flags=re.M)
    assert titles == [str(n) for n in range(1, 13)]
    # The venv sees the system's picamera2/lgpio; the package goes into it with numpy pinned.
    assert "python3 -m venv --system-site-packages" in cmds
    assert re.search(r"venv/bin/python -m pip install .*--constraint \S+constraints.txt " + re.escape(str(ROOT)), cmds)
    assert "numpy==" in out
    if subprocess.run(["dpkg-query", "-W", "python3-picamera2"], capture_output=True).returncode != 0:
        assert re.search(r"apt-get install -y --no-install-recommends .*python3-picamera2", cmds)
    for pkg in ("chrony", "network-manager", "dnsmasq-base", "python3-lgpio", "mosquitto"):
        installed = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True,
                                   text=True).stdout.startswith("install ok installed")
        assert installed or re.search(rf"apt-get install .*\b{pkg}\b", cmds), pkg
    # A dedicated user in the device groups.
    if subprocess.run(["id", "station"], capture_output=True).returncode != 0:
        assert re.search(r"useradd --system .*--shell /usr/sbin/nologin .* station$", cmds, flags=re.M)
        assert re.search(r"usermod --append --groups gpio\\?,video station", cmds)
    # Config written once from deploy/station.toml; units installed and enabled.
    assert f"install -m 0640 -o root -g station {ROOT}/deploy/station.toml {tmp_path}/etc/station.toml" in cmds
    assert f"install -m 0644 {ROOT}/systemd/station.service {tmp_path}/units/station.service" in cmds
    assert f"{tmp_path}/units/station-failed@.service" in cmds
    for name in ("station-clock.service", "station-clock.path"):
        assert f"{ROOT}/systemd/{name} {tmp_path}/units/{name}" in cmds
    assert "systemctl daemon-reload" in cmds
    assert "systemctl enable station.service station-clock.path" in cmds
    assert "systemctl restart station.service station-clock.path" in cmds
    # The hotspot: an access point with NetworkManager sharing 10.42.0.1/24, WPA2 passphrase.
    nm = next(c for c in _commands(out) if c.startswith("nmcli connection add"))
    for part in ("type wifi", "802-11-wireless.mode ap", "ipv4.method shared",
                 "ipv4.addresses 10.42.0.1/24", "wifi-sec.key-mgmt wpa-psk", "wifi-sec.psk <passphrase>"):
        assert part in nm
    assert "nmcli connection up station-hotspot" in cmds
    # The passphrase is written to hotspot.txt but never printed.
    assert "passphrase=<passphrase>" in out
    assert not re.search(r"passphrase=(?!<passphrase>)", out)
    # chrony serves the hotspot with no upstream.
    assert "allow 10.42.0.0/24" in out and "local stratum 10" in out
    # Ends with the join QR code and the dashboard address.
    assert f"-m station.deploy_info --hotspot {tmp_path}/etc/hotspot.txt" in cmds
    # Nothing was done.
    assert _files_under(tmp_path) == []
    assert {p: p.exists() for p in watched} == before


def test_install_dry_run_keeps_what_a_previous_install_left(tmp_path):
    env = _sandbox(tmp_path)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "station.toml").write_text("[track]\nlength_m = 200\n[[gates]]\nid = 'f'\nposition_m = 0\n")
    (etc / "hotspot.txt").write_text(f"ssid=Club-North\npassphrase={PASSPHRASE}\n")
    units = tmp_path / "units"
    units.mkdir()
    for unit in (ROOT / "systemd").iterdir():
        shutil.copy(unit, units / unit.name)
    first = _run(INSTALL, "--dry-run", env=env)
    assert first.returncode == 0, first.stderr
    # The chrony and mosquitto files as the installer would write them (and the passwords
    # it would have made), then a second look: up to date.
    for path in (tmp_path / "chrony" / "station.conf", tmp_path / "mosquitto" / "conf.d" / "station.conf",
                 units / "mosquitto.service.d" / "station.conf"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_written(first.stdout, str(path)))
    (etc / "mqtt-password").write_text("kept-mqtt-password-0123\n")
    (tmp_path / "mosquitto" / "station.passwd").write_text("station:$7$hashed\n")
    done = _run(INSTALL, "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    out, cmds = done.stdout, "\n".join(_commands(done.stdout))
    assert "exists: kept" in out and f"{ROOT}/deploy/station.toml" not in cmds
    assert "passphrase kept" in out and PASSPHRASE not in out + done.stderr
    assert "ssid Club-North" in cmds and "wifi-sec.psk <passphrase>" in cmds
    assert "hotspot.txt is up to date" in out
    assert "station.service is up to date" in out and "daemon-reload" not in cmds
    assert "station.conf is up to date" in out and "restart chrony" not in cmds
    assert "mosquitto" not in cmds and "password kept" in out
    # Still untouched.
    assert (etc / "hotspot.txt").read_text() == f"ssid=Club-North\npassphrase={PASSPHRASE}\n"


def test_install_refuses_bad_options():
    bad = _run(INSTALL, "--dry-run", "--ssid", "no;way")
    assert bad.returncode != 0 and "--ssid" in bad.stderr
    bad = _run(INSTALL, "--dry-run", "--frobnicate")
    assert bad.returncode != 0 and "--frobnicate" in bad.stderr


def test_uninstall_dry_run_keeps_data_unless_purge(tmp_path):
    env = _sandbox(tmp_path)
    done = _run(UNINSTALL, "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    cmds = _commands(done.stdout)
    for expected in ("systemctl disable --now station.service station-clock.path",
                     f"rm -f {tmp_path}/units/station-clock.path",
                     f"rm -f {tmp_path}/units/station.service",
                     f"rm -f {tmp_path}/units/station-failed@.service",
                     "nmcli connection delete station-hotspot",
                     f"rm -f {tmp_path}/chrony/station.conf",
                     f"rm -rf {tmp_path}/opt", "userdel station"):
        assert expected in cmds
    assert not any("/var/lib/station" in c or c.startswith(f"rm -rf {tmp_path}/etc") for c in cmds)
    assert "kept:" in done.stdout
    purge = _run(UNINSTALL, "--dry-run", "--purge", env=env)
    assert f"rm -rf {tmp_path}/etc" in _commands(purge.stdout)
    assert "rm -rf /var/lib/station" in _commands(purge.stdout)
    assert _files_under(tmp_path) == []


def test_default_config_is_valid_and_matches_the_wiring_page():
    config = load_config(ROOT / "deploy" / "station.toml")
    assert config.finish.pin == 17 and config.buzzer_pin == 18
    assert config.cameras[0].looks == "oncoming" and config.cameras[0].quarter == 4
    hardware = (ROOT / "docs" / "HARDWARE.md").read_text()
    assert f"GPIO{config.finish.pin}" in hardware and f"GPIO{config.buzzer_pin}" in hardware


# --- the join QR code ------------------------------------------------------------------------

def test_wifi_uri_escapes_reserved_characters():
    assert deploy_info.wifi_uri("Track", PASSPHRASE) == f"WIFI:T:WPA;S:Track;P:{PASSPHRASE};;"
    assert deploy_info.wifi_uri('a;b,c:d"e\\f', "p;p") == 'WIFI:T:WPA;S:a\\;b\\,c\\:d\\"e\\\\f;P:p\\;p;;'


def test_join_code_png_decodes_to_the_hotspot(tmp_path):
    cv2 = pytest.importorskip("cv2")
    uri = deploy_info.wifi_uri("TrackStation-3d12", PASSPHRASE)
    png = deploy_info.save_png(uri, tmp_path / "join.png")
    text, _points, _ = cv2.QRCodeDetector().detectAndDecode(cv2.imread(str(png)))
    assert text == uri


def test_deploy_info_prints_code_name_passphrase_and_dashboard(tmp_path):
    hotspot = tmp_path / "hotspot.txt"
    hotspot.write_text(f"# comment\nssid=TrackStation-3d12\npassphrase={PASSPHRASE}\n")
    config = tmp_path / "station.toml"
    config.write_text("[track]\nlength_m = 400\n[[gates]]\nid = 'f'\nposition_m = 0\n[web]\nport = 8090\n")
    done = subprocess.run([sys.executable, "-m", "station.deploy_info", "--hotspot", str(hotspot),
                           "--config", str(config), "--png", str(tmp_path / "q.png")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "TrackStation-3d12" in done.stdout and PASSPHRASE in done.stdout
    assert "http://10.42.0.1:8090/" in done.stdout
    assert done.stdout.count("\u2588") > 50  # the code itself, drawn with blocks
    assert (tmp_path / "q.png").stat().st_size > 0


@pytest.mark.parametrize("text, problem", [
    ("ssid=x\n", "no passphrase"),
    ("passphrase=abcdefgh\n", "no ssid"),
    ("ssid=x\npassphrase=short\n", "8..63"),
    ("ssid=x\nthis line is wrong\n", ":2: expected key=value"),
])
def test_bad_hotspot_file_is_named(tmp_path, text, problem):
    path = tmp_path / "hotspot.txt"
    path.write_text(text)
    with pytest.raises(deploy_info.HotspotFileError, match=re.escape(problem)):
        deploy_info.read_hotspot(path)


# --- when systemd gives up -------------------------------------------------------------------

def test_give_up_note_is_written_loudly_read_and_cleared(tmp_path):
    done = subprocess.run([sys.executable, "-m", "station.service_failed", "station.service",
                           "--data", str(tmp_path), "--no-journal"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    # "<2>" is journald's priority prefix: crit.
    assert done.stderr.startswith("<2>TRACK STATION DOWN: station.service")
    note = service_failed.read_failure(tmp_path)
    assert note["unit"] == "station.service" and "stopped restarting" in note["message"]
    assert json.loads((tmp_path / service_failed.STATUS_NAME).read_text()) == note
    assert not list(tmp_path.glob("*.tmp"))
    assert service_failed.clear_failure(tmp_path) is True
    assert service_failed.read_failure(tmp_path) is None
    assert service_failed.clear_failure(tmp_path) is False


def test_damaged_give_up_note_still_reads_as_a_failure(tmp_path):
    (tmp_path / service_failed.STATUS_NAME).write_text('{"unit": "station.serv')
    note = service_failed.read_failure(tmp_path)
    assert note is not None and "damaged" in note["message"]


def test_give_up_note_keeps_the_log_lines(tmp_path):
    service_failed.record_failure(tmp_path, "station.service", ["Traceback ...", "OSError: boom"])
    assert service_failed.read_failure(tmp_path)["log"][-1] == "OSError: boom"


# --- MQTT for checkpoint gates ----------------------------------------------------------------

def _written(out: str, path: str) -> str:
    """What a dry run says it would write to `path`."""
    block = re.search(rf"\+ write {re.escape(path)} .*\n((?:\s+\| .*\n?)+)", out)
    assert block, f"nothing written to {path}"
    return "".join(line.split("| ", 1)[1] + "\n" for line in block.group(1).splitlines())


def test_install_dry_run_sets_up_mosquitto_with_a_hidden_password(tmp_path):
    env = _sandbox(tmp_path)
    done = _run(INSTALL, "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    out, cmds = done.stdout, "\n".join(_commands(done.stdout))
    conf = _written(out, f"{tmp_path}/mosquitto/conf.d/station.conf")
    # Passwords on every listener: the station itself on loopback, the gates on the hotspot.
    for line in ("per_listener_settings false", "allow_anonymous false",
                 f"password_file {tmp_path}/mosquitto/station.passwd",
                 "listener 1883 127.0.0.1", "listener 1883 10.42.0.1", "max_queued_messages 200000"):
        assert line in conf.splitlines(), line
    # The password: generated, kept in /etc/station for the station, hashed for mosquitto
    # (never on a command line), never printed.
    assert _written(out, f"{tmp_path}/etc/mqtt-password").strip() == "<mqtt password>"
    assert "(mode 0640, root:station)" in out.split(f"write {tmp_path}/etc/mqtt-password")[1].splitlines()[0]
    assert _written(out, f"{tmp_path}/mosquitto/station.passwd").strip() == "station:<mqtt password>"
    assert f"mosquitto_passwd -U {tmp_path}/mosquitto/station.passwd" in cmds
    assert not re.search(r"mosquitto_passwd .*-b", cmds)
    # It retries until the hotspot address exists, and the station's config points at it.
    dropin = _written(out, f"{tmp_path}/units/mosquitto.service.d/station.conf")
    assert "Restart=on-failure" in dropin and "StartLimitIntervalSec=0" in dropin
    assert "systemctl restart mosquitto.service" in cmds
    config = load_config(ROOT / "deploy" / "station.toml")
    assert (config.mqtt_host, config.mqtt_role, config.mqtt_username) == ("127.0.0.1", "finish", "station")
    assert config.mqtt_password_file == "/etc/station/mqtt-password"
    assert _files_under(tmp_path) == []


def test_install_dry_run_keeps_the_mqtt_password_and_never_prints_it(tmp_path):
    env = _sandbox(tmp_path)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "mqtt-password").write_text("kept-mqtt-password-0123\n")
    (tmp_path / "mosquitto").mkdir()
    (tmp_path / "mosquitto" / "station.passwd").write_text("station:$7$hashed\n")
    done = _run(INSTALL, "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    assert "password kept" in done.stdout and "station.passwd exists: kept" in done.stdout
    assert "kept-mqtt-password-0123" not in done.stdout + done.stderr
    assert "password begins 'kept'" in done.stdout  # enough to compare on a gate, no more
    assert "mosquitto_passwd" not in done.stdout


def test_install_dry_run_for_a_checkpoint_gate(tmp_path):
    env = _sandbox(tmp_path)
    (tmp_path / "chrony.conf").write_text("pool 2.debian.pool.ntp.org iburst\nmakestep 1 3\n")
    (tmp_path / "mqtt-password").write_text("the-finish-pis-password\n")
    (tmp_path / "hotspot.txt").write_text(f"ssid=Club-North\npassphrase={PASSPHRASE}\n")
    done = _run(INSTALL, "--dry-run", "--gate", "g200", "--finish", "10.42.0.1", "--position", "150",
                "--mqtt-password-file", str(tmp_path / "mqtt-password"),
                "--hotspot-file", str(tmp_path / "hotspot.txt"), env=env)
    assert done.returncode == 0, done.stderr
    out, cmds = done.stdout, "\n".join(_commands(done.stdout))
    assert re.findall(r"^== (\d+)/12 ", out, flags=re.M) == [str(n) for n in range(1, 13)]
    # No hotspot, no broker: it joins the finish Pi's Wi-Fi as a client.
    assert "station-hotspot" not in cmds and "mosquitto" not in cmds
    nm = next(c for c in _commands(out) if c.startswith("nmcli connection add"))
    assert "con-name station-uplink" in nm and "ssid Club-North" in nm and "wifi-sec.psk <passphrase>" in nm
    assert "802-11-wireless.mode ap" not in nm
    # chrony: a client of the finish Pi that steps whenever off, Debian's makestep out of the way.
    chrony = _written(out, f"{tmp_path}/chrony/station.conf")
    assert "server 10.42.0.1 iburst minpoll 0 maxpoll 4 prefer" in chrony and "makestep 0.1 -1" in chrony
    assert "allow" not in chrony
    assert f"sed -i s/\\^makestep\\ /#station:\\ makestep\\ / {tmp_path}/chrony.conf" in cmds
    # The MQTT password copied from the finish Pi, never printed.
    assert _written(out, f"{tmp_path}/etc/mqtt-password").strip() == "<mqtt password>"
    assert "the-finish-pis-password" not in out + done.stderr and PASSPHRASE not in out + done.stderr
    # Its config: this gate's beam, sending to the finish station; and it parses.
    text = _written(out, f"{tmp_path}/etc/station.toml")
    config = __import__("station.config", fromlist=["loads_config"]).loads_config(text)
    assert (config.mqtt_role, config.mqtt_gate, config.mqtt_host) == ("gate", "g200", "10.42.0.1")
    assert config.gate("g200").position_m == 150 and config.gate("g200").pin == 17
    assert 'id = "g200"  position_m = 150' in out  # what to add on the finish Pi
    assert "deploy_info" not in cmds  # no join code: it has no hotspot
    assert _files_under(tmp_path) == sorted(tmp_path / n for n in ("chrony.conf", "hotspot.txt", "mqtt-password"))


@pytest.mark.parametrize("args, problem", [
    (["--gate", "g200"], "--finish"),
    (["--finish", "10.42.0.1"], "--gate"),
    (["--gate", "g 200", "--finish", "10.42.0.1"], "--gate"),
    (["--gate", "g200", "--finish", "10.42.0.1;reboot"], "--finish"),
    (["--gate", "g200", "--finish", "10.42.0.1", "--position", "0"], "--position"),
    (["--gate", "g200", "--finish", "10.42.0.1", "--mqtt-password-file", "/nonexistent"], "/nonexistent"),
    (["--mqtt-password-file", "x"], "checkpoint gate"),
])
def test_install_refuses_bad_gate_options(args, problem):
    bad = _run(INSTALL, "--dry-run", *args)
    assert bad.returncode != 0 and problem in bad.stderr


def test_uninstall_dry_run_removes_the_broker_and_gate_settings(tmp_path):
    env = _sandbox(tmp_path)
    (tmp_path / "chrony.conf").write_text("#station: makestep 1 3\n")
    done = _run(UNINSTALL, "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    cmds = _commands(done.stdout)
    for expected in (f"rm -f {tmp_path}/mosquitto/conf.d/station.conf",
                     f"rm -f {tmp_path}/mosquitto/station.passwd",
                     f"rm -f {tmp_path}/units/mosquitto.service.d/station.conf",
                     "systemctl try-restart mosquitto.service",
                     "nmcli connection delete station-uplink",
                     f"sed -i s/\\^#station:\\ makestep\\ /makestep\\ / {tmp_path}/chrony.conf"):
        assert expected in cmds, expected
    assert (tmp_path / "chrony.conf").read_text() == "#station: makestep 1 3\n"
