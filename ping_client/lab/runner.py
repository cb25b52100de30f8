"""Running one cell: a fresh event service, a swarm against it, a sample every second.

Each cell owns its service process and its swarm; both are stopped in ``finally`` blocks, so
an interrupted run (Ctrl-C) leaves no child process or socket behind. The launcher also asks
the kernel to SIGTERM the service if the lab itself dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from event_service.observer import read_sockstat
from event_service.publish import publish
from ping_client.lab.matrix import Cell
from ping_client.lab.skmem import read_skmem
from ping_client.launcher import ServiceProcess
from ping_client.swarm import Swarm, SwarmConfig

SAMPLE_EVERY_S = 1.0
SETTLE_TIMEOUT_S = 10.0
SETTLE_MARGIN_BYTES = 1 << 20

# Server figures copied from /stats into each sample, under the sample's names.
_STATS_FIELDS = {
    "recv_q_bytes": "server_recv_q_bytes",
    "recv_q_max_bytes": "server_recv_q_max_bytes",
    "recv_q_p99_bytes": "server_recv_q_p99_bytes",
    "kernel_tcp_mem_bytes": "kernel_tcp_mem_bytes",
    "rss_bytes": "rss_bytes",
    "open_fds": "open_fds",
    "asyncio_tasks": "asyncio_tasks",
    "connections": "connections",
    "events_received": "events_published",
    "events_delivered": "events_delivered",
    "events_dropped": "events_dropped",
    "client_messages": "messages_drained",
    "client_bytes": "bytes_drained",
}


@dataclasses.dataclass(frozen=True)
class LabOptions:
    """Load and timing of every cell."""

    duration_s: float = 60.0
    clients: int = 20
    interval_s: float = 0.1
    size_bytes: int = 4096
    event_rate: float = 5.0
    amqp_url: str | None = None


Sample = dict[str, Any]


def service_env(cell: Cell, options: LabOptions) -> dict[str, str]:
    """The event service's environment for one cell."""
    env = {**cell.env(), "EVENT_RATE": f"{options.event_rate:g}"}
    if options.amqp_url:
        env["AMQP_URL"] = options.amqp_url
    return env


def without_password(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the broker password in ``AMQP_URL`` masked, for reports people share."""
    url = env.get("AMQP_URL")
    if not url:
        return env
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return env
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return {**env, "AMQP_URL": parts._replace(netloc=netloc).geturl()}


def swarm_config(cell: Cell, options: LabOptions, url: str) -> SwarmConfig:
    """The swarm of one cell: the lab's load, the cell's ping kind, the swarm's safe defaults."""
    return SwarmConfig(
        url=url,
        clients=options.clients,
        ramp_per_s=max(options.clients, 1) * 4.0,
        interval_s=options.interval_s,
        size_bytes=options.size_bytes,
        ping_kind=cell.ping_kind,
        duration_s=options.duration_s,
    )


def swarm_settings(cell: Cell, options: LabOptions) -> dict[str, Any]:
    """The swarm's settings of one cell as JSON-ready data (the URL is the cell's free port)."""
    settings = dataclasses.asdict(swarm_config(cell, options, "ws://127.0.0.1:0/ws"))
    del settings["url"]
    return settings


async def run_cell(
    cell: Cell, options: LabOptions, log_path: Path, on_sample: Callable[[Sample], None]
) -> list[Sample]:
    """Run one cell to its end; return its samples (one per second)."""
    service = ServiceProcess(service_env(cell, options), log_path)
    await asyncio.to_thread(service.start)
    try:
        swarm = Swarm(swarm_config(cell, options, service.ws_url))
        samples: list[Sample] = []
        async with httpx.AsyncClient(base_url=service.base_url, timeout=5.0) as http:
            async with asyncio.TaskGroup() as tasks:
                run = tasks.create_task(swarm.run(), name="lab-swarm")
                sampler = tasks.create_task(
                    _sample_every_second(swarm, service, http, samples, on_sample),
                    name="lab-sampler",
                )
                if options.amqp_url:
                    publisher = tasks.create_task(_publish(options), name="lab-publisher")
                await run
                sampler.cancel()
                if options.amqp_url:
                    publisher.cancel()
        return samples
    finally:
        await asyncio.to_thread(service.stop)


async def _sample_every_second(
    swarm: Swarm,
    service: ServiceProcess,
    http: httpx.AsyncClient,
    samples: list[Sample],
    on_sample: Callable[[Sample], None],
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    while True:
        deadline += SAMPLE_EVERY_S
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        sample = await take_sample(swarm, service, http)
        samples.append(sample)
        on_sample(sample)


async def take_sample(swarm: Swarm, service: ServiceProcess, http: httpx.AsyncClient) -> Sample:
    """Client figures from the swarm, server figures from /stats, skmem from ``ss -tm``."""
    client = swarm.sample()
    first_close = swarm.stats.first_close
    sample: Sample = {
        "t_s": client["t_s"],
        "wall_time": time.time(),
        "connected": client["connected"],
        "pings_sent": client["pings_sent"],
        "pings_blocked": client["pings_blocked"],
        "bytes_sent": client["bytes_sent"],
        "blocked_in_send_s": client["blocked_in_send_s"],
        "events_received": client["events_received"],
        "latency_p50_ms": client["latency"]["p50_ms"],
        "latency_p99_ms": client["latency"]["p99_ms"],
        "closes": client["closes"],
        "first_close": list(first_close) if first_close else None,
        "first_close_s": {str(code): t for code, t in swarm.stats.first_close_s.items()},
        "clients": swarm.config.clients,
        "client_send_q_bytes": client.get("client_send_q_bytes"),
        "sending": client["sending"],
    }
    with contextlib.suppress(httpx.HTTPError, ValueError):
        stats = (await http.get("/stats")).raise_for_status().json()
        sample.update({ours: stats[theirs] for theirs, ours in _STATS_FIELDS.items()})
    assert service.port is not None
    skmem = await asyncio.to_thread(read_skmem, service.port)
    if skmem is not None:
        sample.update(skmem)
    return sample


async def wait_for_kernel_to_settle(baseline_bytes: int) -> int:
    """Wait (at most ``SETTLE_TIMEOUT_S``) until host TCP memory is back near ``baseline_bytes``.

    A cell's sockets can hold kernel memory for a moment after its processes are gone; the
    next cell should not start on top of it. Returns the memory when it stopped waiting.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    while True:
        used = read_sockstat()["mem_bytes"]
        if used <= baseline_bytes + SETTLE_MARGIN_BYTES or loop.time() >= deadline:
            return used
        await asyncio.sleep(0.25)


async def _publish(options: LabOptions) -> None:
    """Publish events through the broker at the lab's event rate, until cancelled."""
    assert options.amqp_url is not None
    await publish(options.amqp_url, "tick", rate=options.event_rate, count=0, size=0)
