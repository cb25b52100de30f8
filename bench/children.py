"""Client child processes and the psutil readings the benchmarks take of every process.

:class:`SubscriberProcess` runs :mod:`bench.subscribers` and keeps its latest JSON line;
:class:`SwarmProcess` runs the real ``python -m ping_client`` swarm. Both stop by
themselves after their duration, and :meth:`stop` ends them (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import psutil

STOP_GRACE_S = 15.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the process has used (its threads, not its children)."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds, apart."""
    times = psutil.Process(pid).cpu_times()
    return times.user, times.system


def host_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (every core, every process)."""
    times = psutil.cpu_times()
    busy = ("user", "nice", "system", "irq", "softirq")
    return float(sum(getattr(times, name, 0.0) for name in busy))


def rss_bytes(pid: int) -> int:
    """Resident set size of the process."""
    return int(psutil.Process(pid).memory_info().rss)


def _stop(process: subprocess.Popen[bytes] | None, grace_s: float = STOP_GRACE_S) -> int | None:
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


class SubscriberProcess:
    """``python -m bench.subscribers``: lean subscribers that count events."""

    def __init__(
        self,
        url: str,
        clients: int,
        duration_s: float,
        log_path: Path,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self._argv = [
            sys.executable,
            "-m",
            "bench.subscribers",
            "--url",
            url,
            "--clients",
            str(clients),
            "--duration",
            str(duration_s),
            *extra_args,
        ]
        self.clients = clients
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.samples: list[dict[str, Any]] = []

    @property
    def pid(self) -> int:
        """The client process."""
        assert self._process is not None, "not started"
        return self._process.pid

    def start(self) -> SubscriberProcess:
        """Start the child and a thread that collects its JSON lines."""
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        assert self._process.stdout is not None
        self._reader = threading.Thread(
            target=self._collect, args=(self._process.stdout,), daemon=True
        )
        self._reader.start()
        return self

    def _collect(self, stream: IO[bytes]) -> None:
        for raw in stream:
            try:
                self.samples.append(json.loads(raw))
            except json.JSONDecodeError:
                continue

    def latest(self) -> dict[str, Any]:
        """The last line it printed (zeros before the first)."""
        return (
            self.samples[-1]
            if self.samples
            else {"t_s": 0.0, "connected": 0, "failed": 0, "received": 0}
        )

    def wait_connected(self, timeout_s: float, at_least: float = 0.99) -> dict[str, Any]:
        """Wait until every client opened or failed, and at least ``at_least`` of them opened."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"subscribers exited early: {self._log_path.read_text()[-2000:]}"
                )
            last = self.latest()
            if last["connected"] + last["failed"] >= self.clients:
                if last["connected"] < at_least * self.clients:
                    raise RuntimeError(f"only {last['connected']} of {self.clients} connected")
                return last
            time.sleep(0.1)
        raise RuntimeError(f"subscribers not connected in {timeout_s:.0f} s: {self.latest()}")

    def received_at(self, t_s: float) -> tuple[float, int]:
        """The sample nearest to monotonic time ``t_s`` (the child uses the same clock)."""
        samples = [s for s in self.samples if "received" in s]
        best = min(samples, key=lambda s: abs(s["t_s"] - t_s))
        return best["t_s"], best["received"]

    def stop(self) -> None:
        """Close the connections (SIGTERM), then SIGKILL after a grace period."""
        process, self._process = self._process, None
        _stop(process)
        if self._reader is not None:
            self._reader.join(timeout=5.0)

    def __enter__(self) -> SubscriberProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SwarmProcess:
    """``python -m ping_client ...``: the real swarm, its summary written as JSON."""

    def __init__(self, argv: list[str], json_path: Path, log_path: Path) -> None:
        self._argv = [sys.executable, "-m", "ping_client", *argv, "--json-out", str(json_path)]
        self.json_path = json_path
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The swarm process."""
        assert self._process is not None, "not started"
        return self._process.pid

    def start(self) -> SwarmProcess:
        """Start the child, its live output going to the log file."""
        self.json_path.unlink(missing_ok=True)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
                start_new_session=True,
            )
        return self

    def is_running(self) -> bool:
        """Whether the child has not exited yet."""
        return self._process is not None and self._process.poll() is None

    def wait_summary(self, timeout_s: float) -> dict[str, Any]:
        """Wait for the swarm to end by itself and return its JSON summary."""
        assert self._process is not None, "not started"
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError("swarm did not finish in time") from None
        self._process = None
        if not self.json_path.exists():
            raise RuntimeError(f"swarm wrote no summary: {self._log_path.read_text()[-2000:]}")
        summary: dict[str, Any] = json.loads(self.json_path.read_text())
        return summary

    def interrupt(self, timeout_s: float = 20.0) -> int | None:
        """Ctrl-C: the swarm closes its connections and exits (it writes no summary then)."""
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return _stop(process)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        process, self._process = self._process, None
        _stop(process)

    def __enter__(self) -> SwarmProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
