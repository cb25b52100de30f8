"""The publisher command, ``python -m event_service.publish``, against the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid

import pytest
from websockets.asyncio.client import connect

from tests.conftest import Launch
from tests.utils import AMQP_URL, wait_until

pytestmark = [pytest.mark.timeout(60), pytest.mark.rabbitmq]


def run_publisher(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the publisher command to its end, without a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "event_service.publish", "--url", AMQP_URL, *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "AMQP_URL": ""},
    )


async def test_publisher_command_delivers_count_events_through_the_broker(launch: Launch) -> None:
    """``--count 5`` publishes five confirmed events that reach a subscriber of their type."""
    service = launch(AMQP_URL=AMQP_URL)
    event_type = f"pub-{uuid.uuid4().hex[:8]}"
    async with connect(f"{service.ws_url}?events={event_type}", ping_interval=None,
                       compression=None, proxy=None) as ws:  # fmt: skip
        await wait_until(lambda: service.stats()["connections"] == 1, timeout_s=10, what="1 sub")
        result = await asyncio.to_thread(
            run_publisher, "--type", event_type, "--rate", "50", "--count", "5", "--size", "100"
        )
        assert result.returncode == 0, result.stderr
        assert "done published=5" in result.stderr
        events = [json.loads(await asyncio.wait_for(ws.recv(), timeout=10)) for _ in range(5)]
    assert {e["type"] for e in events} == {event_type}
    assert len({e["id"] for e in events}) == 5
    assert service.stats()["events_received"] >= 5


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_publisher_names_the_signal_that_stopped_it(
    launch: Launch, signum: signal.Signals
) -> None:
    """``--count 0`` publishes until a signal; it exits 0 and logs which signal it was."""
    service = launch(AMQP_URL=AMQP_URL)
    event_type = f"sig-{uuid.uuid4().hex[:8]}"
    async with connect(f"{service.ws_url}?events={event_type}", ping_interval=None,
                       compression=None, proxy=None) as ws:  # fmt: skip
        await wait_until(lambda: service.stats()["connections"] == 1, timeout_s=10, what="1 sub")
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "event_service.publish", "--url", AMQP_URL,
            "--type", event_type, "--rate", "20", "--count", "0",
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "AMQP_URL": ""},
        )  # fmt: skip
        try:
            await asyncio.wait_for(ws.recv(), timeout=20)  # it is in its publishing loop
            publisher.send_signal(signum)
            _, err = await asyncio.wait_for(publisher.communicate(), timeout=15)
        finally:
            if publisher.returncode is None:
                publisher.kill()
                await publisher.wait()
    stderr = err.decode()
    assert publisher.returncode == 0, stderr
    assert f"stopped signal={signum.name}" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "--rate must be > 0"),
        (["--count", "-1"], "--count must be >= 0"),
        (["--type", "no spaces"], "--type:"),
        (["--size", "9999999"], "--size must be from 0"),
    ],
)
def test_publisher_refuses_bad_options_with_a_usage_error(args: list[str], message: str) -> None:
    """Bad options exit with status 2 and say which option is wrong, before connecting."""
    result = run_publisher(*args)
    assert result.returncode == 2
    assert message in result.stderr
