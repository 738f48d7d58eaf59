"""Shared fixtures. Fakes live only at the hardware boundary: gpiozero's MockFactory for pins
(as gpiozero's own tests/conftest.py does) and the fake camera; everything else is real."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
EXAMPLES = SHARED / "examples"


@pytest.fixture
def examples_dir() -> Path:
    if not EXAMPLES.is_dir():
        pytest.skip("../shared/examples is not beside this checkout")
    return EXAMPLES


@pytest.fixture
def mock_factory():
    """A fresh gpiozero MockFactory, closed (and its pins reset) after the test."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    saved = Device.pin_factory
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.reset()
        factory.close()
        Device.pin_factory = saved


def require(available: bool, what: str) -> None:
    """Skip a test whose outside tool is missing on a developer's machine, but fail it in CI
    (CI=true), where `./dev test` installs every tool: CI must never pass by skipping."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must have it: ./dev test installs it)")
    pytest.skip(what)
