"""The coach's console (login required): alarms and silencing, unidentified passes, lap
corrections, station health (beam, camera snapshot, buzzer test, disk, clock) and setting the
station clock from the phone. Settings and the roster live in `settings.py` on this blueprint.

Every change is an event submitted to the worker (`silence`, `correct`, `clock`), so it is in
the log and a replay gives the same laps; nothing here edits results directly.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone

from flask import (Blueprint, Response, abort, current_app, flash, g, redirect, render_template,
                   request, url_for)

from station.config import MAX_BIB
from station.web import live, views
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
        flash(f"Not recorded: {receipt.error}")
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
    if request.form.get("bib"):
        bib = _bib(request.form["bib"], allow_zero=True)
        fields["bib"] = bib
    if submit("silence", **fields):
        flash("Alarm silenced." if "bib" in fields else "All alarms silenced.")
    return redirect(url_for("coach.console"))


def _bib(text: str, allow_zero: bool = False) -> int:
    text = (text or "").strip()
    low = 0 if allow_zero else 1
    if not text.isdigit() or not low <= int(text) <= MAX_BIB:
        abort(400, description=f"bib must be a number from {low} to {MAX_BIB}, not {text!r}.")
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


@bp.route("/correct", methods=["POST"])
@login_required
def correct():
    station = _station()
    form = request.form
    action = form.get("action", "")
    if action not in ACTIONS:
        abort(400, description=f"action must be one of {', '.join(ACTIONS)}, not {action!r}.")
    gate = form.get("gate", "")
    if gate not in {gt.id for gt in station.config.gates}:
        abort(400, description=f"gate {gate!r} is not one of this station's gates.")
    fields = {"action": action, "gate": gate, "by": g.coach}
    if action == "add" and form.get("when") == "now":
        pass_t = live.clock(station)["now_s"]
    else:
        try:
            pass_t = parse_session_time(form.get("pass_t", ""))
        except ValueError:
            abort(400, description="pass_t must be a session time in seconds or m:ss, "
                                   f"not {form.get('pass_t', '')!r}.")
    fields["pass_t"] = round(pass_t, 3)
    if action in ("assign", "add"):
        fields["bib"] = _bib(form.get("bib", ""))
    ok = submit("correct", **fields)
    words = {"assign": f"Pass at {pass_t:.3f} given to bib {fields.get('bib')}.",
             "delete": f"Pass at {pass_t:.3f} deleted.",
             "restore": f"Pass at {pass_t:.3f} restored.",
             "add": f"Pass added for bib {fields.get('bib')} at {pass_t:.3f}."}
    if ok:
        flash(words[action])
    return redirect(_safe_next(request.form.get("back")))


@bp.route("/photo/<gate>/<pass_t>.jpg")
@login_required
def photo(gate: str, pass_t: str):
    hook = _station().hooks.photo
    try:
        t = float(pass_t)
    except ValueError:
        abort(404)
    data = hook(gate, t) if hook else None
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


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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
              "faults": [f for f in faults if getattr(f, "gate", None) == gt.id]}
             for gt in config.gates]
    cameras = [{"id": c.id, "gate": c.gate, "covers_m": c.covers_m, "looks": c.looks,
                "faults": [f for f in faults if getattr(f, "gate", None) in (c.id, c.gate)
                           and f.kind.startswith("camera")]}
               for c in config.cameras]
    disk_path = station.hooks.disk_path or getattr(station.store, "dir", ".")
    health_info = {
        "Worker running": "yes" if getattr(station.worker, "healthy", lambda: True)() else "NO",
        "Events waiting for the store": getattr(state, "pending", 0),
        "Buzzer sounding": "yes" if getattr(state, "buzzer_on", False) else "no",
    }
    for f in getattr(state, "faults", ()):
        health_info[f"{f.kind} ({f.source})"] = f.message or "since %.1f s" % f.since_s
    return render_template(
        "health.html", gates=gates, cameras=cameras, faults=faults,
        disk=disk_report(disk_path), health_info=health_info,
        wall=utc_now_iso(), session_clock=live.clock(station),
        run_session=getattr(state, "session", None),
        snapshot=station.hooks.snapshot is not None,
        buzzer=station.hooks.buzzer_test is not None,
        can_set_clock=station.hooks.set_clock is not None)


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
    """The phone's clock (sent by its browser) becomes the station's wall clock. Recorded as
    a `clock` event; laps never change, since they use the session clock."""
    station = _station()
    wall = request.form.get("wall", "").strip()
    try:
        when = datetime.fromisoformat(wall.replace("Z", "+00:00"))
        if when.tzinfo is None:
            raise ValueError("no time zone")
    except ValueError:
        abort(400, description=f"wall must be an ISO 8601 time with a zone, not {wall!r}.")
    wall_utc = when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    previous = utc_now_iso()
    if not submit("clock", wall=wall_utc, by=g.coach, previous=previous):
        return redirect(url_for("coach.health"))
    if station.hooks.set_clock is not None:
        try:
            station.hooks.set_clock(wall_utc)
            flash(f"Station clock set to {wall_utc} (was {previous}).")
        except Exception as exc:  # no privileges, no timedatectl: say so, keep the event
            flash(f"Clock recorded, but the system clock could not be set: {exc}")
    else:
        flash(f"Clock {wall_utc} recorded (was {previous}); this station does not set its "
              "system clock (see web.set_system_clock).")
    return redirect(url_for("coach.health"))
