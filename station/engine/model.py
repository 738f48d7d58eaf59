"""What the engine concludes: immutable result rows (SPEC §5 columns as attributes).

Times are session seconds (floats); the CSV writers round them to 3 decimals. `Results`
is a snapshot: the live dashboard, the buzzer and the replay writer all read the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# How a pass was credited, best first (SPEC §4), plus the two that are not guesses.
TAG, PREDICTED, SOLO, ANONYMOUS, CAMERA, MANUAL = (
    "tag", "predicted", "solo", "anonymous", "camera", "manual")

# Quarter facings (SPEC §4).
FORWARD, BACKWARD, MIXED, UNOBSERVED = "forward", "backward", "mixed", "unobserved"

# How an alarm was cleared (empty while it sounds).
COMPANION, SEEN_FORWARD, SILENCED = "companion", "forward", "silenced"

BEAM_BLOCKED = "beam_blocked"


@dataclass(frozen=True, slots=True)
class Pass:
    gate: str
    t_s: float
    bibs: tuple[int, ...]
    source: str
    # A coach deleted it: kept (so it can be restored) but it makes no lap.
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Lap:
    bib: int
    name: str
    run: int
    lap: int
    start_s: float
    end_s: float
    lap_s: float
    q1: str
    q2: str
    q3: str
    q4: str
    source: str


@dataclass(frozen=True, slots=True)
class Split:
    bib: int
    run: int
    lap: int
    gate: str
    t_s: float
    split_s: float


@dataclass(frozen=True, slots=True)
class Alarm:
    bib: int
    gate: str
    seen_s: float
    alarm_s: float
    cleared_s: float | None = None
    reason: str = ""

    @property
    def active(self) -> bool:
        return self.cleared_s is None


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    gate: str
    start_s: float
    end_s: float | None = None
    # Which device (camera id, `buzzer`, `store`; the gate for a blocked beam) and why, as
    # the sensor said it: what a coach needs to fix it.
    source: str = ""
    message: str = ""

    @property
    def active(self) -> bool:
        return self.end_s is None


@dataclass(frozen=True, slots=True)
class Results:
    laps: tuple[Lap, ...] = ()
    passes: tuple[Pass, ...] = ()
    splits: tuple[Split, ...] = ()
    alarms: tuple[Alarm, ...] = ()
    faults: tuple[Fault, ...] = ()
    checked_in: frozenset[int] = field(default_factory=frozenset)
    now_s: float = 0.0
    # (gate, rough crossing time) of beam passes not yet credited: the live dashboard shows
    # them at once, while credit waits for the cameras. Never written to the CSV files.
    provisional: tuple[tuple[str, float], ...] = ()

    @property
    def active_alarms(self) -> tuple[Alarm, ...]:
        return tuple(a for a in self.alarms if a.cleared_s is None)

    @property
    def active_faults(self) -> tuple[Fault, ...]:
        return tuple(f for f in self.faults if f.end_s is None)
