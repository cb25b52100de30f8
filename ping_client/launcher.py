"""Starting and stopping an event service in a child process, for the lab, the demo and tests.

The service listens on a free port chosen by the kernel (``PORT=0``); the launcher reads the
real port from uvicorn's start-up line in the log, then waits until ``/healthz`` answers.
Stopping sends SIGTERM, then SIGKILL after a grace period: no child outlives its launcher.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

_RUNNING_RE = re.compile(r"Uvicorn running on http://(?:\[[^\]]+\]|[^:/\s]+):(\d+)")


# Loaded in the parent: the child, between fork and exec, only makes one plain call.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _prepare_child(fd_limit: int | None) -> None:
    """In the child: ask Linux to SIGTERM it if the launcher dies first; lower its fd limit."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if fd_limit is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))


class LaunchError(RuntimeError):
    """The service did not start; the message carries the end of its log."""


class ServiceProcess:
    """One ``python -m event_service`` child with the given settings."""

    def __init__(self, env: dict[str, str], log_path: Path, *, fd_limit: int | None = None) -> None:
        self.env = {"HOST": "127.0.0.1", "PORT": "0", **env}
        self.log_path = log_path
        self.fd_limit = fd_limit
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._process.pid if self._process else None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.env['HOST']}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The subscriber endpoint, ``ws://127.0.0.1:PORT/ws``."""
        return f"ws://{self.env['HOST']}:{self.port}/ws"

    def start(self, timeout_s: float = 30.0) -> ServiceProcess:
        """Start the child and wait until it serves ``/healthz``."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "event_service"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop the child in order.
            preexec_fn=functools.partial(_prepare_child, self.fd_limit),
        )
        deadline = time.monotonic() + timeout_s
        try:
            self.port = self._wait_for_port(deadline)
            self._wait_for_health(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stats(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """The service's ``/stats``."""
        response = httpx.get(f"{self.base_url}/stats", timeout=timeout_s)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL; return the exit code."""
        process, self._process = self._process, None
        code = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the child."""
        assert self._process is not None, "not started"
        self._process.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        """Wait for the child to exit; its exit code (raises TimeoutExpired)."""
        assert self._process is not None, "not started"
        return self._process.wait(timeout_s)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_for_port(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            self._check_alive()
            match = _RUNNING_RE.search(self.log_path.read_text(errors="replace"))
            if match:
                return int(match.group(1))
            time.sleep(0.05)
        raise LaunchError(f"service did not start in time:\n{self.log_tail()}")

    def _wait_for_health(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise LaunchError(f"service did not answer /healthz in time:\n{self.log_tail()}")

    def _check_alive(self) -> None:
        assert self._process is not None
        if self._process.poll() is not None:
            raise LaunchError(
                f"service exited with code {self._process.returncode}:\n{self.log_tail()}"
            )
