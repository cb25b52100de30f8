"""Running one cell of the read-handler story: a fresh event service, a swarm, a sample a second.

Each cell owns its service process and its swarm; both are stopped in ``finally`` blocks, so
an interrupted run (Ctrl-C) leaves no child process or socket behind. The launcher also asks
the kernel to SIGTERM the service if the lab itself dies.

The swarm runs in the lab's own process (:class:`~ping_client.swarm.Swarm`), large cells
too: 10,000 clients are half of the fd hard limit here, and worker processes
(``ping_client.fleet``) would add interpreters without taking work off the two cores, which
the service needs as much (it reads what the swarm sends). A large cell first raises the fd
soft limit to the hard one (the service inherits it) and checks that the machine can hold
it (:mod:`.capacity`); it stops the swarm ``steady_s`` after the ramp is over, however long the
ramp took (up to the swarm's own bound; the swarm holds at most 200 handshakes in flight, so a
service that handshakes more slowly than asked slows the ramp down), and asks for the
service's task dump once, at the end: at 20,000 tasks the dump stalls the service's loop for
seconds, and handshakes waiting behind it time out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import socket
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from event_service.publish import publish
from event_service.settings import Settings
from event_service.snapshot import ServiceSnapshot
from leaklab.children import ServiceProcess
from leaklab.errors import LabError
from leaklab.stories.ws_read_handler.capacity import read_room, refusal
from leaklab.stories.ws_read_handler.matrix import NEVER_PUBLISHED, Cell, Large
from leaklab.stories.ws_read_handler.sample import ReadHandlerSample, ServerFigures, SocketFigures
from leaklab.stories.ws_read_handler.steady import is_ramp_over
from leaklab.story import CellRun, LabOptions, Sample
from leaklab.taskdump import fetch_task_groups
from ping_client.limits import raise_fd_limit
from ping_client.stats import timed_read
from ping_client.swarm import Swarm, SwarmConfig
from sockscope.diag import socket_totals
from sockscope.netlink import read_sockets
from sockscope.schedule import every

SAMPLE_EVERY_S = 1.0
# The large cells' one task dump: 20,000 tasks take the service a second or more to render.
LARGE_TASK_DUMP_TIMEOUT_S = 10.0


def server_figures(stats: ServiceSnapshot) -> ServerFigures:
    """The part of one ``/stats`` snapshot a sample keeps."""
    return ServerFigures(
        recv_q_bytes=stats["recv_q_bytes"],
        recv_q_max_bytes=stats["recv_q_max_bytes"],
        recv_q_p99_bytes=stats["recv_q_p99_bytes"],
        kernel_tcp_mem_bytes=stats["kernel_tcp_mem_bytes"],
        rss_bytes=stats["rss_bytes"],
        open_fds=stats["open_fds"],
        asyncio_tasks=stats["asyncio_tasks"],
        connections=stats["connections"],
        events_received=stats["events_received"],
        events_delivered=stats["events_delivered"],
        events_dropped=stats["events_dropped"],
        client_messages=stats["client_messages"],
        client_bytes=stats["client_bytes"],
    )


async def read_server_figures(http: httpx.AsyncClient) -> ServerFigures | None:
    """The service's figures from its ``/stats`` now; None when it does not answer with them."""
    try:
        stats: ServiceSnapshot = (await http.get("/stats")).raise_for_status().json()
        return server_figures(stats)
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def service_settings(cell: Cell, options: LabOptions) -> Settings:
    """The event service's settings for one cell."""
    return Settings(
        read_handler=cell.read_handler,
        ws_impl=cell.ws_impl,
        ws_ping_interval_s=cell.keepalive.interval_s,
        ws_ping_timeout_s=cell.keepalive.timeout_s,
        event_rate=options.event_rate,
        amqp_url=options.amqp_url,
        port=0,
    )


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
    """The swarm of one cell: the lab's load, the cell's ping kind, the swarm's safe defaults.

    A churn cell opens its own batches (not ``options.clients``), each subscribed to a type
    that is never published, so the service never writes to them. A large cell has its own
    size, rate and length (not the lab's load nor ``options.duration_s``) and subscribes to
    that type too: the cell is about what the service reads, and 5 events a second to 10,000
    clients would be 50,000 deliveries a second, more than two cores receive.
    """
    if cell.large is not None:
        large = cell.large
        return SwarmConfig(
            url=url,
            clients=large.clients,
            ramp_per_s=large.ramp_per_s,
            interval_s=large.interval_s,
            size_bytes=large.size_bytes,
            ping_kind=cell.ping_kind,
            duration_s=large.max_duration_s,  # the lab stops it steady_s after the ramp
            subscribe=(NEVER_PUBLISHED,),
        )
    if cell.churn is None:
        return SwarmConfig(
            url=url,
            clients=options.clients,
            ramp_per_s=max(options.clients, 1) * 4.0,
            interval_s=options.interval_s,
            size_bytes=options.size_bytes,
            ping_kind=cell.ping_kind,
            duration_s=options.duration_s,
        )
    churn = cell.churn
    return SwarmConfig(
        url=url,
        clients=churn.batch,
        ramp_per_s=churn.batch * 4.0,
        interval_s=options.interval_s,
        size_bytes=options.size_bytes,
        ping_kind=cell.ping_kind,
        duration_s=options.duration_s,
        churn_every_s=churn.every_s,
        churn_batch=churn.batch,
        client_lifetime_s=churn.lifetime_s,
        subscribe=(NEVER_PUBLISHED,),
    )


