"""`station run`: builds the station from its configuration and runs it until SIGTERM.

The parts, in start order, each made by one small function below: configuration, store,
worker (engine), pin factory, beam gates, buzzer, cameras with their tag pipelines, photo
keeper, dashboard (Flask app under waitress, in this one process because the GPIO pins can be
claimed only once). systemd hears READY=1 only when all of it is up, and WATCHDOG=1 only while
the worker loop is alive. `--simulate` swaps the hardware for gpiozero's MockFactory and the
fake camera, both driven by the simulated world (station/sim) in real time x `--speed`, so
the real adapters, detector and engine all run. A part that fails to start (no camera, no
buzzer) is a fault on the dashboard; only the store, the worker and the web server are vital.
"""

from __future__ import annotations

import functools
import logging
import signal
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from station.config import Config, ConfigError, load_config, parse_config
from station.notify import Notifier
from station.store import Store, default_data_dir
from station.worker import REORDER_S, Worker

log = logging.getLogger("station")

DEFAULT_CONFIG = Path("/etc/station/station.toml")
DEMO_SCENARIO = "demo"
# BCM pins given to the simulated gates (in config order) and the buzzer, on MockFactory.
SIM_GATE_PINS = (17, 27, 5, 6, 13, 19, 26, 16)
SIM_BUZZER_PIN = 22


def add_arguments(parser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help=f"station configuration (default: {DEFAULT_CONFIG}; with "
                             "--simulate, the simulated scenario's station)")
    parser.add_argument("--data", metavar="DIR",
                        help="data folder for the database and photos (default: ./data with "
                             "--simulate, else $STATE_DIRECTORY or /var/lib/station)")
    parser.add_argument("--simulate", action="store_true",
                        help="simulated runners, beam pins and camera frames (no Pi needed)")
    parser.add_argument("--speed", type=float, default=1.0, metavar="X",
                        help="with --simulate: run the simulated world X times faster")
    parser.add_argument("--scenario", default=DEMO_SCENARIO, metavar="NAME",
                        help="with --simulate: which simulated session (see `station simulate "
                             "--list`; default: a long club session)")
    parser.add_argument("--seed", type=int, default=0, help="with --simulate: the world's seed")
    parser.add_argument("--no-camera", action="store_true",
                        help="with --simulate: no camera frames (laps from the beam alone)")
    parser.add_argument("--host", help="dashboard address to listen on (default: from the config)")
    parser.add_argument("--port", type=int, help="dashboard port; 0 picks a free one")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])


# -- the parts ----------------------------------------------------------------------------


def load(args) -> tuple[Config, Path | None]:
    """The configuration and the file it came from (None: the simulated scenario's)."""
    if args.config:
        config = load_config(args.config)
        if args.simulate:
            # A real station's file on mock hardware: never write the mock pins back to it.
            return simulated_config(config), None
        return config, Path(args.config)
    if args.simulate:
        return simulated_config(make_scenario(args).config), None
    return load_config(DEFAULT_CONFIG), DEFAULT_CONFIG


def make_scenario(args):
    return _scenario(args.scenario, args.seed)


@functools.lru_cache(maxsize=2)
def _scenario(name: str, seed: int):
    from station.sim.scenarios import build as build_scenario
    try:
        return build_scenario(name, seed=seed)
    except ValueError as exc:
        raise ConfigError("--scenario", str(exc)) from None


def simulated_config(config: Config) -> Config:
    """A scenario's station with mock hardware: a pin for every gate, a buzzer, loopback web."""
    raw = dict(config.source)
    raw["gates"] = [dict(g, pin=g.get("pin", pin)) for g, pin in zip(raw["gates"], SIM_GATE_PINS)]
    raw["hardware"] = dict(raw.get("hardware", {}), pin_factory="mock")
    raw["hardware"].setdefault("buzzer_pin", SIM_BUZZER_PIN)
    raw["web"] = dict({"host": "127.0.0.1"}, **raw.get("web", {}))
    return parse_config(raw)


def open_store(args) -> Store:
    folder = Path(args.data) if args.data else default_data_dir(args.simulate)
    try:
        return Store(folder)
    except (OSError, sqlite3.Error) as exc:
        raise StartError(f"cannot open the database in {folder}: {exc}") from None


class StartError(RuntimeError):
    """A vital part cannot start (no GPIO, database folder not writable): a clear message,
    an exit code, and systemd's restart policy, rather than a traceback."""


def make_pin_factory(config: Config):
    """The gpiozero pin factory named in the config. A missing GPIO chip is an error here,
    never a silent fall-back to another factory."""
    from station.sensors.pins import PinFactoryError, make_pin_factory as make
    try:
        return make(config.pin_factory)
    except PinFactoryError as exc:
        raise StartError(str(exc)) from None


