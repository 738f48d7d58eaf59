"""Station configuration: TOML in, a validated `Config` out (SPEC §3).

Every key has a default except `track.length_m`; unknown keys and impossible values are
`ConfigError`s that name the key (`gates[1].position_m`, `cameras[0].covers_m`, ...), so a
coach editing the file sees exactly what to fix. The project's own keys (pins, web, buzzer)
live next to SPEC's and follow the same rules. Every number has an allowed range, checked
with its type before any rule that combines keys, so `track.length_m = 1` is reported as
itself, not as the camera stretch it makes impossible. The settings page goes through here too.

To add a key: add it to the table's schema below (name -> (type, default[, range])), then read
it from the dataclass. Nothing else parses the TOML.
"""

from __future__ import annotations

import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUIRED = object()  # marks a key with no default

# A schema is {key: (accepted python types, default[, (lowest, highest)])}. bool is excluded
# from numbers on purpose: TOML `true` must not pass as `length_m = 1`. Every number has a
# range (inclusive, in the unit its name ends with), wide enough for any real station and
# narrow enough that a typo cannot quietly switch a feature off; NaN and inf are outside it.
NUM = (int, float)
MAX_BIB = 292
PORT = (1, 65535)
BCM_PIN = (0, 53)     # every GPIO the Pi's SoC has; the 40-pin header has 0-27

# From a 50 m loop in a sports hall to a 10 km loop in a park (SPEC's examples: 400, 200).
TRACK_SCHEMA = {"length_m": (NUM, REQUIRED, (50, 10_000))}
GATE_SCHEMA = {
    "id": (str, REQUIRED),
    "position_m": (NUM, REQUIRED, (0, 10_000)),  # and less than track.length_m
    # GPIO wiring of this gate's beam receiver (BCM numbering); no pin means no beam here.
    "pin": ((int, type(None)), None, BCM_PIN),
    "pull_up": (bool, True),
    # Level that means "beam broken". Most receivers pull the output low when the beam is
    # broken ("NPN, normally open"); with pull_up=true that is active-low, gpiozero's default.
    "active_state": ((bool, type(None)), None),
}
CAMERA_SCHEMA = {
    "id": (str, REQUIRED),
    "gate": (str, REQUIRED),
    "covers_m": (list, REQUIRED),
    "looks": (str, REQUIRED),
    # picamera2 camera number, capture size and rate; ignored by the fake camera. Sizes up
    # to the 64 MP sensors', rates up to the high-speed modes (Camera Module 3: 120 fps).
    "index": (int, 0, (0, 15)),
    "width": (int, 1280, (32, 10_000)),
    "height": (int, 720, (32, 10_000)),
    "fps": (NUM, 10, (1, 240)),
}
# A name is one line of text (no control characters): it is printed on bibs and in CSV files.
RUNNER_SCHEMA = {"bib": (int, REQUIRED, (1, MAX_BIB)), "name": (str, "")}
LAPS_SCHEMA = {
    # From a sprinter on a 50 m loop (~7 s a lap; max_lap_s above it) to a walker going round
    # a 10 km loop (~2.5 h). SPEC keys: generous, so no other tool's config is refused; the
    # bounds stop absurd values (1e12, negatives), not unusual ones.
    "min_lap_s": (NUM, 20, (1, 3600)),
    "max_lap_s": (NUM, 900, (5, 86_400)),
}
SAFETY_SCHEMA = {
    # A spotter follows the backward runner closely: a 30 s gap is a walking spotter 35 m
    # behind, already too far to watch the way ahead. SPEC keys, so the bounds are generous
    # (another tool's config must load); a timeout of hours would silence the alarm.
    "spotter_lead_s": (NUM, 2, (0, 60)),
    "spotter_timeout_s": (NUM, 5, (0.5, 120)),
}
PASSES_SCHEMA = {
    # Breaks shorter than this are rain drops and insects (0.5-4 ms), not bodies. At most
    # 20 ms: a sprinter's torso (0.3 m at 12 m/s) cuts the beam for 25 ms.
    "glitch_ms": (NUM, 6, (0, 20)),
    # Breaks closer than this belong to one body (arms, legs, torso of one runner); 2 s is a
    # slow walker's swinging arm well clear of the torso.
    "merge_ms": (NUM, 250, (0, 2000)),
    # A beam broken this long is a fault (someone standing in it), not a pass. At least 2 s:
    # a walker's torso takes 1 s; at most 10 min before a blocked beam is reported.
    "blocked_after_s": (NUM, 10, (2, 600)),
}
HARDWARE_SCHEMA = {
    # gpiozero pin factory: "lgpio" (Pi 5, and works on older Pis), "rpigpio" (Pi 4 and
    # older), or "mock" (simulation and tests). Named here so a missing GPIO chip is an error
    # at start-up, never a silent fall-back to another factory.
    "pin_factory": (str, "lgpio"),
    "buzzer_pin": ((int, type(None)), None, BCM_PIN),
    "buzzer_tonal": (bool, False),
}
STATION_SCHEMA = {
    "id": (str, "station"),
}
WEB_SCHEMA = {
    "host": (str, "0.0.0.0"),
    "port": (int, 8080, PORT),
    # Host names the dashboard answers to (besides IP addresses); anything else is refused,
    # which stops DNS-rebinding pages from driving the coach's console.
    "hostnames": (list, ["localhost", "station.local"]),
    # One per open page (each holds a long-poll, see station/web/live.py) plus a few spare.
    "threads": (int, 64, (4, 512)),
    # Let a coach's phone set the system clock (timedatectl; needs privileges). The time set
    # is recorded as a `clock` event either way.
    "set_system_clock": (bool, False),
}
MQTT_SCHEMA = {
    # Checkpoint gates on other Pis (station/mqtt.py). The broker's address; "" = none.
    "host": (str, ""),
    "port": (int, 1883, PORT),
    # "finish": this station takes in the gates' events. "gate": this Pi is checkpoint
    # `gate` and publishes its beam and camera events to the finish station.
    "role": (str, "finish"),
    "gate": (str, ""),
    # Broker login; the password is read from a file (root:station 0640, deploy/install.sh).
    "username": (str, ""),
    "password_file": (str, ""),
}

