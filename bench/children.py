"""The benchmarks' client children, on :class:`leaklab.children.ChildProcess`, and the psutil
readings the benchmarks take of every process.

:class:`SubscriberProcess` runs :mod:`bench.subscribers` and keeps its JSON lines;
:class:`SwarmProcess` runs the real ``python -m ping_client`` swarm. Both start with a clean
environment, stop by themselves after their duration, and :meth:`stop` ends them (SIGTERM,
then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import psutil

from leaklab.children import ChildProcess

STOP_GRACE_S = 15.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the process has used (its threads, not its children)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


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


def _pid(child: ChildProcess) -> int:
    assert child.pid is not None, "not started"
    return child.pid


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
        argv = [sys.executable, "-m", "bench.subscribers", "--url", url, "--clients",
                str(clients), "--duration", str(duration_s), *extra_args]  # fmt: skip
        self.clients = clients
        self._child = ChildProcess(argv, {}, log_path, capture_stdout=True)
        self._reader: threading.Thread | None = None
        self.samples: list[dict[str, Any]] = []

    @property
    def pid(self) -> int:
        """The client process."""
        return _pid(self._child)

    def start(self) -> SubscriberProcess:
        """Start the child and a thread that collects its JSON lines."""
        self._child.start()
        self._reader = threading.Thread(
            target=self._collect, args=(self._child.stdout,), daemon=True
        )
        self._reader.start()
        return self

    def _collect(self, stream: IO[bytes]) -> None:
        try:
            for raw in stream:
                try:
                    self.samples.append(json.loads(raw))
                except json.JSONDecodeError:
                    continue
        except ValueError:  # the pipe was closed by stop()
            return

    def is_running(self) -> bool:
        """Whether the child has not exited yet (it stops by itself after its duration)."""
        return self._child.is_running()

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
            if not self._child.is_running():
                raise RuntimeError(f"subscribers exited early: {self._child.log_tail()}")
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
        if self._child.is_running():
            # SIGTERM and read to the end before the pipe is closed: the last line (with the
            # latencies) comes on the way out.
            self._child.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(STOP_GRACE_S)
        if self._reader is not None:
            self._reader.join(timeout=5.0)
            self._reader = None
        self._child.stop(STOP_GRACE_S)

    def __enter__(self) -> SubscriberProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SwarmProcess:
    """``python -m ping_client ...``: the real swarm, its summary written as JSON.

    ``module="bench.raw_pinger"`` runs the benchmark's floor pinger the same way.
    """

    def __init__(
        self, argv: list[str], json_path: Path, log_path: Path, module: str = "ping_client"
    ) -> None:
        argv = [sys.executable, "-m", module, *argv, "--json-out", str(json_path)]
        self.json_path = json_path
        # COLUMNS: its live line and summary table stay readable in the log.
        self._child = ChildProcess(argv, {"COLUMNS": "200"}, log_path)

    @property
    def pid(self) -> int:
        """The swarm process."""
        return _pid(self._child)

    def start(self) -> SwarmProcess:
        """Start the child, its live output going to the log file."""
        self.json_path.unlink(missing_ok=True)
        self._child.start()
        return self

    def is_running(self) -> bool:
        """Whether the child has not exited yet."""
        return self._child.is_running()

    def wait_summary(self, timeout_s: float) -> dict[str, Any]:
        """Wait for the swarm to end by itself and return its JSON summary."""
        try:
            self._child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError("swarm did not finish in time") from None
        self._child.stop()
        if not self.json_path.exists():
            raise RuntimeError(f"swarm wrote no summary: {self._child.log_tail()}")
        summary: dict[str, Any] = json.loads(self.json_path.read_text())
        return summary

    def interrupt(self, timeout_s: float = 20.0) -> int | None:
        """Ctrl-C: the swarm closes its connections, writes its summary and exits."""
        return self._child.interrupt(timeout_s)

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM (the swarm closes, merges and writes its summary), then SIGKILL after
        ``grace_s``; the exit code."""
        return self._child.stop(grace_s)

    def __enter__(self) -> SwarmProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
