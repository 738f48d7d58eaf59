"""The pure engine (SPEC §4): events in, laps, passes, splits, alarms and faults out.

`Engine` (core.py) is the only entry point; the result rows are in model.py.
"""

from .core import Engine
from .model import Alarm, Fault, Lap, Pass, Results, Split

__all__ = ["Engine", "Results", "Lap", "Pass", "Split", "Alarm", "Fault"]
