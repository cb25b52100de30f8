"""Running one cell of the http-keepalive story: a callee, a caller, the lab's requests.

The lab binds both listening sockets, starts the callee and the caller on them, sends
``/forward`` requests one after the other at the cell's pace, stays idle for the cell's hold
time, and samples both processes once a second: their fds and their sockets on the link by
TCP state (psutil, by pid, by exact address pairs) and the asyncio tasks each reports on
``/counts``. Both children are stopped in ``finally``: after a cell, an error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from leaklab.stories.http_keepalive.matrix import Cell, Drive
from leaklab.stories.http_keepalive.processes import AppProcess, bind_loopback
from leaklab.stories.http_keepalive.settings import CalleeSettings, CallerSettings
from leaklab.stories.http_keepalive.sockets import Address, callee_side, caller_side, read_sockets
from leaklab.story import CellRun, LabOptions, MutableSample, Sample
from sockscope.schedule import every

__all__ = ["DriveProgress", "run_cell"]

SAMPLE_EVERY_S = 1.0
REQUEST_TIMEOUT_S = 10.0


@dataclasses.dataclass
class DriveProgress:
    """What the lab's requests have done so far (written by the driver, read by the sampler)."""

    done: int = 0
    errors: int = 0
    first_error: str | None = None
    last_request_s: float | None = None  # when the last answer came, since the cell started
    latencies_ms: list[float] = dataclasses.field(default_factory=list)  # since the last sample


@dataclasses.dataclass
class Link:
    """The two sides of the cell, and what the sampler needs to tell their sockets apart."""

    caller: AppProcess
    callee: AppProcess
    started: float  # loop time at the cell's start
    probe_address: Address | None = None  # the lab's probe connection to the callee


async def run_cell(
    cell: Cell, options: LabOptions, logs: Path, on_sample: Callable[[Sample], None]
) -> CellRun:
    """Run one cell to its end; return its samples (one per second) and what it started.

    ``options`` (the WebSocket stories' load) plays no part: a cell is sized by its drive.
    """
    loop = asyncio.get_running_loop()
    callee_listener, caller_listener = bind_loopback(), bind_loopback()
    callee: AppProcess | None = None
    caller: AppProcess | None = None
    try:
        callee = AppProcess(
            "callee",
            CalleeSettings(
                listen_fd=callee_listener.fileno(),
                keep_alive_s=cell.keep_alive.seconds,
                connection=cell.connection,
            ),
            callee_listener,
            logs / f"http-keepalive_{cell.name}.callee.log",
        )
        caller = AppProcess(
            "caller",
            CallerSettings(
                listen_fd=caller_listener.fileno(), callee_url=callee.base_url, client=cell.client
            ),
            caller_listener,
            logs / f"http-keepalive_{cell.name}.caller.log",
        )
        try:
            callee.start()
            caller.start()
        finally:  # the children hold the listening sockets now
            callee_listener.close()
            caller_listener.close()
        await asyncio.gather(
            asyncio.to_thread(callee.wait_ready), asyncio.to_thread(caller.wait_ready)
        )
        link = Link(caller, callee, loop.time())
        samples = await _drive_and_sample(cell.drive, link, on_sample)
        return {
            "samples": samples,
            "processes": {
                "callee_env": callee.env,
                "caller_env": caller.env,
                "drive": dataclasses.asdict(cell.drive),
                "pids": {"caller": caller.pid, "callee": callee.pid},
            },
        }
    finally:
        callee_listener.close()
        caller_listener.close()
        await asyncio.gather(
            *(asyncio.to_thread(child.stop) for child in (caller, callee) if child is not None)
        )


