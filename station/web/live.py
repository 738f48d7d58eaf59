"""Live pages without reload: long-polling for HTML fragments, keyed by a content hash.

A live page holds a fragment (the board, a runner's laps, the coach's console) and its hash.
Its script asks `GET /live/<name>?h=<hash>`; the server answers at once if the fragment now
differs (a phone that slept or lost Wi-Fi catches up on its first request), else it waits on
`worker.wait_for_change` for up to `HOLD_S` and answers as soon as the fragment changes.

Why long-poll and not Server-Sent Events: waitress gives every open request a thread, so SSE
would pin one thread per phone for as long as the page is open, and a phone that vanished
from the Wi-Fi keeps its thread until TCP gives up. A long-poll is bounded (`HOLD_S`), needs
no streaming through waitress's output buffers, and its catch-up is just "send your hash".
Waiting requests are capped at `threads - RESERVED_THREADS`; beyond that a request is
answered at once with `retry_ms`, so the page polls each second instead and page loads and
coach actions always find a free thread.

Fragments are rendered once per (fragment, argument, state version) and cached, so fifty
phones on the board cost one render per change.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict

from flask import Blueprint, abort, current_app, jsonify, render_template, request, session

bp = Blueprint("live", __name__)

HOLD_S = 20.0
RESERVED_THREADS = 4
DEFAULT_WAITERS = 8
BUSY_RETRY_MS = 1000
WAIT_SLICE_S = 0.5
CACHE_SIZE = 512

# name -> (context function(state, station, arg) -> (template, context), needs_login)
FRAGMENTS: dict[str, tuple] = {}


def fragment(name: str, login: bool = False):
    """Register a live fragment: `fn(state, station, arg)` returns (template, context)."""
    def deco(fn):
        FRAGMENTS[name] = (fn, login)
        return fn
    return deco


class _Live:
    def __init__(self, waiters: int):
        self.waiters = threading.BoundedSemaphore(max(1, waiters))
        self.cache: OrderedDict = OrderedDict()
        self.lock = threading.Lock()
        self.closing = threading.Event()  # the server is stopping: waiting polls answer now
        self.render_lock = threading.Lock()


def configure_waiters(app, threads: int) -> None:
    app.extensions["station_live"] = _Live(threads - RESERVED_THREADS)


def close(app) -> None:
    """Answer every waiting poll now and any new one at once (the server is stopping)."""
    ext = app.extensions.get("station_live")
    if ext is not None:
        ext.closing.set()


def _live() -> _Live:
    ext = current_app.extensions.get("station_live")
    if ext is None:
        ext = current_app.extensions.setdefault("station_live", _Live(DEFAULT_WAITERS))
    return ext


def render(name: str, state, arg=None) -> tuple[str, str]:
    """(hash, html) of fragment `name` for `state`, from the cache when possible."""
    fn, login = FRAGMENTS[name]
    # Fragments with forms carry the session's CSRF token, so they are per session.
    key = (name, arg, state.version, session.get("csrf") if login else None)
    live = _live()
    hit = _cached(live, key)
    if hit is not None:
        return hit
    # One render per change, not one per waiting phone: when a pass wakes fifty polls at
    # once, the first renders and the others find its result (rendering holds the GIL anyway,
    # so taking turns costs nothing).
    with live.render_lock:
        hit = _cached(live, key)
        if hit is not None:
            return hit
        template, ctx = fn(state, current_app.extensions["station"], arg)
        html = render_template(template, **ctx)
        digest = hashlib.blake2b(html.encode(), digest_size=8).hexdigest()
        with live.lock:
            live.cache[key] = (digest, html)
            while len(live.cache) > CACHE_SIZE:
                live.cache.popitem(last=False)
    return digest, html


def _cached(live, key):
    with live.lock:
        hit = live.cache.get(key)
        if hit is not None:
            live.cache.move_to_end(key)
        return hit


def clock(station) -> dict:
    """The session clock now and its rate, so a page can tick "time in this lap" itself."""
    worker = station.worker
    session = getattr(worker.state, "session", None)
    return {"now_s": round(worker.now_s(), 3), "rate": getattr(session, "speed", 1.0)}


def page_context(name: str, arg=None) -> dict:
    """What a page template needs to embed fragment `name` and keep it live."""
    station = current_app.extensions["station"]
    digest, html = render(name, station.worker.state, arg)
    q = f"?arg={arg}" if arg is not None else ""
    return {"live_url": f"/live/{name}{q}", "live_hash": digest, "live_html": html,
            "live_clock": clock(station)}


@bp.route("/live/<name>")
def poll(name: str):
    if name not in FRAGMENTS:
        abort(404)
    _, login = FRAGMENTS[name]
    if login and not session.get("coach"):
        abort(403, description="Log in as a coach to see this.")
    arg = request.args.get("arg")
    if arg is not None:
        arg = _int_arg(arg)
    have = request.args.get("h", "")
    station = current_app.extensions["station"]
    worker = station.worker
    state = worker.state
    digest, html = render(name, state, arg)
    if digest != have:
        return _answer(station, digest, html)
    live = _live()
    if not live.waiters.acquire(blocking=False):
        return _answer(station, digest, None, retry_ms=BUSY_RETRY_MS)
    try:
        deadline = time.monotonic() + min(HOLD_S, _float_arg(request.args.get("wait"), HOLD_S))
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or live.closing.is_set():
                return _answer(station, digest, None)
            # Waits in slices so a stopping server is not held up by sleeping phones.
            state = worker.wait_for_change(state.version, min(left, WAIT_SLICE_S))
            digest, html = render(name, state, arg)
            if digest != have:
                return _answer(station, digest, html)
    finally:
        live.waiters.release()


def _answer(station, digest: str, html: str | None, retry_ms: int = 0):
    resp = jsonify({"h": digest, "html": html, "retry_ms": retry_ms, **clock(station)})
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _int_arg(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        abort(400, description=f"arg must be a number, not {value!r}")


def _float_arg(value, default: float) -> float:
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default
