"""The raw event log (SPEC §2): JSON Lines in, validated event dicts out, and back.

An event is a plain dict exactly as it stands in the log: `t` (session seconds, float),
`type`, and the type's fields. Unknown types and fields are kept untouched so an export
loses nothing. Known types missing a field, and lines that are not JSON objects, raise
`LogError` naming the line; everything read before it has already been yielded.

The project's own event types (coach corrections, sensor faults, clock settings) are listed
in `REQUIRED` next to SPEC's, so they are checked the same way.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

# type -> fields that must be present (besides `t` and `type`).
REQUIRED: dict[str, tuple[str, ...]] = {
    # SPEC §2
    "start": ("wall", "station"),
    "beam": ("gate", "broken"),
    "tag": ("camera", "tag"),
    "checkin": ("bib",),
    "checkout": ("bib",),
    # The project's own (docs/ARCHITECTURE.md, "Event types"). Other tools ignore them.
    "fault": ("kind", "source", "active"),
    "silence": (),
    "correct": ("action",),
    "clock": ("wall", "by"),
}

# Most events in a log; checked first and cheaply on the hot path.
_BEAM_FIELDS = REQUIRED["beam"]
_TAG_FIELDS = REQUIRED["tag"]

MAX_OUT_OF_ORDER_S = 2.0


class LogError(ValueError):
    """A bad line in an event log; `line` is 1-based."""

    def __init__(self, line: int, message: str, source: str = ""):
        where = f"{source}:{line}" if source else f"line {line}"
        super().__init__(f"{where}: {message}")
        self.line = line


def check_event(ev: object) -> str | None:
    """Why `ev` is not a valid event, or None if it is."""
    if not isinstance(ev, dict):
        return "not a JSON object"
    t = ev.get("t")
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        return "missing or non-numeric 't'"
    if t != t or t in (float("inf"), float("-inf")):
        return "'t' is not a finite number"
    kind = ev.get("type")
    if not isinstance(kind, str):
        return "missing 'type'"
    needed = REQUIRED.get(kind)
    if needed is None:
        return None  # unknown types are kept and ignored
    for name in needed:
        if name not in ev:
            return f"'{kind}' event missing field '{name}'"
    if kind == "beam" and not isinstance(ev["broken"], bool):
        return "'beam' field 'broken' must be true or false"
    if kind == "tag" and (not isinstance(ev["tag"], int) or isinstance(ev["tag"], bool)):
        return "'tag' field 'tag' must be an integer"
    if kind in ("checkin", "checkout") and (not isinstance(ev["bib"], int) or isinstance(ev["bib"], bool)):
        return f"'{kind}' field 'bib' must be an integer"
    return None


def parse_line(line: bytes | str, line_no: int, source: str = "") -> dict:
    """One log line to an event dict, or `LogError`."""
    try:
        ev = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise LogError(line_no, f"not valid JSON ({exc})", source) from None
    problem = check_event(ev)
    if problem:
        raise LogError(line_no, problem, source)
    return ev


def iter_lines(lines: Iterable[bytes | str], source: str = "") -> Iterator[dict]:
    """Events from log lines in file order; blank lines are skipped."""
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        yield parse_line(line, line_no, source)


def read_log(path: str | Path) -> Iterator[dict]:
    """Events from a JSON Lines file, in file order (the order received)."""
    for block in read_blocks(path):
        for _, ev in block:
            yield ev


_INF = float("inf")
_BLOCK_BYTES = 1 << 16   # ~1000 lines: big enough to amortise, small enough to stay in cache


def read_blocks(path: str | Path):
    """Lists of (t, event) in file order, one list per large block of the file (what
    `Engine.feed_timed` takes). Beam and tag lines, nearly all of a log, are accepted by a
    quick check that admits only what `events.check_event` admits; anything else goes
    through `check_event` itself. A bad line raises `LogError` naming it, once the events
    before it have been yielded."""
    src = str(path)
    loads, JSONDecodeError = orjson.loads, orjson.JSONDecodeError
    line_no = 0
    with open(path, "rb") as fh:
        rest = b""
        while True:
            block = fh.read(_BLOCK_BYTES)
            if not block:
                lines, rest = ([rest] if rest else []), b""
            else:
                lines = (rest + block).split(b"\n")
                rest = lines.pop()
            out = []
            append = out.append
            for line in lines:
                line_no += 1
                try:
                    ev = loads(line)
                except JSONDecodeError:
                    if not line.strip():
                        continue
                    yield out
                    parse_line(line, line_no, src)  # raises the LogError that names it
                    raise
                if type(ev) is dict:
                    kind = ev.get("type")
                    if (kind == "tag" and type(ev.get("tag")) is int and "camera" in ev) or \
                            (kind == "beam" and type(ev.get("broken")) is bool and "gate" in ev):
                        t = ev.get("t")
                        if (type(t) is float and -_INF < t < _INF) or type(t) is int:
                            append((t, ev))
                            continue
                problem = check_event(ev)
                if problem:
                    yield out
                    raise LogError(line_no, problem, src)
                append((ev["t"], ev))
            if out:
                yield out
            if not block:
                return


def dumps(ev: dict) -> bytes:
    """One event as a log line (no newline). Key order is kept, so a read-write round trip
    gives the same text."""
    return orjson.dumps(ev)


class Reorderer:
    """Releases events in `t` order (stable for equal `t`) once no earlier event can still
    arrive: a line may be out of order by at most `window_s`.

    Memory is bounded by the events of one window, so a long log never has to be held whole.
    An event that arrives later than the window allows (`t` below what was already
    released) is released at once and counted in `late`; the caller decides what that means.
    """

    __slots__ = ("window_s", "_heap", "_seq", "_released_t", "late")

    def __init__(self, window_s: float = MAX_OUT_OF_ORDER_S):
        self.window_s = window_s
        self._heap: list[tuple[float, int, dict]] = []
        self._seq = 0
        self._released_t = float("-inf")
        self.late = 0

    def push(self, ev: dict) -> list[dict]:
        """Add one event; return the events that are now safe to process, in order."""
        t = ev["t"]
        if t < self._released_t:
            self.late += 1
            return [ev]
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, ev))
        return self.release_until(t - self.window_s)

    def release_until(self, t_s: float) -> list[dict]:
        """Release every held event with `t <= t_s` (the clock has moved past them)."""
        out = []
        heap = self._heap
        while heap and heap[0][0] <= t_s:
            out.append(heapq.heappop(heap)[2])
        if out:
            self._released_t = max(self._released_t, out[-1]["t"])
        return out

    def flush(self) -> list[dict]:
        """Release everything held (end of log)."""
        out = [heapq.heappop(self._heap)[2] for _ in range(len(self._heap))]
        if out:
            self._released_t = max(self._released_t, out[-1]["t"])
        return out


def in_time_order(events: Iterable[dict], window_s: float = MAX_OUT_OF_ORDER_S) -> Iterator[dict]:
    """`events` (in arrival order) re-ordered by `t`, stably, within `window_s`."""
    buf = Reorderer(window_s)
    for ev in events:
        yield from buf.push(ev)
    yield from buf.flush()
