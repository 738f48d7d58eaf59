"""The coach's settings pages (on the `coach` blueprint): the station settings of SPEC §3, the
roster (names and bibs, CSV import and export, bib sheets) and coach logins.

Settings and the roster are the station's TOML configuration. Every change is validated by
`station.config.parse_config`, the same code that reads the file at start-up, so a bad value
is refused with the key it concerns (`laps.min_lap_s: must be between 1 and 3600 (s), not
0`) and the running station keeps its old settings. A good change is written back to the
file (atomically, the old file kept as `.bak`) and handed to the worker if it can apply it
while running.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import threading
from pathlib import Path

import tomli_w
from flask import Response, current_app, flash, g, redirect, render_template, request, url_for

from station.config import MAX_BIB, ConfigError, loads_config, parse_config
from station.web.auth import check_new_login, hash_password, login_required, password_ok
from station.web.coach import bp
from station.web.views import is_bib, is_count

_SHEETS_LOCK = threading.Lock()

# (table, key, label, unit) of the settings offered as form fields; the rest (gates, cameras,
# pins) is edited as TOML text on the same page.
FIELDS = [
    ("track", "length_m", "Track length", "m"),
    ("laps", "min_lap_s", "Shortest lap (closer passes count once)", "s"),
    ("laps", "max_lap_s", "Longest lap (a longer gap ends the run)", "s"),
    ("safety", "spotter_lead_s", "Spotter may pass before the runner by", "s"),
    ("safety", "spotter_timeout_s", "Spotter must pass within", "s"),
    ("passes", "glitch_ms", "Ignore beam breaks shorter than", "ms"),
    ("passes", "merge_ms", "Breaks closer than this are one body", "ms"),
    ("passes", "blocked_after_s", "Beam blocked after", "s"),
]
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _station():
    return current_app.extensions["station"]


def current_value(config, table: str, key: str):
    return {
        ("track", "length_m"): config.length_m, ("laps", "min_lap_s"): config.min_lap_s,
        ("laps", "max_lap_s"): config.max_lap_s,
        ("safety", "spotter_lead_s"): config.spotter_lead_s,
        ("safety", "spotter_timeout_s"): config.spotter_timeout_s,
        ("passes", "glitch_ms"): config.glitch_ms, ("passes", "merge_ms"): config.merge_ms,
        ("passes", "blocked_after_s"): config.blocked_after_s,
    }[(table, key)]


def _number(text: str, name: str) -> int | float:
    text = (text or "").strip().replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(name, f"must be a number, not {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(name, f"must be a finite number, not {text!r}")
    return int(value) if value.is_integer() else value


def apply_config(raw: dict):
    """Validate `raw` (a whole TOML document); if good, save and use it. Raises ConfigError."""
    station = _station()
    config = parse_config(raw)
    with station.config_lock:
        if station.config_path is not None:
            write_toml(station.config_path, raw)
        station.config = config
        reconfigure = getattr(station.worker, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(config)
    return config


def write_toml(path: Path, raw: dict) -> None:
    """Replace the file atomically (a power cut leaves the old or the new file, never half),
    keeping the previous one as `<name>.bak`."""
    text = tomli_w.dumps(raw)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("# Written by the station's settings page; the previous file is kept as .bak\n")
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    if path.exists():
        bak = path.with_name(path.name + ".bak")
        bak.write_bytes(path.read_bytes())
    os.replace(tmp, path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _applied_message() -> str:
    if getattr(_station().worker, "reconfigure", None) is not None:
        return "Settings saved and in use."
    return "Settings saved. Laps are computed with them from the next start of the station."


@bp.route("/settings", methods=["GET", "POST"])
@login_required
def settings():
    station = _station()
    config = station.config
    values = {f"{t}.{k}": current_value(config, t, k) for t, k, _, _ in FIELDS}
    error = None
    status = 200
    toml_text = tomli_w.dumps(config.source)
    if request.method == "POST":
        try:
            if request.form.get("form") == "toml":
                toml_text = request.form.get("toml", "")
                new = loads_config(toml_text, "settings")
                apply_config(new.source)
            else:
                raw = copy.deepcopy(config.source)
                for table, key, _, _ in FIELDS:
                    name = f"{table}.{key}"
                    values[name] = request.form.get(name, "")
                    raw.setdefault(table, {})[key] = _number(values[name], name)
                apply_config(raw)
            flash(_applied_message())
            return redirect(url_for("coach.settings"))
        except ConfigError as exc:
            error = exc
            status = 400
    return render_template("settings.html", fields=FIELDS, values=values, error=error,
                           toml_text=toml_text, path=station.config_path), status


# ---- roster ------------------------------------------------------------------------------

def roster_csv(runners) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["bib", "name"])
    for r in sorted(runners, key=lambda r: r.bib):
        name = r.name
        # A name like "=cmd()" must not run as a formula when the file is opened in a sheet.
        if name.startswith(CSV_FORMULA_START):
            name = "'" + name
        w.writerow([r.bib, name])
    return out.getvalue()


def parse_roster_csv(text: str) -> list[dict]:
    """Rows `bib,name` (header optional) to runner tables; ValueError naming the line."""
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    out, seen = [], {}
    bib_col, name_col = 0, 1
    start = 0
    if rows and rows[0] and not is_count(rows[0][0].strip()):
        header = [c.strip().lower() for c in rows[0]]
        if "bib" not in header:
            raise ValueError("line 1: the header needs a 'bib' column (and 'name')")
        bib_col = header.index("bib")
        name_col = header.index("name") if "name" in header else None
        start = 1
    for line_no, row in enumerate(rows[start:], start + 1):
        if not any(c.strip() for c in row):
            continue
        cell = row[bib_col].strip() if bib_col < len(row) else ""
        if not is_bib(cell):
            raise ValueError(f"line {line_no}: bib must be a number from 1 to {MAX_BIB}, "
                             f"not {cell!r}")
        bib = int(cell)
        if bib in seen:
            raise ValueError(f"line {line_no}: bib {bib} is already on line {seen[bib]}")
        seen[bib] = line_no
        name = row[name_col].strip() if name_col is not None and name_col < len(row) else ""
        if name.startswith("'") and name[1:2] in CSV_FORMULA_START:
            name = name[1:]
        out.append({"bib": bib, "name": name[:60]})
    return out


def _save_runners(runners: list[dict]) -> None:
    raw = copy.deepcopy(_station().config.source)
    raw["runners"] = sorted(runners, key=lambda r: r["bib"])
    if not raw["runners"]:
        del raw["runners"]
    apply_config(raw)


@bp.route("/roster", methods=["GET"])
@login_required
def roster():
    config = _station().config
    return render_template("roster.html", runners=sorted(config.runners, key=lambda r: r.bib))


@bp.route("/roster", methods=["POST"])
@login_required
def roster_change():
    config = _station().config
    runners = [{"bib": r.bib, "name": r.name} for r in config.runners]
    action = request.form.get("action")
    try:
        if action == "import":
            upload = request.files.get("file")
            text = upload.read().decode("utf-8-sig") if upload and upload.filename else \
                request.form.get("text", "")
            runners = parse_roster_csv(text)
            message = f"Roster imported: {len(runners)} runners."
        elif action == "save":
            bib_text = request.form.get("bib", "").strip()
            if not is_bib(bib_text):
                raise ValueError(f"bib must be a number from 1 to {MAX_BIB}, not {bib_text!r}")
            bib = int(bib_text)
            name = request.form.get("name", "").strip()[:60]
            runners = [r for r in runners if r["bib"] != bib] + [{"bib": bib, "name": name}]
            message = f"Bib {bib} saved."
        elif action == "remove":
            bib_text = request.form.get("bib", "")
            runners = [r for r in runners if str(r["bib"]) != bib_text.strip()]
            message = f"Bib {bib_text} removed from the roster."
        else:
            raise ValueError(f"unknown roster action {action!r}")
        _save_runners(runners)
        flash(message)
    except (ValueError, ConfigError) as exc:
        # The page again, with what the coach typed or pasted, and what is wrong with it.
        return render_template("roster.html", error=f"Roster not changed: {exc}",
                               form=request.form,
                               runners=sorted(config.runners, key=lambda r: r.bib)), 400
    return redirect(url_for("coach.roster"))


@bp.route("/roster.csv")
@login_required
def roster_export():
    return Response(roster_csv(_station().config.runners), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="roster.csv"'})


@bp.route("/roster/bibs.pdf")
@login_required
def bib_sheets():
    """Printable bib sheets (a PDF from `station.bibs`): the whole roster, or `?bib=N`."""
    import tempfile

    from station import bibs

    runners = [(r.bib, r.name) for r in sorted(_station().config.runners, key=lambda r: r.bib)]
    wanted = request.args.get("bib", "").strip()
    if wanted:
        if not is_bib(wanted):
            return render_template("error.html", code=400, name="Bad bib",
                                   description=f"bib must be 1 to {MAX_BIB}, not {wanted!r}."), 400
        runners = [(int(wanted), _station().config.runner_name(int(wanted)))]
    if not runners:
        flash("The roster is empty: add runners first, or ask for one bib.", "error")
        return redirect(url_for("coach.roster"))
    # One sheet at a time: a few coaches pressing the button at once must not multiply
    # the memory a PDF of page images takes.
    with _SHEETS_LOCK, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bibs.pdf"
        bibs.write(path, runners)
        data = path.read_bytes()
    name = f"bib-{wanted}.pdf" if wanted else "bibs.pdf"
    return Response(data, mimetype="application/pdf",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# ---- coach logins ------------------------------------------------------------------------

@bp.route("/account", methods=["GET", "POST"])
@login_required
def account():
    store = _station().store
    error = None
    if request.method == "POST":
        form = request.form
        if form.get("action") == "add":
            name = form.get("name", "").strip()
            error = check_new_login(name, form.get("password", ""), form.get("repeat", ""))
            if error is None:
                try:
                    store.create_user(name, hash_password(form["password"]))
                except ValueError:
                    error = f"There is already a coach called {name}."
            if error is None:
                flash(f"Coach login {name} created.")
                return redirect(url_for("coach.account"))
        elif form.get("action") == "password":
            user = store.get_user(g.coach)
            if not user or not password_ok(user["password_hash"], form.get("old", "")):
                error = "Your current password is not right."
            else:
                error = check_new_login(g.coach, form.get("password", ""), form.get("repeat", ""))
            if error is None:
                store.set_password(g.coach, hash_password(form["password"]))
                flash("Password changed.")
                return redirect(url_for("coach.account"))
        else:
            error = "Unknown action."
    return render_template("account.html", error=error), (400 if error else 200)
