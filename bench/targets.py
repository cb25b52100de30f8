"""The servers under measurement, behind one small interface and chosen by name.

``service`` is the event service (uvicorn + FastAPI, started by :class:`ServiceProcess`) with
its default settings; ``asgi`` and ``direct`` are the service with ``FANOUT=asgi`` or
``FANOUT=direct``, and ``direct-0ms`` / ``direct-5ms`` the direct fan-out with another
batching window (:data:`SERVICE_VARIANTS`). ``baseline`` is the raw ``websockets``
broadcast server of :mod:`bench.baseline_server`.
Both are :class:`leaklab.children.ChildProcess` children on a socket bound here (the port
known before they start), both count deliveries, and both answer ``GET /stats`` with
``events_received`` / ``events_delivered`` / ``connections`` / ``broker``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import httpx

from event_service.settings import settings_from_env
from leaklab.children import ChildProcess, LaunchError, ServiceProcess, bind_listener

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
        """The service's ``/stats`` (it also reads its sockets: keep it off the window)."""
        return dict(self._process.stats(timeout_s=30.0))

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
        self._child: ChildProcess | None = None
        self.port: int | None = None

    @property
    def pid(self) -> int:
        """The server process."""
        assert self._child is not None and self._child.pid is not None, "not started"
        return self._child.pid

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/``."""
        return f"ws://127.0.0.1:{self.port}/"

    def start(self, timeout_s: float = 30.0) -> BaselineTarget:
        """Bind the port, start the child on it, and wait until its ``/stats`` says ready."""
        with bind_listener("127.0.0.1") as listener:
            self.port = listener.getsockname()[1]
            argv = [sys.executable, "-m", "bench.baseline_server", "--rate",
                    str(self._rate_per_s), "--listen-fd", str(listener.fileno())]  # fmt: skip
            if self._amqp_url:
                argv += ["--amqp-url", self._amqp_url]
            self._child = ChildProcess(argv, {}, self._log_path, pass_fds=(listener.fileno(),))
            self._child.start()
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                self._child.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if self.counters(timeout_s=2.0).get("broker") in ("up", "embedded"):
                        return self
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        self.stop()
        raise LaunchError(f"baseline server not ready in time:\n{self._child.log_tail()}")

    def counters(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Its ``/stats``."""
        response = httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=timeout_s)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        if self._child is not None:
            self._child.stop(STOP_GRACE_S)


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