def local_gates(config: Config) -> set[str]:
    """The gates whose sensors are wired to this Pi: all of them, except on a checkpoint Pi
    (`mqtt.role = "gate"`), which runs only its own gate's beam and cameras."""
    if config.mqtt_host and config.mqtt_role == "gate":
        return {config.mqtt_gate}
    return {g.id for g in config.gates}


def make_beams(config: Config, factory, worker: Worker, sim=None) -> list:
    """`worker`: the sink for beam edges (the worker, or on a checkpoint Pi a `Tee`).
    With `sim` (a SimDriver), each gate's callbacks read the simulated edge's own time."""
    from station.sensors.beam import BeamGate
    here = local_gates(config)
    clocks = sim.edge_clocks() if sim is not None else {}
    beams = [BeamGate(g, worker, pin_factory=factory,
                      clock_ns=clocks.get(g.id, time.monotonic_ns))
             for g in config.gates if g.pin is not None and g.id in here]
    for beam in beams:
        beam.report_state()  # a beam already broken at start is an edge the engine must see
    return beams


def make_buzzer(config: Config, factory, worker: Worker):
    from station.sensors.buzzer import StationBuzzer
    buzzer = StationBuzzer.from_config(config, worker, pin_factory=factory)
    buzzer.self_test()
    return buzzer


def make_photos(config: Config, store: Store):
    """The photo keeper, one folder per session (the store's current one, which changes
    when a coach starts a new session), so a new session never overwrites an old photo."""
    from station.sensors.photos import PhotoKeeper
    return PhotoKeeper.from_config(store.dir / "photos", config,
                                   session=lambda: store.session.id if store.session else None,
                                   speed=store.session.speed if store.session else 1.0)


def make_camera(cam, sim=None):
    """The camera adapter: picamera2 on the Pi, the fake camera rendering the world in
    simulation (its frames stamped on the monotonic clock either way)."""
    if sim is None:
        from station.sensors.camera import PiCamera
        return PiCamera.from_config(cam)
    from station.sensors.fakecam import FakeCamera, world_scene
    return FakeCamera(cam.id, world_scene(sim.world, cam.id, cam.width, cam.height),
                      width=cam.width, height=cam.height, fps=cam.fps * sim.speed,
                      scene_time=sim.world_time)


def make_pipelines(config: Config, worker: Worker, photos, sim=None) -> list:
    """One capture + tag-detection pipeline per camera. A camera that cannot start is a fault
    that the pipeline reports (and retries); laps go on from the beam."""
    from station.sensors.pipeline import CameraPipeline
    here = local_gates(config)
    return [CameraPipeline(cam.id, make_camera(cam, sim), worker, photos=photos).start()
            for cam in config.cameras if cam.gate in here]


def make_gate_link(config: Config, worker: Worker):
    """Checkpoint gates over MQTT (station/mqtt.py), when the config names a broker: on the
    finish station the bridge that takes in the gates' events; on a checkpoint Pi
    (`mqtt.role = "gate"`) the publisher of its own events. None without a broker."""
    if not config.mqtt_host:
        return None
    from station.mqtt import GateBridge, GatePublisher, chrony_synced, read_password
    auth = {"username": config.mqtt_username or None,
            "password": (read_password(config.mqtt_password_file)
                         if config.mqtt_password_file else None)}
    if config.mqtt_role == "gate":
        return GatePublisher(config.station_id, config.mqtt_gate, config.mqtt_host,
                             config.mqtt_port, synced=chrony_synced, **auth).start()
    return GateBridge(worker, config.station_id, config.mqtt_host, config.mqtt_port,
                      **auth).start()


def make_hooks(config: Config, store: Store, buzzer, photos, simulate: bool = False, *,
               pipelines=(), link=None):
    from station.web import Hooks
    from station.web.clock import system_clock_setter

    return Hooks(snapshot=functools.partial(photos.snapshot, config.finish.id) if photos else None,
                 photo=photos.photo if photos else None,
                 buzzer_test=buzzer.self_test if buzzer else None,
                 # A laptop running the demo must never have its clock set by a phone.
                 set_clock=(system_clock_setter(store.dir) if config.web_set_system_clock
                            and not simulate else None),
                 disk_path=store.dir,
                 camera_fps=(lambda: {p.camera_id: p.fps for p in pipelines}) if pipelines else None,
                 link_status=link.status if link is not None else None)


