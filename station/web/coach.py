"""The coach's console (login required): alarms and silencing, unidentified passes, lap
corrections, station health (beam, cameras and their frame rates, snapshot, buzzer test, disk,
clock, the worker's own faults, the service-failed note with a button to clear it, the
checkpoint-gate link) and setting the station clock from the phone (station/web/clock.py). Settings and the roster live in `settings.py` on this blueprint.

Every change is an event submitted to the worker (`silence`, `correct`, `clock`), so it is in
the log and a replay gives the same laps; nothing here edits results directly.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from flask import (Blueprint, Response, abort, current_app, flash, g, redirect, render_template,
                   request, url_for)

from station.config import MAX_BIB
from station.service_failed import clear_failure, read_failure
from station.web import clock, live, views
from station.web.auth import _safe_next, login_required

bp = Blueprint("coach", __name__, url_prefix="/coach")

ACTIONS = ("assign", "delete", "restore", "add")


def _station():
    return current_app.extensions["station"]


def submit(kind: str, **fields) -> bool:
    """Hand an event to the worker and wait (briefly) until it is stored and shown, so the
    page the coach is sent back to already has it. False (and a message) if it failed."""
    receipt = _station().worker.submit_now(kind, **fields)
    wait = getattr(receipt, "wait", None)
    if wait is not None and wait(3.0) and getattr(receipt, "error", None) is not None:
        flash(f"Not recorded: {receipt.error}", "error")
        return False
    return True


@live.fragment("console", login=True)
def _console_fragment(state, station, arg):
    results = views.results_of(state)
    config = station.config
    return "_console.html", {
        "alarms": views.open_alarms(results),
        "faults": views.open_faults(results),
        "station_faults": getattr(state, "faults", ()),  # the worker's own: store, buzzer
        "unknown": views.unidentified(results)[:20],
        "passes": views.recent_passes(results, 40),
        "pass_bibs": views.pass_bibs,
        "is_deleted": views.is_deleted,
        "names": config.runner_name,
        "photos": station.hooks.photo is not None,
        "session_id": state.session.id,
    }


@bp.route("/")
@login_required
def console():
    config = _station().config
    return render_template("console.html", gates=config.gates, finish=config.finish.id,
                           **live.page_context("console"))


@bp.route("/silence", methods=["POST"])
@login_required
def silence():
    fields = {"by": g.coach}
    try:
        if request.form.get("bib"):
            fields["bib"] = _bib(request.form["bib"], allow_zero=True)
    except ValueError as exc:
        return _refused(exc)
    if submit("silence", **fields):
        flash("Alarm silenced." if "bib" in fields else "All alarms silenced.")
    return redirect(url_for("coach.console"))


def _refused(exc: ValueError, back: str | None = None):
    """A console form with a bad field: back to the page, saying what was wrong."""
    flash(f"Not done: {exc}", "error")
    return redirect(_safe_next(back))


def _bib(text: str, allow_zero: bool = False) -> int:
    text = (text or "").strip()
    low = 0 if allow_zero else 1
    if not views.is_bib(text, low):
        raise ValueError(f"the bib must be a number from {low} to {MAX_BIB}, not {text!r}.")
    return int(text)


def parse_session_time(text: str) -> float:
    """Session time from a form: seconds (`1234.5`) or `[h:]mm:ss[.f]`; ValueError if not."""
    text = (text or "").strip()
    parts = text.split(":")
    if not text or len(parts) > 3:
        raise ValueError(text)
    value = 0.0
    for part in parts:
        value = value * 60 + float(part)
    if value < 0 or value != value or value == float("inf"):
        raise ValueError(text)
    return value


# A pass added "at" a time may be this far ahead of the session clock (a phone's rounding),
# no further: a pass in the future would become every runner's next lap.
ADD_AHEAD_S = 1.0


@bp.route("/correct", methods=["POST"])
@login_required
def correct():
    station = _station()
    form = request.form
    back = form.get("back")
    action = form.get("action", "")
    if action not in ACTIONS:
        abort(400, description=f"action must be one of {', '.join(ACTIONS)}, not {action!r}.")
    gate = form.get("gate", "")
    if gate not in {gt.id for gt in station.config.gates}:
        abort(400, description=f"gate {gate!r} is not one of this station's gates.")
    fields = {"action": action, "gate": gate, "by": g.coach}
    now_s = live.clock(station)["now_s"]
    try:
        if action == "add" and form.get("when") == "now":
            pass_t = now_s
        else:
            try:
                pass_t = parse_session_time(form.get("pass_t", ""))
            except ValueError:
                raise ValueError("the time must be session time in seconds or m:ss, "
                                 f"not {form.get('pass_t', '')!r}.") from None
            if action == "add" and pass_t > now_s + ADD_AHEAD_S:
                raise ValueError(f"the time {views.fmt_s(pass_t)} is later than now "
                                 f"({views.fmt_s(now_s)} into the session).")
        if action in ("assign", "add"):
            fields["bib"] = _bib(form.get("bib", ""))
    except ValueError as exc:
        return _refused(exc, back)
    fields["pass_t"] = round(pass_t, 3)
    ok = submit("correct", **fields)
    words = {"assign": f"Pass at {pass_t:.3f} given to bib {fields.get('bib')}.",
             "delete": f"Pass at {pass_t:.3f} deleted.",
             "restore": f"Pass at {pass_t:.3f} restored.",
             "add": f"Pass added for bib {fields.get('bib')} at {pass_t:.3f}."}
    if ok:
        flash(words[action])
    return redirect(_safe_next(back))


# Session times a photo can have (a week); anything else is no photo, not a file name.
MAX_PHOTO_T_S = 7 * 24 * 3600.0


@bp.route("/photo/<int:session>/<gate>/<pass_t>.jpg")
@login_required
def photo(session: int, gate: str, pass_t: str):
    # The session is in the URL because the photo is cached: the same gate and time in a
    # later session is another pass.
    hook = _station().hooks.photo
    try:
        t = float(pass_t)
    except ValueError:
        abort(404)
    if not 0.0 <= t <= MAX_PHOTO_T_S:  # also NaN
        abort(404)
    data = hook(gate, t, session) if hook else None
    if not data:
        abort(404, description="No photo of this pass.")
    return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


# ---- health ------------------------------------------------------------------------------

def disk_report(path) -> dict | None:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return {"free_mb": usage.free // 2**20, "total_mb": usage.total // 2**20,
            "free_pct": round(100 * usage.free / usage.total, 1) if usage.total else 0.0}


# What a coach can do about each of the worker's own faults.
FAULT_HINTS = {
    "disk_full": "The SD card is full: events wait in memory. Download the logs, then delete "
                 "old photos or sessions.",
    "sqlite_busy": "The database is locked by another program (a copy or backup running?). "
                   "Events wait in memory and are retried.",
    "store_error": "The database refused events; they wait in memory and are retried.",
    "worker_error": "A bug: laps keep being counted, but tell the developers (the log has it).",
    "buzzer_failed": "The buzzer did not respond: check its wiring.",
}


def _data_dir(station):
    return Path(getattr(station.store, "dir", None) or station.hooks.disk_path or ".")


def _hook_value(hook, what: str):
    """A hook's answer for the health page; a failing hook is shown, never a crash."""
    if hook is None:
        return None
    try:
        return hook()
    except Exception as exc:  # noqa: BLE001 - the page must still load
        current_app.logger.warning("health: %s failed: %r", what, exc)
        return {"error": repr(exc)}


