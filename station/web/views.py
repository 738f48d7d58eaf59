"""What the pages show, computed from the engine's `Results`: board rows, a runner's laps
and run totals, the track diagram's quarters and the lap-time chart's geometry.

Pure functions of (results, config): no Flask, no I/O, so they are easy to test and cheap
to cache per state version. Templates only lay these values out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from station.config import MAX_BIB
from station.engine.model import Results

FACINGS = ("forward", "backward", "mixed", "unobserved")
EMPTY = Results()


def is_count(text: str) -> bool:
    """Only ASCII digits: str.isdigit() also takes '３' and '²', which int() reads or refuses
    and which must never reach a header or a file name."""
    return text.isascii() and text.isdigit()


def is_bib(text: str, low: int = 1) -> bool:
    """A bib number as typed in a form or a CSV cell: `low` (0: anonymous) to MAX_BIB."""
    return is_count(text) and low <= int(text) <= MAX_BIB


def results_of(state) -> Results:
    """The state's engine results (empty before the worker's first build)."""
    return getattr(state, "results", None) or EMPTY


def fmt_s(value, places: int = 2) -> str:
    """A duration for people: 58.31, 1:32.47, 1:02:03; empty for None."""
    if value is None or value == "":
        return ""
    value = float(value)
    if value < 0:
        return "-" + fmt_s(-value, places)
    if value < 60:
        return f"{value:.{places}f}"
    minutes, seconds = divmod(value, 60)
    if minutes < 60:
        width = 3 + places if places else 2
        return f"{int(minutes)}:{seconds:0{width}.{places}f}"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{int(seconds):02d}"


def fmt_clock(t_s) -> str:
    """A session time as a clock reading: 0:20:34.6 (what a coach compares with the board)."""
    if t_s is None:
        return ""
    t_s = float(t_s)
    hours, rest = divmod(t_s, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{int(hours)}:{int(minutes):02d}:{seconds:04.1f}"


def fmt_distance(m) -> str:
    return f"{m / 1000:.1f} km" if m >= 1000 else f"{m:.0f} m"


def spoken_s(value) -> str:
    """A lap time as words a phone's speech can say: "1 minute 32.4 seconds"."""
    value = float(value)
    minutes, seconds = divmod(value, 60)
    secs = f"{seconds:.1f} seconds"
    if minutes >= 1:
        return f"{int(minutes)} minute{'s' if minutes >= 2 else ''} {secs}"
    return secs


def register_filters(app) -> None:
    app.jinja_env.filters["dur"] = fmt_s
    app.jinja_env.filters["t3"] = lambda v: "" if v is None else f"{float(v):.3f}"
    app.jinja_env.filters["metres"] = fmt_distance
    app.jinja_env.filters["clock"] = fmt_clock


def pass_bibs(p) -> tuple[int, ...]:
    """A pass's credited bibs as ints, whatever form the engine keeps them in."""
    bibs = getattr(p, "bibs", ())
    if isinstance(bibs, str):
        return tuple(int(b) for b in bibs.split())
    if isinstance(bibs, int):
        return (bibs,)
    return tuple(int(b) for b in bibs)


def is_deleted(p) -> bool:
    return bool(getattr(p, "deleted", False))


def quarters(lap) -> tuple[str, str, str, str]:
    return tuple(getattr(lap, f"q{i}", "unobserved") or "unobserved" for i in range(1, 5))


# ---- board -------------------------------------------------------------------------------

@dataclass
class BoardRow:
    bib: int
    name: str
    run: int = 0
    laps: int = 0
    last_lap_s: float | None = None
    best_lap_s: float | None = None
    lap_start_s: float | None = None  # start of the lap under way (for the ticking clock)
    checked_in: bool = False
    alarm: bool = False
    last_seen_s: float = -1.0
    backward_quarters: int = 0


def board(results, config, now_s: float) -> list[BoardRow]:
    """One row per runner seen this session (or checked in), most recently active first."""
    rows: dict[int, BoardRow] = {}

    def row(bib: int) -> BoardRow:
        r = rows.get(bib)
        if r is None:
            r = rows[bib] = BoardRow(bib, config.runner_name(bib))
        return r

    for lap in results.laps:
        if lap.bib == 0:
            continue
        r = row(lap.bib)
        if lap.run != r.run:  # laps arrive in order within a runner; a new run resets counts
            r.run, r.laps, r.best_lap_s = lap.run, 0, None
        r.laps += 1
        r.last_lap_s = lap.lap_s
        r.best_lap_s = lap.lap_s if r.best_lap_s is None else min(r.best_lap_s, lap.lap_s)
        r.last_seen_s = max(r.last_seen_s, lap.end_s)
        r.backward_quarters += sum(q == "backward" for q in quarters(lap))
    finish_id = config.finish.id
    for p in results.passes:
        if p.gate != finish_id or is_deleted(p):
            continue
        for bib in pass_bibs(p):
            if bib == 0:
                continue
            r = row(bib)
            r.last_seen_s = max(r.last_seen_s, p.t_s)
    for bib in getattr(results, "checked_in", ()) or ():
        if bib:
            row(bib).checked_in = True
    for a in results.alarms:
        if getattr(a, "cleared_s", None) is None and a.bib in rows:
            rows[a.bib].alarm = True
    for r in rows.values():
        # The lap under way started at the runner's last finish pass, unless the run ended.
        if r.last_seen_s >= 0 and now_s - r.last_seen_s <= config.max_lap_s:
            r.lap_start_s = r.last_seen_s
    return sorted(rows.values(), key=lambda r: (-(r.alarm), -r.last_seen_s, r.bib))