def make_web(config: Config, config_path: Path | None, worker: Worker, store: Store,
             host: str, port: int, hooks=None):
    """The dashboard app and its waitress server (bound, not yet serving)."""
    from station.web import create_app, make_server
    app = create_app(worker=worker, store=store, config=config, config_path=config_path,
                     hooks=hooks)
    return make_server(app, host, port, config.web_threads)


# -- the running station ------------------------------------------------------------------


@dataclass
class Station:
    """Everything `station run` started, in start order, so stop() undoes it in reverse."""

    config: Config
    store: Store
    worker: Worker
    notifier: Notifier = field(default_factory=Notifier)
    parts: list = field(default_factory=list)   # (name, stop callable)
    server: object = None
    url: str = ""
    link: object = None      # the MQTT bridge (finish) or publisher (checkpoint Pi), or None
    beams: list = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def started(self, name: str, stop) -> None:
        self.parts.append((name, stop))

    def request_stop(self, *_args) -> None:
        self._stop.set()

    def serve(self) -> None:
        """Block until asked to stop, pinging the systemd watchdog while the worker is healthy."""
        interval_s = min(Notifier.watchdog_interval_s() or 5.0, 5.0)
        last_status = ""
        while not self._stop.wait(interval_s):
            if self.worker.healthy(max_age_s=max(5.0, 2 * interval_s)):
                self.notifier.watchdog()
            else:
                log.error("worker loop not running: withholding the watchdog ping")
            status = status_line(self.worker)
            if status != last_status:
                self.notifier.status(status)
                last_status = status

    def stop(self) -> None:
        self.notifier.stopping()
        while self.parts:
            name, stop = self.parts.pop()
            try:
                stop()
            except Exception:
                log.exception("stopping %s failed", name)


def status_line(worker: Worker) -> str:
    state = worker.state
    results = state.results
    laps = len(getattr(results, "laps", ()) or ())
    faults = [f.kind for f in state.faults]
    faults += [f.kind for f in getattr(results, "active_faults", ()) or ()]
    return f"session {state.session.id}: {laps} laps" + (
        f"; faults: {', '.join(sorted(set(faults)))}" if faults else "")


def _optional(station: Station, name: str, make, *args):
    """Start an optional part; a failure is logged and shown as a fault, never fatal."""
    try:
        return make(*args)
    except Exception as exc:
        log.error("%s: failed to start: %s", name, exc)
        station.worker.submit_now("fault", kind=f"{name}_failed", source=name, active=True,
                                  message=f"start-up: {exc}")
        return None


def _stop_server(server) -> None:
    # waitress has no stop(): close every channel (the listener included) so its loop ends,
    # then let the request threads finish.
    for channel in list(server._map.values()):
        try:
            if channel is server:
                server.close()  # the listener and its wake-up trigger
            elif channel in server.active_channels.values():
                channel.handle_close()
            else:
                channel.close()
        except Exception:
            pass
    server.task_dispatcher.shutdown(timeout=5)


def build(args, stop_event: threading.Event | None = None) -> Station:
    """Start everything (READY is the caller's to send); on failure, undo what started.
    `stop_event` set (by a signal handler) makes serve() return."""
    config, config_path = load(args)
    speed = args.speed if args.simulate else 1.0
    if not speed > 0:
        raise ConfigError("--speed", f"must be greater than 0, not {speed!r}")
    store = open_store(args)
    try:
        store.begin_session(config.station_id, speed=speed)
    except Exception:
        store.close()
        raise
    # Sensor latency is real time: at `speed` it is `speed` times longer on the session clock.
    worker = Worker(config, store, reorder_s=REORDER_S * speed)
    station = Station(config, store, worker, _stop=stop_event or threading.Event())
    station.started("store", store.close)
    try:
        _build(station, args, config_path, speed)
    except BaseException:
        station.stop()
        raise
    return station


