"""Who may change things: coach logins, first-run setup, login rate limiting, CSRF tokens.

Runners' pages are read-only and need no login; every coach page needs one. There is no
default password: while the store has no coach account, `/coach/setup` creates the first one
(as OctoPrint's first-run wizard does), and afterwards it is closed for good.

Passwords are hashed with werkzeug.security (scrypt). Failed logins are limited per client
address and station-wide, so a phone on the hotspot cannot guess passwords at speed.

CSRF: every session gets a random token; every POST must carry it (form field `csrf` or
header `X-CSRF-Token`), checked before any view runs (see `check_csrf`, installed by
`create_app`). Together with SameSite cookies and the Host allow-list this stops other pages
from driving the coach's console.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import threading
import time
from collections import deque

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request,
                   session, url_for)
from werkzeug.security import check_password_hash, generate_password_hash

bp = Blueprint("auth", __name__, url_prefix="/coach")

MIN_PASSWORD_LEN = 8
MAX_NAME_LEN = 40
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def password_ok(stored_hash: str, password: str) -> bool:
    return check_password_hash(stored_hash, password)


class LoginLimiter:
    """Counts failed logins per client address (and all together) in a sliding window.

    `per_client` failures within `window_s` lock that address out until the oldest failure
    leaves the window; `overall` failures lock out everyone, which bounds guessing from many
    addresses. A success clears that client's record. Times come from `clock` (monotonic),
    never the wall clock, which a coach may set at any moment.
    """

    def __init__(self, per_client: int = 5, overall: int = 30, window_s: float = 300.0,
                 clock=time.monotonic):
        self.per_client = per_client
        self.overall = overall
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._fails: dict[str, deque] = {}
        self._all: deque = deque()

    def _trim(self, q: deque, now: float) -> None:
        while q and now - q[0] >= self.window_s:
            q.popleft()

    def retry_after_s(self, client: str) -> float:
        """0 if `client` may try now, else how many seconds until it may."""
        now = self._clock()
        with self._lock:
            self._trim(self._all, now)
            waits = []
            if len(self._all) >= self.overall:
                waits.append(self._all[0] + self.window_s - now)
            q = self._fails.get(client)
            if q is not None:
                self._trim(q, now)
                if len(q) >= self.per_client:
                    waits.append(q[0] + self.window_s - now)
                elif not q:
                    del self._fails[client]
            return max(waits, default=0.0)

    def failed(self, client: str) -> None:
        now = self._clock()
        with self._lock:
            self._fails.setdefault(client, deque()).append(now)
            self._all.append(now)
            # Bound memory against a flood of distinct addresses.
            if len(self._fails) > 1024:
                for key in [k for k, q in self._fails.items() if not q or now - q[-1] >= self.window_s]:
                    del self._fails[key]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._fails.pop(client, None)


# ---- CSRF -------------------------------------------------------------------------------

def csrf_token() -> str:
    """This session's CSRF token (created on first use); templates put it in every form."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """before_request: refuse a state-changing request without this session's token."""
    if request.method in SAFE_METHODS:
        return
    expected = session.get("csrf")
    given = request.headers.get("X-CSRF-Token") or request.form.get("csrf", "")
    if not expected or not hmac.compare_digest(str(expected), str(given)):
        abort(400, description="The form has expired or did not come from this station "
                               "(missing or wrong CSRF token). Reload the page and try again.")


# ---- who is logged in -------------------------------------------------------------------

def current_coach() -> str | None:
    return session.get("coach")


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not current_coach():
            if not current_app.extensions["station"].store.users_exist():
                return redirect(url_for("auth.setup"))
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        g.coach = current_coach()
        return view(*args, **kwargs)
    return wrapped


def _log_in(name: str) -> None:
    # A fresh session (and CSRF token) at login: a token seen before login is worth nothing after.
    session.clear()
    session.permanent = True
    session["coach"] = name
    csrf_token()


def _safe_next(target: str | None) -> str:
    # Only same-site paths: never bounce a coach to another host after login. Browsers drop
    # tabs and newlines from a Location ("/\t/evil.example" becomes "//evil.example"), and
    # a newline cannot go in a header at all: printable ASCII only.
    if (target and target.startswith("/") and not target.startswith("//")
            and "\\" not in target and all(" " < c < "\x7f" for c in target)):
        return target
    return url_for("coach.console")


def _client() -> str:
    return request.remote_addr or "?"


@bp.route("/login", methods=["GET", "POST"])
def login():
    st = current_app.extensions["station"]
    if not st.store.users_exist():
        return redirect(url_for("auth.setup"))
    error = None
    status = 200
    if request.method == "POST":
        wait_s = st.limiter.retry_after_s(_client())
        name = request.form.get("name", "").strip()
        if wait_s > 0:
            error = f"Too many failed attempts. Try again in {int(wait_s) + 1} s."
            status = 429
        else:
            user = st.store.get_user(name) if name else None
            stored = _user_hash(user)
            # An unknown name costs a hash check too, so timing does not tell which exist.
            if password_ok(stored or _dummy_hash(), request.form.get("password", "")) and stored:
                st.limiter.succeeded(_client())
                _log_in(name)
                return redirect(_safe_next(request.args.get("next")))
            st.limiter.failed(_client())
            error = "Wrong name or password."
            status = 401
    headers = {"Retry-After": str(int(wait_s) + 1)} if status == 429 else {}
    return render_template("login.html", error=error), status, headers


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(16))


def _user_hash(user) -> str | None:
    """The password hash from whatever `store.get_user` returns (row, dict or object)."""
    if user is None:
        return None
    if isinstance(user, str):
        return user
    if isinstance(user, dict):
        return user.get("password_hash")
    try:
        return user["password_hash"]
    except (TypeError, KeyError, IndexError):
        return getattr(user, "password_hash", None)


@bp.route("/logout", methods=["POST"])
def logout():
    session.clear()
    return redirect(url_for("public.board"))


def check_new_login(name: str, password: str, repeat: str) -> str | None:
    """Why this new coach login is not acceptable, or None."""
    if not name or len(name) > MAX_NAME_LEN:
        return f"Give a name of 1 to {MAX_NAME_LEN} characters."
    if len(password) < MIN_PASSWORD_LEN:
        return f"The password needs at least {MIN_PASSWORD_LEN} characters."
    if password != repeat:
        return "The two passwords differ."
    return None


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """First run: create the first coach login. Closed once any login exists."""
    st = current_app.extensions["station"]
    if st.store.users_exist():
        return redirect(url_for("auth.login"))
    error = None
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        password = request.form.get("password", "")
        error = check_new_login(name, password, request.form.get("repeat", ""))
        if error is None:
            with st.setup_lock:  # two phones racing through setup create one account
                if st.store.users_exist():
                    return redirect(url_for("auth.login"))
                st.store.create_user(name, hash_password(password))
            _log_in(name)
            flash(f"Welcome, {name}. Your coach login is ready.")
            return redirect(url_for("coach.console"))
    return render_template("setup.html", error=error), (400 if error else 200)