async def _drive_and_sample(
    drive: Drive, link: Link, on_sample: Callable[[Sample], None]
) -> list[MutableSample]:
    progress = DriveProgress()
    samples: list[MutableSample] = []
    lab_clients = {"timeout": REQUEST_TIMEOUT_S, "trust_env": False}
    async with (
        httpx.AsyncClient(base_url=link.caller.base_url, **lab_clients) as driver,  # type: ignore[arg-type]
        httpx.AsyncClient(**lab_clients) as probe,  # type: ignore[arg-type]
    ):
        first = await take_sample(probe, link, progress)  # before the first request
        samples.append(first)
        on_sample(first)
        async with asyncio.TaskGroup() as tasks:
            sampler = tasks.create_task(
                _sample_every_second(probe, link, progress, samples, on_sample),
                name="lab-sampler",
            )
            await _send_requests(driver, drive, link, progress)
            await asyncio.sleep(drive.hold_s)
            sampler.cancel()
        final = await take_sample(probe, link, progress)  # the end of the hold, exactly
        samples.append(final)
        on_sample(final)
    return samples


async def _send_requests(
    driver: httpx.AsyncClient, drive: Drive, link: Link, progress: DriveProgress
) -> None:
    """``drive.requests`` GET /forward, one after the other, at most ``rate_per_s``."""
    loop = asyncio.get_running_loop()
    async for _ in every(1.0 / drive.rate_per_s, first_at_once=True):
        sent = loop.time()
        try:
            (await driver.get("/forward")).raise_for_status().json()
        except (httpx.HTTPError, ValueError) as exc:
            progress.errors += 1
            progress.first_error = progress.first_error or repr(exc)
        now = loop.time()
        progress.done += 1
        progress.last_request_s = now - link.started
        progress.latencies_ms.append((now - sent) * 1000)
        if progress.done >= drive.requests:
            return


async def _sample_every_second(
    probe: httpx.AsyncClient,
    link: Link,
    progress: DriveProgress,
    samples: list[MutableSample],
    on_sample: Callable[[Sample], None],
) -> None:
    async for _ in every(SAMPLE_EVERY_S):
        sample = await take_sample(probe, link, progress)
        samples.append(sample)
        on_sample(sample)


async def take_sample(
    probe: httpx.AsyncClient, link: Link, progress: DriveProgress
) -> MutableSample:
    """Each side's tasks (its /counts), fds and link sockets by state (psutil), the drive."""
    loop = asyncio.get_running_loop()
    t_s = loop.time() - link.started
    latencies, progress.latencies_ms = progress.latencies_ms, []
    sample: MutableSample = {
        "t_s": round(t_s, 3),
        "wall_time": time.time(),
        "requests_done": progress.done,
        "errors": progress.errors,
        "first_error": progress.first_error,
        "last_request_s": progress.last_request_s,
        "forward_p50_ms": round(statistics.median(latencies), 2) if latencies else None,
    }
    for side in ("caller", "callee"):
        sample.update(await _reported(probe, getattr(link, side), side, link))
    callee_address = link.callee.address
    for side, read in (("caller", link.caller), ("callee", link.callee)):
        assert read.pid is not None
        reading = await asyncio.to_thread(read_sockets, read.pid)
        if reading is None:
            continue
        fds, rows = reading
        states = (
            caller_side(rows, callee_address)
            if side == "caller"
            else callee_side(
                rows, callee_address, exclude=[link.probe_address] if link.probe_address else []
            )
        )
        sample |= _side_figures(side, fds, states)
    return sample


async def _reported(
    probe: httpx.AsyncClient, app: AppProcess, side: str, link: Link
) -> dict[str, Any]:
    """``{side}_tasks`` and ``{side}_connections`` as the app reports them (empty on failure)."""
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        response = (await probe.get(f"{app.base_url}/counts")).raise_for_status()
        stream = response.extensions.get("network_stream")
        if stream is not None and app is link.callee:
            # The probe's own connection to the callee is not the caller's: leave it out.
            link.probe_address = tuple(stream.get_extra_info("client_addr"))
        counts = response.json()
        return {f"{side}_tasks": counts["tasks"], f"{side}_connections": counts["connections"]}
    return {}


def _side_figures(side: str, fds: int, states: dict[str, int]) -> dict[str, Any]:
    return {
        f"{side}_fds": fds,
        f"{side}_link": states,
        f"{side}_link_sockets": sum(states.values()),
        f"{side}_established": states.get("ESTABLISHED", 0),
        f"{side}_close_wait": states.get("CLOSE_WAIT", 0),
    }