# ---- a runner's page -------------------------------------------------------------------

@dataclass
class Run:
    run: int
    laps: list = field(default_factory=list)
    total_s: float = 0.0
    best_lap_s: float | None = None
    distance_m: float = 0.0
    backward_m: float = 0.0
    mixed_m: float = 0.0


@dataclass
class RunnerView:
    bib: int
    name: str
    runs: list[Run]
    laps: list
    checked_in: bool
    lap_start_s: float | None
    alarms: list
    total_m: float
    backward_m: float
    mixed_m: float
    chart: dict | None
    last_quarters: tuple[str, str, str, str] | None


def runner(results, config, bib: int, now_s: float) -> RunnerView:
    quarter_m = config.length_m / 4
    laps = [lap for lap in results.laps if lap.bib == bib]
    runs: dict[int, Run] = {}
    for lap in laps:
        r = runs.setdefault(lap.run, Run(lap.run))
        r.laps.append(lap)
        r.total_s += lap.lap_s
        r.best_lap_s = lap.lap_s if r.best_lap_s is None else min(r.best_lap_s, lap.lap_s)
        r.distance_m += config.length_m
        qs = quarters(lap)
        r.backward_m += quarter_m * sum(q == "backward" for q in qs)
        r.mixed_m += quarter_m * sum(q == "mixed" for q in qs)
    row = next((r for r in board(results, config, now_s) if r.bib == bib), None)
    return RunnerView(
        bib=bib, name=config.runner_name(bib),
        runs=sorted(runs.values(), key=lambda r: -r.run),
        laps=laps,
        checked_in=bib in (getattr(results, "checked_in", ()) or ()),
        lap_start_s=row.lap_start_s if row else None,
        alarms=[a for a in results.alarms if a.bib == bib],
        total_m=sum(r.distance_m for r in runs.values()),
        backward_m=sum(r.backward_m for r in runs.values()),
        mixed_m=sum(r.mixed_m for r in runs.values()),
        chart=lap_chart([lap.lap_s for lap in laps[-40:]], first_lap=max(1, len(laps) - 39)),
        last_quarters=quarters(laps[-1]) if laps else None,
    )


def lap_chart(lap_s: list[float], first_lap: int = 1, width: int = 320, height: int = 140
              ) -> dict | None:
    """Geometry of an SVG bar chart of lap times: bars, a best-lap line and axis labels."""
    if not lap_s:
        return None
    pad_l, pad_b, pad_t = 34, 18, 8
    lo = min(lap_s)
    # The axis runs between whole seconds (its labels show no fractions, so a 2:10.47 lap
    # under a top labelled "2:10" would look off the scale), with an even span so the
    # middle label is whole too. Bars start from a floor below the fastest lap so small
    # differences stay visible.
    top = math.ceil(max(lap_s))
    floor = max(0, math.floor(lo - (top - lo) * 0.5 - 1))
    if (top - floor) % 2:
        if floor > 0:
            floor -= 1
        else:
            top += 1
    span = max(top - floor, 1e-6)
    plot_w, plot_h = width - pad_l - 4, height - pad_b - pad_t
    step = plot_w / len(lap_s)
    bars = []
    best = min(lap_s)
    for i, v in enumerate(lap_s):
        h = max(2.0, (v - floor) / span * plot_h)
        bars.append({"x": round(pad_l + i * step + step * 0.1, 1),
                     "y": round(pad_t + plot_h - h, 1), "w": round(max(step * 0.8, 1), 1),
                     "h": round(h, 1), "lap": first_lap + i, "lap_s": v, "best": v == best})
    ticks = []
    for v in (floor, (floor + top) / 2, top):
        ticks.append({"y": round(pad_t + plot_h - (v - floor) / span * plot_h, 1),
                      "label": fmt_s(v, 0)})
    label_every = max(1, math.ceil(len(lap_s) / 10))
    return {"width": width, "height": height, "bars": bars, "ticks": ticks,
            "pad_l": pad_l, "base_y": pad_t + plot_h, "label_every": label_every}


# ---- coach console --------------------------------------------------------------------

def open_alarms(results) -> list:
    return [a for a in results.alarms if getattr(a, "cleared_s", None) is None]


def alarmed_bibs(results) -> list[int]:
    return sorted({a.bib for a in open_alarms(results)})


def recent_passes(results, limit: int = 30, gate: str | None = None) -> list:
    """The latest passes, newest first (deleted ones too, so they can be restored)."""
    out = [p for p in results.passes if gate is None or p.gate == gate]
    return out[::-1][:limit]


def unidentified(results) -> list:
    return [p for p in results.passes if not is_deleted(p)
            and (not pass_bibs(p) or pass_bibs(p) == (0,))][::-1]


def open_faults(results) -> list:
    return [f for f in results.faults if getattr(f, "end_s", None) is None]
