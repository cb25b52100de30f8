"""Start-up: bad settings stop the service with a one-line error naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("READ_HANDLER", "maybe", "off, missing"),
        ("PORT", "99999", "an integer from 0 to 65535"),
        ("WS_IMPL", "h2", "websockets-sansio, wsproto, websockets"),
        ("WS_PING_INTERVAL", "-1", "0 / off to disable keepalive"),
        ("EVENT_RATE", "fast", "a number from 0"),
        ("AMQP_URL", "http://broker", "amqp://"),
        ("HOST", "example.com", "an IP address"),
    ],
)
def test_bad_setting_fails_startup_with_one_line(name: str, value: str, expected: str) -> None:
    """The process exits non-zero and prints one line naming the variable and valid values."""
    env = {**os.environ, name: value, "PORT": os.environ.get("PORT", "0")}
    if name == "PORT":
        env["PORT"] = value
    result = subprocess.run(
        [sys.executable, "-m", "event_service"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"event-service: invalid {name}=")
    assert expected in lines[0]
