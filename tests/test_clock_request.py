"""Setting the clock from a coach's phone through station-clock.service: the request file the
dashboard writes, and what the privileged side accepts. The system clock itself is the
hardware boundary: tests hand `apply` a setter instead of changing this machine's clock."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from station import clock_request
from station.clock_request import ClockRequestError, apply, request


def test_request_then_apply_sets_the_asked_time_plus_the_wait(tmp_path):
    path = request(tmp_path, "2026-05-02T09:30:00.000Z")
    assert path.name == "clock-request" and not list(tmp_path.glob("*.tmp"))
    # The service starts a little later; that delay is added, not lost.
    req = json.loads(path.read_text())
    req["monotonic_ns"] -= 3_000_000_000
    path.write_text(json.dumps(req))
    got = []
    result = apply(path, settime=got.append)
    target = datetime(2026, 5, 2, 9, 30, 3, tzinfo=timezone.utc).timestamp()
    assert got and abs(got[0] - target) < 0.5
    assert abs(result.timestamp() - got[0]) < 1e-6
    assert not path.exists()


@pytest.mark.parametrize("wall, problem", [
    ("yesterday", "not an ISO 8601 time"),
    ("2026-05-02T09:30:00", "no time zone"),
    ("1970-01-01T00:00:00Z", "outside"),
])
def test_dashboard_cannot_ask_for_a_bad_time(tmp_path, wall, problem):
    with pytest.raises(ClockRequestError, match=problem):
        request(tmp_path, wall)
    assert not (tmp_path / "clock-request").exists()


@pytest.mark.parametrize("content, problem", [
    ('{"wall": "2026-05-02T09:30:00Z"}', "bad request"),
    ("not json", "bad request"),
    ('{"wall": "2026-05-02T09:30:00Z", "monotonic_ns": TEN_MINUTES_AGO}', "stale"),
    ('{"wall": "1999-05-02T09:30:00Z", "monotonic_ns": NOW}', "outside"),
])
def test_unusable_requests_are_refused_and_removed(tmp_path, content, problem):
    path = tmp_path / "clock-request"
    now_ns = time.monotonic_ns()
    path.write_text(content.replace("TEN_MINUTES_AGO", str(now_ns - 600 * 10**9))
                    .replace("NOW", str(now_ns)))
    got = []
    with pytest.raises(ClockRequestError, match=problem):
        apply(path, settime=got.append)
    assert got == [] and not path.exists()  # never retried in a loop by the path unit


def test_main_without_a_request_does_nothing(tmp_path):
    assert clock_request.main(["apply", str(tmp_path / "clock-request")]) == 0