@bp.route("/health")
@login_required
def health():
    station = _station()
    state = station.worker.state
    results = views.results_of(state)
    config = station.config
    faults = views.open_faults(results)
    last_pass = {}
    for p in results.passes:
        last_pass[p.gate] = p.t_s
    gates = [{"id": gt.id, "position_m": gt.position_m, "last_pass_s": last_pass.get(gt.id),
              "faults": [f for f in faults if f.gate == gt.id and not f.kind.startswith("camera")]}
             for gt in config.gates]
    fps = _hook_value(station.hooks.camera_fps, "camera_fps") or {}
    cameras = [{"id": c.id, "gate": c.gate, "covers_m": c.covers_m, "looks": c.looks,
                "configured_fps": c.fps, "fps": fps.get(c.id), "running": c.id in fps,
                "faults": [f for f in faults if f.source == c.id]}
               for c in config.cameras]
    data_dir = _data_dir(station)
    disk_path = station.hooks.disk_path or data_dir
    station_faults = [{"kind": f.kind, "source": f.source, "since_s": f.since_s,
                       "message": f.message, "hint": FAULT_HINTS.get(f.kind, "")}
                      for f in getattr(state, "faults", ())]
    return render_template(
        "health.html", gates=gates, cameras=cameras, faults=faults,
        disk=disk_report(disk_path), data_dir=data_dir,
        station_faults=station_faults, pending=getattr(state, "pending", 0),
        worker_running=getattr(station.worker, "healthy", lambda: True)(),
        buzzer_on=getattr(state, "buzzer_on", False),
        failure=read_failure(data_dir),
        clock=clock.clock_status(station.store, data_dir),
        session_clock=live.clock(station),
        run_session=getattr(state, "session", None),
        link=_hook_value(station.hooks.link_status, "link_status"),
        snapshot=station.hooks.snapshot is not None,
        buzzer=station.hooks.buzzer_test is not None,
        can_set_clock=station.hooks.set_clock is not None)


