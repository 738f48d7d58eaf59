"""The dashboard: a Flask app (`create_app`) over the worker's live state and the store, and
`make_server`, the production WSGI server (waitress) it runs in.

Blueprints: `public` (live board, runner pages, check-in; no login), `auth` (first-run setup,
login, logout), `coach` (console, roster, settings, health, clock), `downloads` (CSV, JSON and
the raw log) and `live` (long-poll updates for open pages).

Every request passes three gates before a view runs: the Host header must name this station
(`config.web_hostnames` or an IP literal: stops DNS rebinding), a POST must carry the
session's CSRF token, and nothing changes on a GET (views only change state on POST).
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable

from flask import Flask, abort, render_template, request
from flask.sessions import SecureCookieSessionInterface

from station.web.auth import LoginLimiter, check_csrf, csrf_token, current_coach

SECRET_SETTING = "web.secret_key"


@dataclass
class Hooks:
    """Things the dashboard can ask of the hardware; each is optional (None: not offered).

    snapshot() -> JPEG bytes or None        the camera's latest frame (health page)
    photo(gate, pass_t) -> JPEG bytes or None   the photo taken at a pass
    buzzer_test() -> None                   sound the buzzer briefly
    set_clock(wall_iso) -> None             set the system clock (needs privileges; see
                                            `station.web.clock`); off unless configured
    disk_path                               where the store lives, for free-space reports
    camera_fps() -> {camera id: fps or None}   each camera's frame rate now (health page)
    link_status() -> dict                   the checkpoint-gate MQTT link (`station.mqtt`)
    """

    snapshot: Callable[[], bytes | None] | None = None
    photo: Callable[[str, float], bytes | None] | None = None
    buzzer_test: Callable[[], None] | None = None
    set_clock: Callable[[str], None] | None = None
    disk_path: str | Path | None = None
    camera_fps: Callable[[], dict] | None = None
    link_status: Callable[[], dict] | None = None


@dataclass
class Station:
    """What the views reach through `current_app.extensions["station"]`."""

    worker: object
    store: object
    config: object
    config_path: Path | None
    hooks: Hooks
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    setup_lock: threading.Lock = field(default_factory=threading.Lock)
    config_lock: threading.Lock = field(default_factory=threading.Lock)


def host_allowed(host: str, hostnames) -> bool:
    """True if `host` (a Host header, maybe with a port) is an IP literal or a listed name."""
    if not host:
        return False
    if host.startswith("["):  # [::1]:8080
        name = host[1:].split("]", 1)[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    name = name.rstrip(".").lower()
    return any(name == h.rstrip(".").lower() for h in hostnames)


def _secret_key(store) -> str:
    # Kept in the store so coaches stay logged in across a restart or power cut.
    key = store.get_setting(SECRET_SETTING)
    if not key:
        key = secrets.token_hex(32)
        store.set_setting(SECRET_SETTING, key)
    return key


class PollSafeSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, except that a live poll never sets the cookie.

    A coach's session is permanent, so Flask re-sends it with every answer. A long-poll
    begun before a form post and answered just after it would send back the session as it
    was when the poll began, and the browser would forget what the post put there (the
    "Alarm silenced." message, a login). Polls only read the session."""

    def should_set_cookie(self, app, session) -> bool:
        if request.blueprint == "live":
            return False
        return super().should_set_cookie(app, session)


def create_app(worker, store, config, *, config_path=None, hooks: Hooks | None = None,
               secret_key: str | None = None, testing: bool = False) -> Flask:
    """The dashboard app over a running `worker`, its `store` and the station `config`.

    `config_path` is the TOML file that settings and roster edits are written back to (None:
    edits apply to this process only).
    """
    app = Flask(__name__)
    app.session_interface = PollSafeSessions()
    app.config.update(
        SECRET_KEY=secret_key or _secret_key(store),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="station_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,  # a roster CSV or a settings form, never more
        TESTING=testing,
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.extensions["station"] = Station(
        worker=worker, store=store, config=config,
        config_path=Path(config_path) if config_path else None, hooks=hooks or Hooks())

    @app.before_request
    def _gates():
        station = app.extensions["station"]
        if not host_allowed(request.host, station.config.web_hostnames):
            abort(421, description=f"This station does not answer to the name {request.host!r}.")
        check_csrf()

    @app.after_request
    def _headers(resp):
        # Everything is served from here: no inline scripts, no outside fonts or scripts.
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        if current_coach() and "Cache-Control" not in resp.headers:
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
    @app.errorhandler(421)
    def _error(exc):
        # The exception's own headers matter: a 405 names the methods allowed (Allow).
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return render_template("error.html", code=exc.code, name=exc.name,
                               description=exc.description), exc.code, headers

    @app.errorhandler(500)
    def _bug(exc):
        # A bug in a view: a page in the station's style; what was recorded is untouched.
        return render_template(
            "error.html", code=500, name="Internal error",
            description="The station could not answer this request (a bug: its log has "
                        "the details). Laps and everything recorded are safe."), 500

    @app.context_processor
    def _globals():
        station = app.extensions["station"]
        return {"csrf_token": csrf_token, "coach": current_coach(),
                "station_id": station.config.station_id}

    from station.web import auth as auth_views
    from station.web import coach, downloads, live, public
    from station.web import settings as _settings  # noqa: F401  (routes on coach.bp)
    from station.web.views import register_filters

    register_filters(app)
    app.register_blueprint(public.bp)
    app.register_blueprint(auth_views.bp)
    app.register_blueprint(coach.bp)
    app.register_blueprint(downloads.bp)
    app.register_blueprint(live.bp)
    return app


def make_server(app, host: str = "127.0.0.1", port: int = 0, threads: int = 16):
    """A waitress server for `app` (not yet serving: call `.run()`, stop with `.close()`).

    Sizing: each open page holds one long-poll request for up to `live.HOLD_S`; the live
    endpoint lets at most `threads - live.RESERVED_THREADS` of them wait at once (the rest get
    an immediate answer and poll), so page loads and coach actions always find a free thread.
    `connection_limit` is raised well above waitress's 100 because each phone keeps a
    keep-alive connection or two open.
    """
    from waitress import create_server

    from station.web import live

    live.configure_waiters(app, threads)
    return create_server(app, host=host, port=port, threads=threads,
                         connection_limit=max(200, threads * 8), channel_timeout=60,
                         ident="station", clear_untrusted_proxy_headers=True)


def stop_server(server, app=None, timeout_s: float = 5.0) -> None:
    """Stop a server from `make_server`: waiting long-polls answer at once, every connection
    and the listener close (waitress has no stop()), request threads finish."""
    from station.web import live

    if app is not None:
        live.close(app)
    for channel in list(server._map.values()):
        try:
            if channel is server:
                server.close()
            elif channel in server.active_channels.values():
                channel.handle_close()
            else:
                channel.close()
        except Exception:  # closing anyway: a channel already gone is fine
            pass
    server.task_dispatcher.shutdown(timeout=timeout_s)


def serve(app, config) -> None:
    """Serve `app` on `config.web_host:web_port` until interrupted (used by `station run`)."""
    server = make_server(app, config.web_host, config.web_port, config.web_threads)
    server.run()
