"""Downloads for coaches: laps, passes, splits, alarms and faults as SPEC §5 CSV or JSON, for
a session, a day or one runner, and the raw event log (JSON Lines) of a session.

The current session's tables are the live results (what the dashboard shows); an earlier
session is replayed from its stored events by the same engine. Either way the CSV is written
by `station.replay`, so a download and `station replay` of the exported log are the same file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import threading
from collections import OrderedDict

import orjson
import tomli_w
from flask import (Blueprint, Response, abort, current_app, redirect, render_template, request,
                   url_for)

from station.web import views
from station.web.auth import login_required

bp = Blueprint("downloads", __name__, url_prefix="/coach/downloads")

TABLES = ("laps", "passes", "splits", "alarms", "faults")
_replayed: OrderedDict = OrderedDict()  # (session id, config) -> Results of a closed session
_replayed_lock = threading.Lock()


def _station():
    return current_app.extensions["station"]


def session_results(session_id: int):
    """Results of a session: live for the current one, replayed (and cached) for older ones."""
    station = _station()
    state = station.worker.state
    current = getattr(getattr(state, "session", None), "id", None)
    if session_id == current:
        return views.results_of(state)
    key = (session_id, id(station.config))
    with _replayed_lock:
        if key in _replayed:
            return _replayed[key]
    from station import replay

    results = replay.replay_events(station.store.events(session_id), station.config)
    with _replayed_lock:
        _replayed[key] = results
        while len(_replayed) > 2:  # a closed session can be large: keep few in memory
            _replayed.popitem(last=False)
    return results


def for_runner(results, bib: int | None):
    """`results` cut down to one runner's rows (faults belong to nobody: none)."""
    if bib is None:
        return results
    return dataclasses.replace(
        results,
        laps=tuple(x for x in results.laps if x.bib == bib),
        passes=tuple(p for p in results.passes if bib in views.pass_bibs(p)),
        splits=tuple(x for x in results.splits if x.bib == bib),
        alarms=tuple(x for x in results.alarms if x.bib == bib),
        faults=())


def json_rows(results, table: str) -> list[dict]:
    """A table as JSON-ready dicts: SPEC §5 columns, numbers as numbers (3 decimals)."""
    out = []
    for item in getattr(results, table):
        if table == "passes" and views.is_deleted(item):
            continue  # as in passes.csv
        row = {}
        for f in dataclasses.fields(item):
            value = getattr(item, f.name)
            if isinstance(value, float):
                value = round(value, 3)
            elif isinstance(value, tuple):
                value = list(value)
            row[f.name] = value
        out.append(row)
    return out


def _selected_sessions() -> tuple[list, str]:
    """The sessions asked for (`?session=N` or `?day=YYYY-MM-DD`) and a file name stem."""
    store = _station().store
    sessions = store.sessions()
    if "day" in request.args:
        day = request.args["day"]
        chosen = [s for s in sessions if s.started[:10] == day]
        if not chosen:
            abort(404, description=f"No session on {day!r}.")
        return chosen, f"day-{day}"
    text = request.args.get("session")
    if text is None:
        current = _station().worker.state.session
        return [current], f"session-{current.id}"
    if not views.is_count(text):
        abort(400, description=f"session must be a number, not {text!r}.")
    chosen = [s for s in sessions if s.id == int(text)]
    if not chosen:
        abort(404, description=f"No session {text}.")
    return chosen, f"session-{text}"


def _bib_arg() -> int | None:
    text = request.args.get("bib")
    if text in (None, ""):
        return None
    if not views.is_count(text):
        abort(400, description=f"bib must be a number, not {text!r}.")
    return int(text)


@bp.route("/")
@login_required
def index():
    store = _station().store
    sessions = list(reversed(store.sessions()))
    days = sorted({s.started[:10] for s in sessions}, reverse=True)
    return render_template("downloads.html", sessions=sessions, days=days, tables=TABLES,
                           current=_station().worker.state.session.id,
                           runners=_station().config.runners)


@bp.route("/<table>.<fmt>")
@login_required
def table(table: str, fmt: str):
    from station import replay

    if table not in TABLES or fmt not in ("csv", "json"):
        abort(404, description=f"No download {table}.{fmt}; tables are {', '.join(TABLES)} "
                               "as .csv or .json.")
    sessions, stem = _selected_sessions()
    bib = _bib_arg()
    if bib is not None:
        stem += f"-bib{bib}"
    many = "day" in request.args  # a day always has the session column, even with one
    name = f"{table}.csv"
    parts = [(sess.id, for_runner(session_results(sess.id), bib)) for sess in sessions]
    if fmt == "json":
        rows = []
        for sid, results in parts:
            rows += [{**row, "session": sid} if many else row for row in json_rows(results, table)]
        body = orjson.dumps(rows, option=orjson.OPT_INDENT_2)
        mime = "application/json"
    elif not many:
        body = replay.csv_text(parts[0][1], name).encode()  # exactly what `station replay` writes
        mime = "text/csv"
    else:
        # A day: the sessions' rows one after another, with SPEC §5's allowed extra column.
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(replay.HEADERS[name] + ["session"])
        for sid, results in parts:
            w.writerows(row + [sid] for row in replay.rows(results, name))
        body = out.getvalue().encode()
        mime = "text/csv"
    # mimetype (not content_type): Flask adds "; charset=utf-8" to text types itself.
    return Response(body, mimetype=mime, headers={
        "Content-Disposition": f'attachment; filename="{stem}-{table}.{fmt}"',
        "Cache-Control": "no-store"})


@bp.route("/events.jsonl")
@login_required
def events():
    sessions, stem = _selected_sessions()
    if len(sessions) != 1:
        abort(400, description="The raw event log is per session: choose one session.")
    # Streamed line by line: a long session's log is never held whole in memory.
    lines = (line + "\n" for line in _station().store.lines(sessions[0].id))
    return Response(lines, mimetype="application/x-ndjson", headers={
        "Content-Disposition": f'attachment; filename="{stem}-events.jsonl"',
        "Cache-Control": "no-store"})


@bp.route("/runner")
@login_required
def runner():
    """The one-runner form: `?bib=N&what=laps.csv` to that table's download for the bib."""
    bib = _bib_arg()
    table, _, fmt = request.args.get("what", "laps.csv").partition(".")
    if bib is None or table not in TABLES or fmt not in ("csv", "json"):
        abort(400, description="Choose a bib and one of the tables.")
    return redirect(url_for("downloads.table", table=table, fmt=fmt, bib=bib))


@bp.route("/station.toml")
@login_required
def config():
    """The configuration in use (SPEC §3), for `station replay EVENTS --config station.toml`."""
    body = tomli_w.dumps(_station().config.source)
    return Response(body, mimetype="application/toml", headers={
        "Content-Disposition": 'attachment; filename="station.toml"',
        "Cache-Control": "no-store"})