def _build(station: Station, args, config_path: Path | None, speed: float) -> None:
    config, store, worker = station.config, station.store, station.worker
    worker.start()
    station.started("worker", worker.stop)
    log.info("session %d (%s), data in %s", store.session.id,
             "continued" if store.session.resumed else "new", store.dir.resolve())

    factory = make_pin_factory(config)  # no GPIO is fatal: a station without its beam is none
    station.started("pins", factory.close)
    # Before the sensors: on a checkpoint Pi they feed the publisher, which must outlive them.
    link = station.link = _optional(station, "mqtt", make_gate_link, config, worker)
    if link is not None:
        station.started("mqtt", link.stop)
    sink = worker
    if link is not None and link.role == "gate":
        from station.mqtt import Tee
        sink = Tee(worker, link)  # its own log, and the finish station's
    # A checkpoint Pi has no buzzer: alarms are the finish station's.
    buzzer = (None if link is not None and link.role == "gate"
              else _optional(station, "buzzer", make_buzzer, config, factory, worker))
    if buzzer is not None:
        worker.buzzer = buzzer
        station.started("buzzer", buzzer.close)
    # Before the beams: their callbacks read the simulated edges' times (SimDriver).
    sim = SimDriver(make_scenario(args), config, factory, worker, speed) if args.simulate else None
    for beam in make_beams(config, factory, sink, sim):
        station.beams.append(beam)
        station.started(f"beam {beam.gate_id}", beam.close)

    photos = _optional(station, "photos", make_photos, config, store)
    worker.photos = photos
    pipelines = []
    if config.cameras and not (args.simulate and args.no_camera):
        for pipeline in _optional(station, "camera", make_pipelines, config, sink, photos,
                                  sim) or ():
            pipelines.append(pipeline)
            station.started(f"camera {pipeline.camera_id}", pipeline.stop)
    if sim is not None:
        sim.start()
        station.started("simulation", sim.stop)

    host = args.host or config.web_host
    port = config.web_port if args.port is None else args.port
    hooks = make_hooks(config, store, buzzer, photos, args.simulate, pipelines=pipelines,
                       link=link)
    server = make_web(config, config_path, worker, store, host, port, hooks)
    thread = threading.Thread(target=server.run, name="web", daemon=True)
    thread.start()
    station.server = server
    station.started("web", lambda: (_stop_server(server), thread.join(5)))
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    station.url = f"http://{shown}:{server.effective_port}/"


# -- simulation ---------------------------------------------------------------------------


class SimDriver:
    """Plays a simulated world at real time x speed: its beam edges on the MockFactory pins
    (the real BeamGate callbacks submit them, stamped by `edge_clocks()` with each edge's
    scheduled time, so a thread woken late at a high --speed never shortens a break) and
    its runners' phone check-ins; the fake cameras render the same world on the same time
    base (`world_time`)."""

    WINDOW_S = 2.0

    def __init__(self, scenario, config: Config, factory, worker: Worker, speed: float):
        from station.sensors.beam import SimulatedBeam
        self.world, self.worker, self.speed = scenario.world, worker, speed
        self.beams = {g.id: SimulatedBeam.for_gate(g, factory)
                      for g in config.gates if g.pin is not None}
        self.origin_ns = time.monotonic_ns()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._checkins, name="sim-checkins", daemon=True)

    def world_time(self, t_ns: int) -> float:
        return (t_ns - self.origin_ns) * self.speed / 1e9

    def edge_clocks(self) -> dict:
        """gate id -> the clock its BeamGate should read: the scheduled time of the edge
        being played, so edges are right at any --speed however late the thread wakes."""
        return {gate: beam.clock_ns for gate, beam in self.beams.items()}

    def monotonic_ns(self, world_s: float) -> int:
        return self.origin_ns + int(world_s / self.speed * 1e9)

    def start(self) -> None:
        for gate, beam in self.beams.items():
            beam.play(self._edges(gate), self.monotonic_ns)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for beam in self.beams.values():
            beam.stop()
        self._thread.join(5)

    def _edges(self, gate: str):
        """The gate's edges, fetched a window at a time (the world may be endless)."""
        t0, end_s = 0.0, getattr(self.world, "end_s", None) or float("inf")
        while t0 < end_s and not self._stop.is_set():
            yield from self.world.beam_edges(gate, t0, t0 + self.WINDOW_S)
            t0 += self.WINDOW_S

    def _checkins(self) -> None:
        for t_s, kind, bib in self.world.checkins:
            due_ns = self.monotonic_ns(t_s)
            wait_s = (due_ns - time.monotonic_ns()) / 1e9
            if wait_s > 0 and self._stop.wait(wait_s) or self._stop.is_set():
                return
            self.worker.submit(kind, due_ns, bib=bib)


# -- `station run` ------------------------------------------------------------------------


def run(args) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop_event = threading.Event()
    # Installed first: a SIGTERM while starting up still ends in a clean stop.
    signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: stop_event.set())
    try:
        station = build(args, stop_event)
    except StartError as exc:
        print(f"station run: error: {exc}", file=sys.stderr)
        return 2
    try:
        station.notifier.ready(status_line(station.worker))
        print(f"station: dashboard at {station.url}", flush=True)
        if args.simulate:
            print(f"station: simulating at {args.speed:g}x; Ctrl-C to stop", flush=True)
        station.serve()
    finally:
        station.stop()
    return 0
