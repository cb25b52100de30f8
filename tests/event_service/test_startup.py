"""Start-up: bad settings stop the service with a one-line error naming the variable."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from event_service.settings import settings_from_env
from leaklab.children import ServiceProcess
from tests.conftest import Launch
from tests.utils import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("READ_HANDLER", "maybe", "missing, off"),
        ("PORT", "99999", "an integer from 0 to 65535"),
        ("WS_IMPL", "h2", "websockets-sansio, wsproto, websockets"),
        ("WS_PING_INTERVAL", "-1", "0 / off to disable keepalive"),
        ("EVENT_RATE", "fast", "a number from 0"),
        ("AMQP_URL", "http://broker", "amqp://"),
        ("HOST", "example.com", "an IP address"),
        ("HANDSHAKE_TIMEOUT", "0", "a number from 0.1 to 3600"),
        ("WS_MAX_SIZE", "big", "an integer from 1024 to 16777216"),
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


@pytest.mark.parametrize(("read_handler", "warned"), [("off", True), ("on", False)])
def test_missing_read_handler_is_warned_about_at_startup(
    launch: Launch, read_handler: str, warned: bool
) -> None:
    """READ_HANDLER=off logs a warning that client messages will not be read; on does not."""
    service = launch(READ_HANDLER=read_handler)
    log = service.log_tail(lines=50)
    assert f"starting read_handler={'missing' if warned else 'fixed'}" in log
    assert ("WARNING event_service: read handler missing" in log) is warned


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until end of stream, then close ``writer``."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.mark.timeout(60)
@pytest.mark.rabbitmq
async def test_first_broker_connect_is_retried_until_the_broker_answers(
    tmp_path: Path,
) -> None:
    """A broker that is not there yet: the service retries with backoff, then starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service = ServiceProcess(
        settings_from_env(
            {"PORT": "0", "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{port}/", "EVENT_RATE": "0"}
        ),
        tmp_path / "service.log",
    )
    starting = asyncio.create_task(asyncio.to_thread(service.start))
    relay: asyncio.Server | None = None
    pipes: set[asyncio.Task[None]] = set()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", 5672)
        for task in (pipe(reader, broker_writer), pipe(broker_reader, writer)):
            pipes.add(asyncio.create_task(task))

    try:
        await wait_until(lambda: "retry_in_s=1.0" in service.log_tail(), timeout_s=20,
                         what="a second connect attempt failed")  # fmt: skip
        relay = await asyncio.start_server(forward, "127.0.0.1", port)
        await asyncio.wait_for(starting, timeout=30)
        assert service.stats()["source"] == "rabbitmq"
        log = service.log_tail(lines=50)
        assert "amqp connect failed attempt=1 retry_in_s=0.5" in log
        assert "amqp connect failed attempt=2 retry_in_s=1.0" in log
        assert "amqp connected" in log
    finally:
        # In a thread: the relay runs on this loop, and the service deletes its queue through it.
        await asyncio.to_thread(service.stop)
        if not starting.done():
            starting.cancel()
        if relay is not None:
            relay.close()
            await relay.wait_closed()
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