@bp.route("/health/failure/clear", methods=["POST"])
@login_required
def clear_service_failure():
    """A coach has read the note systemd's give-up left (station/service_failed.py)."""
    data_dir = _data_dir(_station())
    if clear_failure(data_dir):
        current_app.logger.info("service-failed note cleared by %s", g.coach)
        flash("The service failure note is cleared.")
    else:
        flash("There was no service failure note.")
    return redirect(url_for("coach.health"))


@bp.route("/health/snapshot.jpg")
@login_required
def snapshot():
    hook = _station().hooks.snapshot
    data = hook() if hook else None
    if not data:
        abort(404, description="No camera picture (camera missing or not started).")
    return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})


@bp.route("/health/buzzer", methods=["POST"])
@login_required
def buzzer_test():
    hook = _station().hooks.buzzer_test
    if hook is None:
        flash("This station has no buzzer configured.")
    else:
        try:
            hook()
            flash("Buzzer test: it should have sounded now.")
        except Exception as exc:  # the hardware's problem, reported to the coach
            flash(f"Buzzer test failed: {exc}")
    return redirect(url_for("coach.health"))


@bp.route("/clock", methods=["POST"])
@login_required
def set_clock():
    """The phone's clock (sent by its browser) becomes the station's wall clock. Always a
    `clock` event (who, the phone's time, the wall clock before, whether the system clock was
    asked to change); laps never change, since they use the session clock."""
    station = _station()
    wall = request.form.get("wall", "").strip()
    try:
        when = datetime.fromisoformat(wall.replace("Z", "+00:00"))
        if when.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError:
        abort(400, description=f"wall must be an ISO 8601 time with a zone, not {wall!r}.")
    wall_utc = clock.utc_iso(when, places=3)
    previous = clock.utc_iso(places=3)
    hook = station.hooks.set_clock
    problem = None
    if hook is None:
        applied = "off"
    else:
        try:
            hook(wall_utc)
            applied = "requested"
        except Exception as exc:  # a phone with a silly date, or no data folder: say so
            applied, problem = "failed", str(exc)
    fields = {"wall": wall_utc, "by": g.coach, "previous": previous, "applied": applied}
    if problem:
        fields["message"] = problem[:200]
    receipt_ok = submit("clock", **fields)
    if receipt_ok:
        try:
            clock.remember_set(station.store, wall=wall_utc, by=g.coach, previous=previous,
                               applied=applied, t_s=live.clock(station)["now_s"])
        except Exception as exc:  # noqa: BLE001 - the event is what counts; the note is a nicety
            current_app.logger.warning("clock: cannot keep the last setting: %r", exc)
    if problem:
        flash(f"Clock recorded, but the system clock could not be set: {problem}")
    elif applied == "requested":
        flash(f"Station clock set to {wall_utc} (was {previous}).")
    elif receipt_ok:
        flash(f"Clock {wall_utc} recorded (was {previous}); this station does not set its "
              "system clock (see web.set_system_clock).")
    return redirect(url_for("coach.health"))
