"""Child processes of the lab, the benchmarks and the tests: started clean, stopped in order.

:class:`ChildProcess` is the one way this project starts a program it measures: an explicit
environment (nothing inherited but ``PATH`` and the locale, so a ``LOG_LEVEL`` in the user's
shell changes nothing), its output in a log file, an optional fd limit, SIGTERM from Linux if
the parent dies, and :meth:`~ChildProcess.stop` that sends SIGTERM, then SIGKILL after a grace
period. :class:`ServiceProcess` runs the event service on a socket the launcher bound itself,
so the port is known before the child starts, and waits until ``/healthz`` answers.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from event_service.settings import Settings, render_env
from event_service.snapshot import ServiceSnapshot
from leaklab.errors import LaunchError

__all__ = ["ChildProcess", "LaunchError", "ServiceProcess", "bind_listener", "clean_env"]

# Loaded in the parent: the child, between fork and exec, only makes plain calls.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1
_INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "HOME")


def clean_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus the few variables a program needs to run, and nothing else of ours."""
    base = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    return {**base, "PYTHONUNBUFFERED": "1", **env}


def bind_listener(host: str, port: int = 0, backlog: int = socket.SOMAXCONN) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: a free port), to hand to a child.

    The launcher binds, so the port is known before the child starts and no other program
    can take it in between; the child gets the fd (``pass_fds``) and serves on it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(backlog)
    except BaseException:
        listener.close()
        raise
    return listener


def _prepare_child(fd_limit: int | None) -> None:
    """In the child: ask Linux to SIGTERM it if the launcher dies first; lower its fd limit."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if fd_limit is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))


class ChildProcess:
    """One program in a child process, its output in ``log_path``."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        fd_limit: int | None = None,
        pass_fds: Sequence[int] = (),
        capture_stdout: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.fd_limit = fd_limit
        self._pass_fds = tuple(pass_fds)
        # With capture_stdout the child's stdout is a pipe (:attr:`stdout`), its stderr the log.
        self._capture_stdout = capture_stdout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self._process.pid if self._process else None

    def start(self) -> ChildProcess:
        """Start the program (it is not waited for: see :class:`ServiceProcess`)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            self.argv,
            env=clean_env(self.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self._capture_stdout else self._log,
            stderr=self._log if self._capture_stdout else subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop the child in order.
            preexec_fn=functools.partial(_prepare_child, self.fd_limit),
            pass_fds=self._pass_fds,
        )
        return self

    @property
    def stdout(self) -> IO[bytes]:
        """The child's stdout, when started with ``capture_stdout``."""
        assert self._process is not None and self._process.stdout is not None, "no stdout pipe"
        return self._process.stdout

    def is_running(self) -> bool:
        """Whether the child was started and has not exited."""
        return self._process is not None and self._process.poll() is None

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
            if process.stdout is not None:
                process.stdout.close()
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

    def interrupt(self, timeout_s: float = 20.0) -> int | None:
        """Ctrl-C (SIGINT) and wait up to ``timeout_s`` for the child to exit by itself; then
        :meth:`stop`. The exit code."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout_s)
        return self.stop()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise :class:`LaunchError` with the end of the log if the child has exited."""
        assert self._process is not None, "not started"
        if self._process.poll() is not None:
            raise LaunchError(
                f"{self.argv[-1]} exited with code {self._process.returncode}:\n{self.log_tail()}"
            )

    def __enter__(self) -> ChildProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ServiceProcess(ChildProcess):
    """``python -m event_service`` with the given settings, on a socket bound here."""

    def __init__(self, settings: Settings, log_path: Path, *, fd_limit: int | None = None) -> None:
        super().__init__([sys.executable, "-m", "event_service"], {}, log_path, fd_limit=fd_limit)
        self.settings = settings
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``."""
        host = self.settings.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The subscriber endpoint, ``ws://HOST:PORT/ws``."""
        return "ws" + self.base_url.removeprefix("http") + "/ws"

    def start(self, timeout_s: float = 30.0) -> ServiceProcess:
        """Bind the port, start the child on it, and wait until it serves ``/healthz``."""
        with bind_listener(self.settings.host, self.settings.port) as listener:
            self.port = listener.getsockname()[1]
            settings = dataclasses.replace(
                self.settings, port=self.port, listen_fd=listener.fileno()
            )
            self.env = render_env(settings)
            self._pass_fds = (listener.fileno(),)
            super().start()
        # The child holds the listening socket now; ours is closed.
        deadline = time.monotonic() + timeout_s
        try:
            self._wait_for_health(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stats(self, timeout_s: float = 5.0) -> ServiceSnapshot:
        """The service's ``/stats``."""
        headers = {}
        if self.settings.admin_token:
            headers["Authorization"] = f"Bearer {self.settings.admin_token}"
        response = httpx.get(f"{self.base_url}/stats", timeout=timeout_s, headers=headers)
        response.raise_for_status()
        snapshot: ServiceSnapshot = response.json()
        return snapshot

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def _wait_for_health(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise LaunchError(f"service did not answer /healthz in time:\n{self.log_tail()}")
