"""The `station` command: one subcommand per job, each implemented by the module that owns it.

A module named here provides `add_arguments(parser)` and `run(args) -> int`; it is imported
only when its subcommand runs, so `station replay` never loads OpenCV or Flask.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from station import __version__
from station.config import ConfigError
from station.events import LogError

# name -> (module, one-line help)
COMMANDS = {
    "run": ("station.launch", "run the station (add --simulate for simulated runners and sensors)"),
    "replay": ("station.replay", "compute laps, passes, splits, alarms and faults from an event log"),
    "detect": ("station.sensors.tags", "read AprilTag bibs from images and print them as JSON"),
    "bibs": ("station.bibs", "write printable bib sheets (front and back tags) for runners"),
    "export": ("station.store", "export a session's raw event log from the station database"),
    "simulate": ("station.sim.cli", "write a simulated session's event log and its true laps"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="station", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"station {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # Arguments are declared by the owning module; importing it here is cheap because
        # heavy imports (cv2, flask, picamera2) happen inside its functions.
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except (ConfigError, LogError) as exc:
        print(f"station {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