def swarm_settings(cell: Cell, options: LabOptions) -> dict[str, Any]:
    """The swarm's settings of one cell as JSON-ready data (the URL is the cell's free port)."""
    settings = dataclasses.asdict(swarm_config(cell, options, "ws://127.0.0.1:0/ws"))
    del settings["url"]
    return settings


async def run_cell(
    cell: Cell, options: LabOptions, logs: Path, on_sample: Callable[[Sample], None]
) -> CellRun:
    """Run one cell to its end; return its samples (one per second) and what it started."""
    settings = service_settings(cell, options)
    if cell.large is not None:
        check_room(cell, settings)
    service = ServiceProcess(settings, logs / f"{cell.name}.log")
    await asyncio.to_thread(service.start)
    try:
        swarm = Swarm(swarm_config(cell, options, service.ws_url))
        samples: list[ReadHandlerSample] = []
        async with httpx.AsyncClient(base_url=service.base_url, timeout=5.0) as http:
            async with asyncio.TaskGroup() as tasks:
                run = tasks.create_task(swarm.run(), name="lab-swarm")
                sampler = tasks.create_task(
                    _sample_every_second(swarm, service, http, samples, on_sample, cell.large),
                    name="lab-sampler",
                )
                if options.amqp_url:
                    publisher = tasks.create_task(_publish(options), name="lab-publisher")
                await run
                sampler.cancel()
                if options.amqp_url:
                    publisher.cancel()
        return {
            "samples": samples,
            "processes": {
                "service_env": without_password(service.env),
                "swarm": swarm_settings(cell, options),
            },
        }
    finally:
        await asyncio.to_thread(service.stop)


def check_room(cell: Cell, settings: Settings) -> None:
    """Raise the fd soft limit to the hard one; raise LabError if the cell does not fit."""
    assert cell.large is not None
    fd_limit = raise_fd_limit()
    why = refusal(cell.large, read_room(settings, fd_limit, SwarmConfig.tcp_mem_guard))
    if why is not None:
        raise LabError(f"the large cell does not fit on this machine now: {why}")


async def _sample_every_second(
    swarm: Swarm,
    service: ServiceProcess,
    http: httpx.AsyncClient,
    samples: list[ReadHandlerSample],
    on_sample: Callable[[Sample], None],
    large: Large | None,
) -> None:
    """A sample a second; a large cell's swarm is stopped ``steady_s`` after its ramp, and
    its one task dump taken then (rendering 20,000 tasks' stacks stalls the service's loop
    for seconds: during the ramp, handshakes time out)."""
    ramp_end_s: float | None = None
    stopped = False
    async for _ in every(SAMPLE_EVERY_S):
        sample = await take_sample(swarm, service, http, task_dump=large is None)
        if large is not None and not stopped:
            if ramp_end_s is None and is_ramp_over(sample):
                ramp_end_s = sample["t_s"]
            if ramp_end_s is not None and sample["t_s"] >= ramp_end_s + large.steady_s:
                task_groups = await fetch_task_groups(http, timeout_s=LARGE_TASK_DUMP_TIMEOUT_S)
                if task_groups is not None:
                    sample["task_groups"] = task_groups
                swarm.stop()
                stopped = True
        samples.append(sample)
        on_sample(sample)


