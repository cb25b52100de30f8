"""The servers under measurement, behind one small interface and chosen by name.

``service`` is the event service (uvicorn + FastAPI, started by :class:`ServiceProcess`) with
its default settings; ``asgi`` and ``direct`` are the service with ``FANOUT=asgi`` or
``FANOUT=direct``, and ``direct-0ms`` / ``direct-5ms`` the direct fan-out with another
batching window (:data:`SERVICE_VARIANTS`). ``baseline`` is the raw ``websockets``
broadcast server of :mod:`bench.baseline_server`.
Both are child processes on a free port, both count deliveries, and both answer
``GET /stats`` with ``events_received`` / ``events_delivered`` / ``connections``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import httpx

from event_service.settings import settings_from_env
from leaklab.children import ServiceProcess

_PORT_RE = re.compile(r"listening port=(\d+)")
STOP_GRACE_S = 10.0


class Target(Protocol):
    """A server the benchmarks start, load, read and stop."""

    name: str

    @property
    def pid(self) -> int:
        """The server process."""

    @property
    def ws_url(self) -> str:
        """Where subscribers connect."""

    def start(self) -> Target:
        """Start and wait until it serves."""

    def counters(self) -> dict[str, Any]:
        """Its ``/stats``."""

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL)."""


# The service's settings for each name a benchmark can ask for.
SERVICE_VARIANTS: dict[str, dict[str, str]] = {
    "service": {},
    "asgi": {"FANOUT": "asgi"},
    "direct": {"FANOUT": "direct"},
    "direct-0ms": {"FANOUT": "direct", "FANOUT_WINDOW": "0"},
    "direct-5ms": {"FANOUT": "direct", "FANOUT_WINDOW": "0.005"},
}


class ServiceTarget:
    """The event service with the fixed read handler and the given extra settings."""

    def __init__(self, env: dict[str, str], log_path: Path, name: str = "service") -> None:
        self.name = name
        settings = settings_from_env({"READ_HANDLER": "fixed", "PORT": "0", **env})
        self._process = ServiceProcess(settings, log_path)

    @property
    def pid(self) -> int:
        """The uvicorn process (the launcher runs ``python -m event_service`` directly)."""
        assert self._process.pid is not None, "not started"
        return self._process.pid

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/ws``."""
        return self._process.ws_url

    def start(self) -> ServiceTarget:
        """Start and wait for ``/healthz``."""
        self._process.start()
        return self

    def counters(self) -> dict[str, Any]:
        """The service's ``/stats`` (it also reads ``/proc/net/tcp``: keep it off the window)."""
        return self._process.stats(timeout_s=30.0)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        self._process.stop()


class BaselineTarget:
    """The raw websockets broadcast server, publishing ``rate_per_s`` events per second."""

    name = "baseline"

    def __init__(self, rate_per_s: float, log_path: Path, amqp_url: str | None = None) -> None:
        self._rate_per_s = rate_per_s
        self._amqp_url = amqp_url
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def pid(self) -> int:
        """The server process."""
        assert self._process is not None, "not started"
        return self._process.pid

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/``."""
        return f"ws://127.0.0.1:{self.port}/"

    def start(self, timeout_s: float = 30.0) -> BaselineTarget:
        """Start the child and wait for its ``listening port=N`` line."""
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "bench.baseline_server", "--rate", str(self._rate_per_s)]
        if self._amqp_url:
            argv += ["--amqp-url", self._amqp_url]
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"baseline server exited: {self._log_path.read_text()}")
            log_text = self._log_path.read_text(errors="replace")
            match = _PORT_RE.search(log_text)
            if match and (not self._amqp_url or "consuming" in log_text):
                self.port = int(match.group(1))
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("baseline server did not start in time")

    def counters(self) -> dict[str, Any]:
        """Its ``/stats``."""
        response = httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=30.0)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def make_target(
    name: str, *, rate_per_s: float, log_dir: Path, amqp_url: str | None = None
) -> Target:
    """Build the server called ``name`` (``baseline`` or one of :data:`SERVICE_VARIANTS`).

    Its events come from ``amqp_url`` (RabbitMQ) if given, else at ``rate_per_s`` from itself.
    """
    log_path = log_dir / f"{name}.log"
    if name in SERVICE_VARIANTS:
        env = {"AMQP_URL": amqp_url} if amqp_url else {"EVENT_RATE": f"{rate_per_s:g}"}
        return ServiceTarget({**SERVICE_VARIANTS[name], **env}, log_path, name)
    if name == "baseline":
        return BaselineTarget(rate_per_s, log_path, amqp_url)
    raise ValueError(f"unknown target {name!r}: expected baseline or {', '.join(SERVICE_VARIANTS)}")


TARGET_NAMES = ("baseline", "service")
# The fan-out comparison: the raw baseline and the service's two fan-out paths.
FANOUT_NAMES = ("baseline", "asgi", "direct")


def rotated(names: tuple[str, ...], rep: int) -> tuple[str, ...]:
    """``names`` in the order of repetition ``rep``: each name goes first in turn, so that no
    server always runs in the same minute of a noisy machine."""
    shift = rep % len(names)
    return names[shift:] + names[:shift]
