"""How well the station's conclusions match what really happened: the metrics that tests and
benchmarks share.

`score(truth, results)` compares a `Truth` (or expected_*.csv files) with the engine's
`Results` (or a replay's CSV files) and returns a `Score`: lap recall and precision (laps
matched by bib and end time within MATCH_S), mean lap-time error, quarter facing accuracy,
run numbers, alarms found / missed / invented, beam_blocked faults, splits. `Score.failures()`
names every way it falls short of the bar (issue 2: recall and precision >= 99%, mean lap
error <= 20 ms, facing >= 99%, every alarm and blocked beam found, none invented), with the
laps, quarters and alarms that differ, so a failing test says what went wrong.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

MATCH_S = 0.5
QUARTERS = ("q1", "q2", "q3", "q4")


@dataclass(frozen=True)
class Bar:
    recall: float = 0.99
    precision: float = 0.99
    mean_lap_error_s: float = 0.020
    facing: float = 0.99


def _get(row, name, default=None):
    if isinstance(row, dict):
        return row.get(name, default)
    return getattr(row, name, default)


def _num(value) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def _norm_laps(rows) -> list[dict]:
    return [{"bib": int(_get(r, "bib")), "run": int(_get(r, "run")), "lap": int(_get(r, "lap")),
             "start_s": _num(_get(r, "start_s")), "end_s": _num(_get(r, "end_s")),
             "lap_s": _num(_get(r, "lap_s")), "source": _get(r, "source", ""),
             **{q: _get(r, q) for q in QUARTERS}} for r in rows]


def _norm(rows, fields) -> list[dict]:
    out = []
    for r in rows:
        d = {}
        for name, kind in fields.items():
            v = _get(r, name)
            d[name] = _num(v) if kind is float else (int(v) if kind is int and v not in (None, "") else v)
        out.append(d)
    return out


ALARM_FIELDS = {"bib": int, "gate": str, "seen_s": float, "alarm_s": float}
FAULT_FIELDS = {"kind": str, "gate": str, "start_s": float, "end_s": float}
SPLIT_FIELDS = {"bib": int, "run": int, "lap": int, "gate": str, "t_s": float, "split_s": float}


@dataclass
class Score:
    name: str = ""
    truth_laps: int = 0
    found_laps: int = 0
    matched_laps: int = 0
    lap_errors_s: list[float] = field(default_factory=list)
    quarters: int = 0
    quarters_right: int = 0
    truth_alarms: int = 0
    truth_faults: int = 0
    truth_splits: int = 0
    found_splits: int = 0
    matched_splits: int = 0
    split_errors_s: list[float] = field(default_factory=list)
    missed_laps: list[dict] = field(default_factory=list)
    extra_laps: list[dict] = field(default_factory=list)
    wrong_quarters: list[str] = field(default_factory=list)
    wrong_runs: list[str] = field(default_factory=list)
    big_errors: list[str] = field(default_factory=list)
    missed_alarms: list[dict] = field(default_factory=list)
    extra_alarms: list[dict] = field(default_factory=list)
    missed_faults: list[dict] = field(default_factory=list)
    extra_faults: list[dict] = field(default_factory=list)
    missed_splits: list[dict] = field(default_factory=list)
    extra_splits: list[dict] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.matched_laps / self.truth_laps if self.truth_laps else 1.0

    @property
    def precision(self) -> float:
        return self.matched_laps / self.found_laps if self.found_laps else 1.0

    @property
    def mean_lap_error_s(self) -> float:
        return sum(self.lap_errors_s) / len(self.lap_errors_s) if self.lap_errors_s else 0.0

    @property
    def facing(self) -> float:
        return self.quarters_right / self.quarters if self.quarters else 1.0

    @property
    def split_recall(self) -> float:
        return self.matched_splits / self.truth_splits if self.truth_splits else 1.0

    @property
    def split_precision(self) -> float:
        return self.matched_splits / self.found_splits if self.found_splits else 1.0

    def __iadd__(self, other: "Score") -> "Score":
        """Pool another score into this one (totals over scenarios and seeds)."""
        for name, value in vars(other).items():
            if name != "name":
                setattr(self, name, getattr(self, name) + value)
        return self

    def failures(self, bar: Bar = Bar(), splits: bool = True) -> list[str]:
        """Every way this falls short of the bar, with the details; empty when it passes."""
        out = []
        tag = f"[{self.name}] " if self.name else ""
        if self.recall < bar.recall:
            out.append(f"{tag}lap recall {self.recall:.1%} ({self.matched_laps}/{self.truth_laps}); "
                       f"missed: {_laps_text(self.missed_laps)}")
        if self.precision < bar.precision:
            out.append(f"{tag}lap precision {self.precision:.1%} ({self.matched_laps}/"
                       f"{self.found_laps}); invented: {_laps_text(self.extra_laps)}")
        if self.mean_lap_error_s > bar.mean_lap_error_s:
            out.append(f"{tag}mean lap-time error {self.mean_lap_error_s * 1000:.1f} ms; worst: "
                       + "; ".join(self.big_errors[:6]))
        if self.facing < bar.facing:
            out.append(f"{tag}quarter facing {self.facing:.1%} ({self.quarters_right}/{self.quarters}); "
                       + "; ".join(self.wrong_quarters[:8]))
        if self.wrong_runs:
            out.append(f"{tag}run numbers differ: " + "; ".join(self.wrong_runs[:6]))
        if self.missed_alarms:
            out.append(f"{tag}alarms missed: {_rows_text(self.missed_alarms, ALARM_FIELDS)}")
        if self.extra_alarms:
            out.append(f"{tag}alarms invented: {_rows_text(self.extra_alarms, ALARM_FIELDS)}")
        if self.missed_faults:
            out.append(f"{tag}blocked beams missed: {_rows_text(self.missed_faults, FAULT_FIELDS)}")
        if self.extra_faults:
            out.append(f"{tag}blocked beams invented: {_rows_text(self.extra_faults, FAULT_FIELDS)}")
        if splits and (self.split_recall < bar.recall or self.split_precision < bar.precision):
            out.append(f"{tag}splits: recall {self.split_recall:.1%}, precision "
                       f"{self.split_precision:.1%}; missed: {_rows_text(self.missed_splits, SPLIT_FIELDS)}"
                       f"; invented: {_rows_text(self.extra_splits, SPLIT_FIELDS)}")
        return out

    def summary(self) -> str:
        return (f"{self.name or 'total'}: laps {self.matched_laps}/{self.truth_laps} "
                f"(recall {self.recall:.1%}, precision {self.precision:.1%}), mean lap error "
                f"{self.mean_lap_error_s * 1000:.1f} ms, facing {self.facing:.1%}, alarms "
                f"{self.truth_alarms - len(self.missed_alarms)}/{self.truth_alarms} "
                f"(+{len(self.extra_alarms)}), blocked {self.truth_faults - len(self.missed_faults)}/"
                f"{self.truth_faults} (+{len(self.extra_faults)}), splits "
                f"{self.matched_splits}/{self.truth_splits}")


def _laps_text(laps: list[dict], n: int = 8) -> str:
    text = ", ".join(f"bib {l['bib']} run {l['run']} lap {l['lap']} ending {l['end_s']:.3f}"
                     for l in laps[:n])
    return text + (f" (+{len(laps) - n} more)" if len(laps) > n else "")


def _rows_text(rows: list[dict], fields, n: int = 6) -> str:
    def one(r):
        return " ".join(f"{k}={r[k]:.3f}" if isinstance(r[k], float) else f"{k}={r[k]}"
                        for k in fields if r.get(k) is not None)
    text = "; ".join(one(r) for r in rows[:n]) or "none"
    return text + (f" (+{len(rows) - n} more)" if len(rows) > n else "")


def _match(truth: list[dict], found: list[dict], key, t_name: str):
    """Pairs (truth row, found row) with equal key and times within MATCH_S, nearest first;
    then the unmatched of each side."""
    cands = []
    by_key: dict = {}
    for j, f in enumerate(found):
        by_key.setdefault(key(f), []).append(j)
    for i, t in enumerate(truth):
        for j in by_key.get(key(t), ()):
            tf, tt = found[j][t_name], t[t_name]
            if tf is not None and tt is not None and abs(tf - tt) <= MATCH_S:
                cands.append((abs(tf - tt), i, j))
    cands.sort()
    used_t, used_f, pairs = set(), set(), []
    for _, i, j in cands:
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            pairs.append((truth[i], found[j]))
    missed = [t for i, t in enumerate(truth) if i not in used_t]
    extra = [f for j, f in enumerate(found) if j not in used_f]
    return pairs, missed, extra


def score(truth, results, name: str = "") -> Score:
    """Compare the truth (a `Truth`, or a dict of row lists) with the station's results."""
    s = Score(name)
    t_laps, f_laps = _norm_laps(_get(truth, "laps")), _norm_laps(_get(results, "laps"))
    s.truth_laps, s.found_laps = len(t_laps), len(f_laps)
    pairs, s.missed_laps, s.extra_laps = _match(t_laps, f_laps, lambda r: r["bib"], "end_s")
    s.matched_laps = len(pairs)
    big = []
    for t, f in pairs:
        err = abs(f["lap_s"] - t["lap_s"])
        s.lap_errors_s.append(err)
        where = f"bib {t['bib']} lap ending {t['end_s']:.3f}"
        if err > 0.03:
            big.append((err, f"{where}: {f['lap_s']:.3f} s, truth {t['lap_s']:.3f} s "
                             f"(credited {f['source'] or '?'})"))
        if f["run"] != t["run"]:
            s.wrong_runs.append(f"{where}: run {f['run']}, truth {t['run']}")
        for q in QUARTERS:
            s.quarters += 1
            if f[q] == t[q]:
                s.quarters_right += 1
            else:
                s.wrong_quarters.append(f"{where} {q}: {f[q]}, truth {t[q]}")
    s.big_errors = [text for _, text in sorted(big, reverse=True)]

    t_al = _norm(_get(truth, "alarms"), ALARM_FIELDS)
    f_al = _norm(_get(results, "alarms"), ALARM_FIELDS)
    s.truth_alarms = len(t_al)
    _, s.missed_alarms, s.extra_alarms = _match(t_al, f_al, lambda r: (r["bib"], r["gate"]), "alarm_s")

    t_fa = [f for f in _norm(_get(truth, "faults") or [], FAULT_FIELDS) if f["kind"] == "beam_blocked"]
    f_fa = [f for f in _norm(_get(results, "faults") or [], FAULT_FIELDS) if f["kind"] == "beam_blocked"]
    s.truth_faults = len(t_fa)
    _, s.missed_faults, s.extra_faults = _match(t_fa, f_fa, lambda r: r["gate"], "start_s")

    t_sp = _norm(_get(truth, "splits") or [], SPLIT_FIELDS)
    f_sp = _norm(_get(results, "splits") or [], SPLIT_FIELDS)
    s.truth_splits, s.found_splits = len(t_sp), len(f_sp)
    sp_pairs, s.missed_splits, s.extra_splits = _match(t_sp, f_sp, lambda r: (r["bib"], r["gate"]), "t_s")
    s.matched_splits = len(sp_pairs)
    s.split_errors_s = [abs(f["t_s"] - t["t_s"]) for t, f in sp_pairs]
    return s


def read_csv_dir(folder: str | Path, prefix: str = "") -> dict:
    """laps/alarms/faults/splits rows from a folder: a replay's output (prefix "") or a
    simulation's truth (prefix "expected_"); missing files are empty."""
    out = {}
    for kind in ("laps", "alarms", "faults", "splits"):
        path = Path(folder) / f"{prefix}{kind}.csv"
        if path.exists():
            with open(path, newline="", encoding="utf-8") as fh:
                out[kind] = list(csv.DictReader(fh))
        else:
            out[kind] = []
    return out
