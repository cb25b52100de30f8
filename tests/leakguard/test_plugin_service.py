"""The guard on this lab's own story: the event service in the test process, a swarm on it.

With the missing read handler the clients' pings stay in the kernel under the service's
sockets, and the guard reports each socket's unread bytes; the fixed service passes.
"""

from __future__ import annotations

import pytest

from tests.leakguard.conftest import RunExample

pytestmark = pytest.mark.timeout(120)

SERVICE = """
import asyncio
import threading
import time

import pytest

from event_service.server import EventServer, build_config
from event_service.settings import Settings
from ping_client.swarm import Swarm, SwarmConfig


@pytest.fixture(params=["missing", "fixed"])
def service(request):
    settings = Settings(port=0, read_handler=request.param, event_rate=20, log_level="warning")
    server = EventServer(build_config(settings))
    thread = threading.Thread(target=server.run, name="service")
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(20)


@pytest.fixture
async def swarm(service):
    config = SwarmConfig(
        url=f"ws://127.0.0.1:{service}/ws", clients=4, interval_s=0.05, size_bytes=4096,
        duration_s=60,
    )
    swarm = Swarm(config)
    run = asyncio.create_task(swarm.run())
    yield swarm
    swarm.stop()
    await run


async def test_clients_keep_sending(swarm):
    deadline = time.monotonic() + 30
    while swarm.stats.bytes_sent < 4 * 256 * 1024:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
"""


def test_the_missing_read_handler_is_caught_and_the_fix_passes(run_example: RunExample) -> None:
    """READ_HANDLER off: 4 server sockets with unread bytes; on: nothing left behind."""
    result = run_example(SERVICE, "--leak-guard")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_clients_keep_sending[[]missing[]]*",
            "leak guard: 4 unread backlogs left behind by *test_clients_keep_sending[[]missing[]]*",
            "unread backlog at the end of the test: 4 sockets, * bytes never read",
            "    fd * tcp ESTABLISHED local 127.0.0.1:* peer 127.0.0.1:*: * bytes received, "
            "never read",
        ]
    )
    result.stdout.no_fnmatch_line("*ERROR at teardown of test_clients_keep_sending[[]fixed[]]*")
