"""Pages for everyone on the station's Wi-Fi, no login: the live board, each runner's page
(`/runner/<bib>`, easy to bookmark) and check-in / check-out ("I'm running now").

Read-only except check-in and check-out, which only append `checkin`/`checkout` events (the
solo rule credits passes to the one runner checked in, so a runner without a bib gets laps).
"""

from __future__ import annotations

from flask import (Blueprint, abort, current_app, flash, redirect, render_template, request,
                   session, url_for)

from station.config import MAX_BIB
from station.web import live, views

bp = Blueprint("public", __name__)


@live.fragment("board")
def _board_fragment(state, station, arg):
    results = views.results_of(state)
    now_s = float(getattr(state, "now_s", 0.0))
    rows = views.board(results, station.config, now_s)
    unknown = sum(1 for _ in views.unidentified(results))
    return "_board.html", {"rows": rows, "unknown": unknown,
                           "alarms": len(views.alarmed_bibs(results)),
                           "faults": views.open_faults(results),
                           "station_faults": getattr(state, "faults", ()),
                           "crossing": getattr(results, "provisional", ())}


@live.fragment("runner")
def _runner_fragment(state, station, bib):
    now_s = float(getattr(state, "now_s", 0.0))
    r = views.runner(views.results_of(state), station.config, bib, now_s)
    return "_runner.html", {"r": r, "length_m": station.config.length_m,
                            "spoken": views.spoken_s}


@bp.route("/")
def board():
    return render_template("board.html", **live.page_context("board"))


@bp.route("/runner")
def find_runner():
    bib = parse_bib(request.args.get("bib", ""))
    if isinstance(bib, str):
        flash(bib, "error")
        return redirect(url_for("public.board"))
    return redirect(url_for("public.runner", bib=bib))


@bp.route("/runner/<int:bib>")
def runner(bib: int):
    if not 1 <= bib <= MAX_BIB:
        abort(404, description=f"Bib numbers run from 1 to {MAX_BIB}.")
    station = current_app.extensions["station"]
    return render_template("runner.html", bib=bib, name=station.config.runner_name(bib),
                           **live.page_context("runner", bib))


def parse_bib(text: str) -> int | str:
    """A bib number from a form, or the reason it is not one."""
    text = (text or "").strip()
    if not views.is_count(text):
        return f"Give your bib number (1 to {MAX_BIB})."
    bib = int(text)
    if not 1 <= bib <= MAX_BIB:
        return f"Bib {bib} does not exist: numbers run from 1 to {MAX_BIB}."
    return bib


@bp.route("/checkin", methods=["GET"])
def checkin_form():
    station = current_app.extensions["station"]
    runners = sorted(station.config.runners, key=lambda r: (r.name.lower(), r.bib))
    checked = set(getattr(views.results_of(station.worker.state), "checked_in", ()) or ())
    return render_template("checkin.html", runners=runners, checked=checked,
                           mine=session.get("bib"))


@bp.route("/checkin", methods=["POST"])
def checkin():
    return _check("checkin")


@bp.route("/checkout", methods=["POST"])
def checkout():
    return _check("checkout")


def _check(kind: str):
    bib = parse_bib(request.form.get("bib", ""))
    if isinstance(bib, str):
        flash(bib, "error")
        return redirect(url_for("public.checkin_form"))
    receipt = current_app.extensions["station"].worker.submit_now(kind, bib=bib)
    if hasattr(receipt, "wait"):
        receipt.wait(3.0)  # so the runner page we go to already shows it
    session["bib"] = bib  # remembered so this phone's board links "my laps"
    flash(f"Bib {bib}: " + ("have a good run! Your laps count now."
                            if kind == "checkin" else "checked out. Well run!"))
    return redirect(url_for("public.runner", bib=bib))