TOP_LEVEL = {
    "station": ("table", STATION_SCHEMA),
    "track": ("table", TRACK_SCHEMA),
    "gates": ("array", GATE_SCHEMA),
    "cameras": ("array", CAMERA_SCHEMA),
    "runners": ("array", RUNNER_SCHEMA),
    "laps": ("table", LAPS_SCHEMA),
    "safety": ("table", SAFETY_SCHEMA),
    "passes": ("table", PASSES_SCHEMA),
    "hardware": ("table", HARDWARE_SCHEMA),
    "web": ("table", WEB_SCHEMA),
    "mqtt": ("table", MQTT_SCHEMA),
}

LOOKS = ("oncoming", "departing")
PIN_FACTORIES = ("lgpio", "rpigpio", "mock")
MQTT_ROLES = ("finish", "gate")
UNITS = {"_ms": "ms", "_s": "s", "_m": "m"}
# Characters a name must not hold: control characters (newline, tab, NUL...) and line breaks.
NOT_IN_NAMES = ("Cc", "Zl", "Zp", "Cs")


class ConfigError(ValueError):
    """A configuration problem; `key` names where it is (e.g. `cameras[0].covers_m`)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class Gate:
    id: str
    position_m: float
    pin: int | None = None
    pull_up: bool = True
    active_state: bool | None = None

    @property
    def is_finish(self) -> bool:
        return self.position_m == 0


@dataclass(frozen=True)
class Camera:
    id: str
    gate: str
    covers_m: tuple[float, float]
    looks: str
    quarter: int  # 1..4, the quarter that holds covers_m
    index: int = 0
    width: int = 1280
    height: int = 720
    fps: float = 10


@dataclass(frozen=True)
class Runner:
    bib: int
    name: str = ""


@dataclass(frozen=True)
class Config:
    length_m: float
    gates: tuple[Gate, ...]
    cameras: tuple[Camera, ...] = ()
    runners: tuple[Runner, ...] = ()
    station_id: str = "station"
    min_lap_s: float = 20
    max_lap_s: float = 900
    spotter_lead_s: float = 2
    spotter_timeout_s: float = 5
    glitch_ms: float = 6
    merge_ms: float = 250
    blocked_after_s: float = 10
    pin_factory: str = "lgpio"
    buzzer_pin: int | None = None
    buzzer_tonal: bool = False
    web_host: str = "0.0.0.0"
    web_port: int = 8080
    web_hostnames: tuple[str, ...] = ("localhost", "station.local")
    web_threads: int = 64
    web_set_system_clock: bool = False
    mqtt_host: str = ""
    mqtt_port: int = 1883
    mqtt_role: str = "finish"
    mqtt_gate: str = ""
    mqtt_username: str = ""
    mqtt_password_file: str = ""
    # The parsed TOML as given (no defaults filled in), for writing the file back.
    source: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def finish(self) -> Gate:
        return next(g for g in self.gates if g.is_finish)

    def gate(self, gate_id: str) -> Gate:
        return next(g for g in self.gates if g.id == gate_id)

    def cameras_of(self, gate_id: str) -> tuple[Camera, ...]:
        return tuple(c for c in self.cameras if c.gate == gate_id)

    def runner_name(self, bib: int) -> str:
        for r in self.runners:
            if r.bib == bib:
                return r.name
        return ""

    def quarter_of(self, position_m: float) -> int:
        """The quarter (1..4) that holds a track position."""
        return min(4, int((position_m % self.length_m) // (self.length_m / 4)) + 1)


def _typename(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", type(None): "absent"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def _check_table(raw: Any, schema: dict, where: str) -> dict:
    """Validate one TOML table against its schema; return it with defaults filled in."""
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a table")
    for key in raw:
        if key not in schema:
            known = ", ".join(schema)
            raise ConfigError(f"{where}.{key}", f"unknown key (known here: {known})")
    out = {}
    for key, (types, default, *allowed) in schema.items():
        name = f"{where}.{key}"
        if key not in raw:
            if default is REQUIRED:
                raise ConfigError(name, "is required")
            out[key] = list(default) if isinstance(default, list) else default
            continue
        value = raw[key]
        accepted = types if isinstance(types, tuple) else (types,)
        if isinstance(value, bool) and bool not in accepted:
            raise ConfigError(name, f"must be {_typename(types)}, not {value!r}")
        if not isinstance(value, accepted):
            raise ConfigError(name, f"must be {_typename(types)}, not {value!r}")
        if allowed and value is not None:
            _check_range(value, allowed[0], name)
        out[key] = value
    return out


def _check_range(value: float, allowed: tuple, name: str) -> None:
    lo, hi = allowed
    if not lo <= value <= hi:  # NaN compares false: refused too
        unit = next((u for suffix, u in UNITS.items() if name.endswith(suffix)), "")
        raise ConfigError(name, f"must be between {lo:g} and {hi:g}{f' ({unit})' if unit else ''}, "
                          f"not {value:g}")


def _check_name(name: str, where: str) -> str:
    bad = next((c for c in name if unicodedata.category(c) in NOT_IN_NAMES), None)
    if bad is not None:
        raise ConfigError(where, f"must be one line of text without control characters, not "
                          f"{name!r} (it holds U+{ord(bad):04X})")
    return name


def parse_config(raw: dict) -> Config:
    """Validate a parsed TOML document (a dict) and build the `Config`."""
    for key in raw:
        if key not in TOP_LEVEL:
            raise ConfigError(key, f"unknown key (known: {', '.join(TOP_LEVEL)})")
    tables = {}
    for key, (kind, schema) in TOP_LEVEL.items():
        value = raw.get(key, [] if kind == "array" else {})
        if kind == "array":
            if not isinstance(value, list):
                raise ConfigError(key, "must be an array of tables ([[%s]])" % key)
            tables[key] = [_check_table(item, schema, f"{key}[{i}]") for i, item in enumerate(value)]
        else:
            if key == "track" and key not in raw:
                raise ConfigError("track.length_m", "is required")
            tables[key] = _check_table(value, schema, key)

    length_m = float(tables["track"]["length_m"])

    gates = []
    seen_gates: set[str] = set()
    for i, g in enumerate(tables["gates"]):
        if g["id"] in seen_gates:
            raise ConfigError(f"gates[{i}].id", f"duplicate gate id {g['id']!r}")
        seen_gates.add(g["id"])
        pos = float(g["position_m"])
        if not 0 <= pos < length_m:
            raise ConfigError(f"gates[{i}].position_m", f"must be in [0, {length_m:g}), not {pos:g}")
        gates.append(Gate(g["id"], pos, g["pin"], g["pull_up"], g["active_state"]))
    if not any(g.is_finish for g in gates):
        raise ConfigError("gates", "no gate at position_m = 0: the finish gate is required")

    quarter_m = length_m / 4
    cameras = []
    seen_cams: set[str] = set()
    for i, c in enumerate(tables["cameras"]):
        where = f"cameras[{i}]"
        if c["id"] in seen_cams:
            raise ConfigError(f"{where}.id", f"duplicate camera id {c['id']!r}")
        seen_cams.add(c["id"])
        if c["gate"] not in seen_gates:
            raise ConfigError(f"{where}.gate", f"names unknown gate {c['gate']!r}")
        cov = c["covers_m"]
        if len(cov) != 2 or not all(isinstance(x, NUM) and not isinstance(x, bool) for x in cov):
            raise ConfigError(f"{where}.covers_m", f"must be two numbers [a, b], not {cov!r}")
        a, b = float(cov[0]), float(cov[1])
        if not 0 <= a < b <= length_m:
            raise ConfigError(f"{where}.covers_m", f"must satisfy 0 <= a < b <= {length_m:g}, not {cov!r}")
        q_a = int(a // quarter_m)
        # b may sit exactly on the quarter's end (e.g. [370, 400]).
        q_b = int(b // quarter_m) - (1 if b % quarter_m == 0 else 0)
        if q_a != q_b:
            raise ConfigError(f"{where}.covers_m", f"{cov!r} crosses a quarter boundary "
                              f"(quarters are {quarter_m:g} m long)")
        if c["looks"] not in LOOKS:
            raise ConfigError(f"{where}.looks", f"must be one of {', '.join(LOOKS)}, not {c['looks']!r}")
        cameras.append(Camera(c["id"], c["gate"], (a, b), c["looks"], q_a + 1, c["index"],
                              c["width"], c["height"], float(c["fps"])))

    runners = []
    seen_bibs: set[int] = set()
    for i, r in enumerate(tables["runners"]):
        if r["bib"] in seen_bibs:
            raise ConfigError(f"runners[{i}].bib", f"duplicate bib {r['bib']}")
        seen_bibs.add(r["bib"])
        runners.append(Runner(r["bib"], _check_name(r["name"], f"runners[{i}].name")))

    laps, safety, passes = tables["laps"], tables["safety"], tables["passes"]
    min_lap_s, max_lap_s = float(laps["min_lap_s"]), float(laps["max_lap_s"])
    if max_lap_s <= min_lap_s:
        raise ConfigError("laps.max_lap_s", f"must be greater than laps.min_lap_s ({min_lap_s:g})")
    hw, web = tables["hardware"], tables["web"]
    if hw["pin_factory"] not in PIN_FACTORIES:
        raise ConfigError("hardware.pin_factory",
                          f"must be one of {', '.join(PIN_FACTORIES)}, not {hw['pin_factory']!r}")
    if not all(isinstance(h, str) for h in web["hostnames"]):
        raise ConfigError("web.hostnames", "must be a list of strings")
    mqtt = _check_mqtt(tables["mqtt"], gates)

    return Config(
        length_m=length_m,
        gates=tuple(gates),
        cameras=tuple(cameras),
        runners=tuple(runners),
        station_id=tables["station"]["id"],
        min_lap_s=min_lap_s,
        max_lap_s=max_lap_s,
        spotter_lead_s=float(safety["spotter_lead_s"]),
        spotter_timeout_s=float(safety["spotter_timeout_s"]),
        glitch_ms=float(passes["glitch_ms"]),
        merge_ms=float(passes["merge_ms"]),
        blocked_after_s=float(passes["blocked_after_s"]),
        pin_factory=hw["pin_factory"],
        buzzer_pin=hw["buzzer_pin"],
        buzzer_tonal=hw["buzzer_tonal"],
        web_host=web["host"],
        web_port=web["port"],
        web_hostnames=tuple(web["hostnames"]),
        web_threads=web["threads"],
        web_set_system_clock=web["set_system_clock"],
        mqtt_host=mqtt["host"],
        mqtt_port=mqtt["port"],
        mqtt_role=mqtt["role"],
        mqtt_gate=mqtt["gate"],
        mqtt_username=mqtt["username"],
        mqtt_password_file=mqtt["password_file"],
        source=raw,
    )


def _check_mqtt(mqtt: dict, gates: list[Gate]) -> dict:
    """The [mqtt] table's rules beyond types: a gate Pi names its broker and its gate."""
    if mqtt["role"] not in MQTT_ROLES:
        raise ConfigError("mqtt.role", f"must be one of {', '.join(MQTT_ROLES)}, not {mqtt['role']!r}")
    if mqtt["role"] == "gate":
        if not mqtt["host"]:
            raise ConfigError("mqtt.host", 'is required with role = "gate": the finish '
                              "station's address (its broker)")
        if not mqtt["gate"]:
            raise ConfigError("mqtt.gate", 'is required with role = "gate": which of [[gates]] '
                              "this Pi is")
        gate = next((g for g in gates if g.id == mqtt["gate"]), None)
        if gate is None:
            raise ConfigError("mqtt.gate", f"names unknown gate {mqtt['gate']!r}")
        if gate.is_finish:
            raise ConfigError("mqtt.gate", f"{gate.id!r} is the finish gate; a checkpoint Pi "
                              "runs a gate with position_m > 0")
    elif mqtt["gate"]:
        raise ConfigError("mqtt.gate", 'is only for role = "gate" (a checkpoint Pi)')
    if mqtt["password_file"]:
        if not mqtt["username"]:
            raise ConfigError("mqtt.password_file", "needs mqtt.username")
        if not Path(mqtt["password_file"]).is_absolute():
            raise ConfigError("mqtt.password_file",
                              f"must be an absolute path, not {mqtt['password_file']!r}")
    return mqtt


def loads_config(text: str, where: str = "config") -> Config:
    """Parse TOML text; TOML syntax errors become `ConfigError`s too."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, f"not valid TOML: {exc}") from None
    return parse_config(raw)


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    return loads_config(text, str(path))
