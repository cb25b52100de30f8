"""Running a vanished-client cell: the swarm in a namespace of the lab's own, then no link.

The service listens on the host end of a veth pair; the swarm runs inside the namespace
(``ip netns exec NAME python -m ping_client``, a child process like any other). Once every
client is connected and has pinged for ``LINK_UP_S``, the lab takes the namespace's end of
the link down and watches how long the service keeps the sessions. Everything is undone in
``finally`` blocks, in this order: the swarm, the service, the namespace and its pair.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from leaklab.children import ChildProcess, ServiceProcess
from leaklab.errors import LabError
from leaklab.netns import VethNamespace
from leaklab.stories.ws_read_handler.cell import (
    read_server_figures,
    server_socket_figures,
    service_settings,
    without_password,
)
from leaklab.stories.ws_read_handler.matrix import Cell, can_run
from leaklab.stories.ws_read_handler.sample import ReadHandlerSample
from leaklab.story import CellRun, LabOptions, Sample
from leaklab.taskdump import fetch_task_groups
from sockscope.schedule import every

__all__ = ["LINK_UP_S", "MIN_AFTER_DOWN_S", "SkippedCell", "run_vanished_cell", "swarm_argv"]

LINK_UP_S = 3.0
# Long enough to see keepalive (2s/2s) reap the sessions, and the others stay.
MIN_AFTER_DOWN_S = 15.0
CONNECT_TIMEOUT_S = 20.0
SAMPLE_EVERY_S = 1.0
TCP_RETRIES2 = Path("/proc/sys/net/ipv4/tcp_retries2")


class SkippedCell(LabError):
    """This machine cannot run the cell (the message says why); it is reported unknown."""


def swarm_argv(url: str, options: LabOptions, duration_s: float) -> list[str]:
    """``python -m ping_client`` for the namespace: the lab's load, no keepalive of its own."""
    return [
        sys.executable, "-m", "ping_client", "--url", url, "--clients", str(options.clients),
        "--interval", repr(options.interval_s), "--size", str(options.size_bytes),
        "--duration", repr(duration_s), "--allow-remote",
    ]  # fmt: skip


async def run_vanished_cell(
    cell: Cell, options: LabOptions, logs: Path, on_sample: Callable[[Sample], None]
) -> CellRun:
    """Run one vanished-client cell to its end; its samples and what it started."""
    reason = can_run(cell)
    if reason is not None:
        raise SkippedCell(reason)
    netns = await asyncio.to_thread(VethNamespace.create)
    try:
        settings = dataclasses.replace(service_settings(cell, options), host=netns.host_address)
        service = ServiceProcess(settings, logs / f"{cell.name}.log")
        await asyncio.to_thread(service.start)
        try:
            # The swarm outlives the cell; the lab stops it.
            argv = swarm_argv(service.ws_url, options, options.duration_s + 60.0)
            swarm = ChildProcess(netns.exec_argv(argv), {}, logs / f"{cell.name}-swarm.log")
            swarm.start()
            try:
                samples = await _watch(cell, options, netns, service, swarm, on_sample)
            finally:
                await asyncio.to_thread(swarm.stop)
        finally:
            await asyncio.to_thread(service.stop)
    finally:
        netns.close()
    return {
        "samples": samples,
        "processes": {
            "service_env": without_password(service.env),
            "swarm_argv": argv[1:],
            "netns": {"name": netns.name, "host_ifname": netns.host_ifname,
                      "host": netns.host_address, "clients": netns.ns_address,
                      "prefix": netns.prefix},
        },
    }  # fmt: skip


async def _watch(
    cell: Cell,
    options: LabOptions,
    netns: VethNamespace,
    service: ServiceProcess,
    swarm: ChildProcess,
    on_sample: Callable[[Sample], None],
) -> list[ReadHandlerSample]:
    """Sample every second; take the link down once all are connected and have pinged."""
    samples: list[ReadHandlerSample] = []
    started = time.monotonic()
    connected_at: float | None = None
    down_at: float | None = None
    async with httpx.AsyncClient(base_url=service.base_url, timeout=5.0, trust_env=False) as http:
        async for _ in every(SAMPLE_EVERY_S):
            now = time.monotonic() - started
            sample = await _take_sample(service, http, now)
            server = sample.get("server")
            sessions = server["connections"] if server is not None else 0
            if connected_at is None and sessions >= options.clients:
                connected_at = now
            if down_at is None and connected_at is not None and now >= connected_at + LINK_UP_S:
                await asyncio.to_thread(netns.take_link_down)
                down_at = now
                sample["tcp_retries2"] = await asyncio.to_thread(_tcp_retries2)
            sample["link_down"] = down_at is not None
            sample["link_down_at_s"] = None if down_at is None else round(down_at, 3)
            samples.append(sample)
            on_sample(sample)
            if connected_at is None and now > CONNECT_TIMEOUT_S:
                swarm.check_alive()
                raise LabError(f"the swarm in {netns.name} did not connect: {sessions} sessions")
            if down_at is not None and now >= max(options.duration_s, down_at + MIN_AFTER_DOWN_S):
                return samples
    raise AssertionError("unreachable")


def _tcp_retries2() -> int | None:
    try:
        return int(TCP_RETRIES2.read_text())
    except (OSError, ValueError):
        return None


async def _take_sample(
    service: ServiceProcess, http: httpx.AsyncClient, t_s: float
) -> ReadHandlerSample:
    """Server figures from /stats and the sockets from netlink (the clients are out of reach)."""
    sample: ReadHandlerSample = {"t_s": round(t_s, 3), "wall_time": time.time()}
    if (server := await read_server_figures(http)) is not None:
        sample["server"] = server
    if (task_groups := await fetch_task_groups(http)) is not None:
        sample["task_groups"] = task_groups  # what piles up, quoted at the end of the cell
    if (sockets := await server_socket_figures(service)) is not None:
        sample = {**sample, **sockets}
    return sample