async def take_sample(
    swarm: Swarm, service: ServiceProcess, http: httpx.AsyncClient, *, task_dump: bool = True
) -> ReadHandlerSample:
    """Client figures from the swarm, server figures from /stats, skmem from sock_diag.

    ``kernel_read_ms`` and ``kernel_read_cpu_ms`` are the cost of this sample's two netlink
    reads: the swarm's (its clients' Send-Q, the server's Recv-Q) and the lab's (the
    service's sockets, skmem and states).
    """
    client = await swarm.read_sample()
    first_close = swarm.stats.first_close
    sample: ReadHandlerSample = {
        "t_s": client["t_s"],
        "wall_time": time.time(),
        "connected": client["connected"],
        "connecting": client["connecting"],
        "connect_failures": client["connect_failures"],
        "pings_sent": client["pings_sent"],
        "pings_blocked": client["pings_blocked"],
        "bytes_sent": client["bytes_sent"],
        "blocked_in_send_s": client["blocked_in_send_s"],
        "events_received": client["events_received"],
        "latency_p50_ms": client["latency"]["p50_ms"],
        "latency_p99_ms": client["latency"]["p99_ms"],
        "closes": client["closes"],
        "first_close": (
            {"code": first_close[0], "after_s": first_close[1]} if first_close else None
        ),
        "first_close_s": {str(code): t for code, t in swarm.stats.first_close_s.items()},
        # The subscribers each published event should reach (none: a never-published type).
        "clients": 0 if swarm.config.subscribe else swarm.config.clients,
        "client_send_q_bytes": client.get("client_send_q_bytes"),
        "sending": client["sending"],
        # Clients connected and not leaving, and the churn's counts.
        "active": client["active"],
        "opened": client["opened"],
        "left": client["left"],
        "left_unanswered": swarm.stats.left_unanswered,
        "swarm_closing": swarm.is_closing,
    }
    if swarm.config.churn_every_s is None:  # clients that connect once: how many of them
        sample["target"] = swarm.config.clients
    if (server := await read_server_figures(http)) is not None:
        sample["server"] = server
    if task_dump and (task_groups := await fetch_task_groups(http)) is not None:
        sample["task_groups"] = task_groups  # what piles up, quoted at the end of the cell
    if (sockets := await server_socket_figures(service)) is not None:
        sample = {**sample, **sockets}
        sample["kernel_read_ms"] = round(sockets["kernel_read_ms"] + client["kernel_read_ms"], 3)
        sample["kernel_read_cpu_ms"] = round(
            sockets["kernel_read_cpu_ms"] + client["kernel_read_cpu_ms"], 3
        )
    return sample


async def server_socket_figures(service: ServiceProcess) -> SocketFigures | None:
    """The service's connected sockets from the kernel: skmem, states, summed queues, and
    what reading them cost (wall and the reading thread's CPU ms).

    By their exact local address and port, never the port alone, of the one address family
    its listener has (ServiceProcess binds it so). None if the kernel cannot be asked.
    """
    assert service.port is not None
    server_end = (service.settings.host, service.port)
    family = socket.AF_INET6 if ":" in service.settings.host else socket.AF_INET
    read = functools.partial(read_sockets, local=server_end, families=(family,))
    try:
        table, wall_s, cpu_s = await asyncio.to_thread(timed_read, read)
    except OSError:
        return None
    server = socket_totals(table)
    return {
        "skmem_r_bytes": server.skmem_r_bytes,
        "skmem_t_bytes": server.skmem_t_bytes,
        "skmem_sockets": server.sockets,
        "sockets_by_state": server.states,
        "sockets_recv_q_bytes": server.recv_q_bytes,
        "sockets_send_q_bytes": server.send_q_bytes,
        "kernel_read_ms": round(wall_s * 1000, 3),
        "kernel_read_cpu_ms": round(cpu_s * 1000, 3),
    }


async def _publish(options: LabOptions) -> None:
    """Publish events through the broker at the lab's event rate, until cancelled."""
    assert options.amqp_url is not None
    await publish(options.amqp_url, "tick", rate=options.event_rate, count=0, size=0)
