"""The run skeleton every benchmark shares, written once.

A benchmark picks its plan (:func:`plan_for`), runs repetitions that rotate the servers so
that none always gets the same minute of a noisy machine (:func:`repeat`), puts one server
under load (:func:`under_load`: started, subscribers connected, settled, both stopped at the
end), measures CPU over a window (:class:`CpuWindow`) and RSS across it (:func:`rss_during`),
takes medians (:func:`medians_by_name`) and writes its result (:func:`bench.report.write_result`).
What is measured and printed stays in each benchmark's module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bench.children import SubscriberProcess, cpu_split, host_busy_s, rss_bytes
from bench.figures import median
from bench.report import say
from bench.targets import Target, make_target, rotated

__all__ = [
    "CpuWindow",
    "medians_by_key",
    "medians_by_name",
    "plan_for",
    "repeat",
    "rss_during",
    "under_load",
]

R = TypeVar("R")


class _Plan(Protocol):
    """A benchmark's plan: a frozen dataclass with at least its number of repetitions."""

    @property
    def reps(self) -> int: ...


P = TypeVar("P", bound=_Plan)


def plan_for(quick: bool, reps: int | None, quick_plan: P, full_plan: P) -> P:
    """The quick or the full plan, with ``reps`` repetitions if given."""
    plan = quick_plan if quick else full_plan
    return dataclasses.replace(plan, reps=reps) if reps else plan  # type: ignore[type-var]


def repeat(
    label: str, names: Sequence[str], reps: int, one: Callable[[str], R], detail: str = ""
) -> dict[str, list[R]]:
    """``one(name)`` for every name in every repetition, each name going first in turn;
    the results by name, in the order of the repetitions."""
    results: dict[str, list[R]] = {name: [] for name in names}
    for rep in range(reps):
        for name in rotated(tuple(names), rep):
            say(f"{label} rep {rep + 1}/{reps}: {name}{', ' + detail if detail else ''}")
            results[name].append(one(name))
    return results


def medians_by_key(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, float]:
    """The median of each key over the rows."""
    return {key: median([row[key] for row in rows]) for key in keys}


def medians_by_name(
    results: Mapping[str, Sequence[Mapping[str, Any]]], keys: Sequence[str]
) -> dict[str, dict[str, float]]:
    """For each name (server, mode), the median of each key over its repetitions."""
    return {name: medians_by_key(rows, keys) for name, rows in results.items()}


@contextlib.contextmanager
def under_load(
    name: str,
    *,
    rate_per_s: float,
    clients: int,
    duration_s: float,
    logs: Path,
    connect_timeout_s: float = 60.0,
    settle_s: float = 0.0,
    amqp_url: str | None = None,
    client_args: tuple[str, ...] = (),
) -> Iterator[tuple[Target, SubscriberProcess]]:
    """Server ``name`` with ``clients`` lean subscribers connected and settled; both stopped
    on the way out. The subscribers stop by themselves after ``duration_s``."""
    target = make_target(name, rate_per_s=rate_per_s, log_dir=logs, amqp_url=amqp_url).start()
    try:
        subscribers = SubscriberProcess(
            target.ws_url, clients, duration_s, logs / "subscribers.log", client_args
        )
        with subscribers:
            subscribers.wait_connected(timeout_s=connect_timeout_s)
            time.sleep(settle_s)
            yield target, subscribers
    finally:
        target.stop()


@dataclasses.dataclass(frozen=True)
class _Reading:
    at_s: float
    cpu: dict[str, tuple[float, float]]
    host_busy_s: float


class CpuWindow:
    """CPU of named processes and of the whole machine between :meth:`start` and :meth:`stop`.

    Figures, in cores (CPU seconds per second): ``NAME_cores``, ``NAME_user_cores``,
    ``NAME_system_cores`` for each process, and ``other_cores``, what else kept the machine
    busy (other programs, the benchmark itself).
    """

    def __init__(self, pids: Mapping[str, int]) -> None:
        self._pids = dict(pids)
        self._start: _Reading | None = None

    def _read(self) -> _Reading:
        cpu = {name: cpu_split(pid) for name, pid in self._pids.items()}
        return _Reading(time.monotonic(), cpu, host_busy_s())

    def start(self) -> CpuWindow:
        """Take the first reading."""
        self._start = self._read()
        return self

    def stop(self) -> dict[str, float]:
        """Take the second reading; the figures over the window."""
        assert self._start is not None, "not started"
        end, start = self._read(), self._start
        elapsed_s = end.at_s - start.at_s
        figures: dict[str, float] = {"elapsed_s": elapsed_s}
        ours = 0.0
        for name in self._pids:
            user = (end.cpu[name][0] - start.cpu[name][0]) / elapsed_s
            system = (end.cpu[name][1] - start.cpu[name][1]) / elapsed_s
            figures[f"{name}_cores"] = user + system
            figures[f"{name}_user_cores"] = user
            figures[f"{name}_system_cores"] = system
            ours += user + system
        figures["other_cores"] = (end.host_busy_s - start.host_busy_s) / elapsed_s - ours
        return figures


def rss_during(pid: int, window_s: float, every_s: float = 1.0) -> list[int]:
    """The process's RSS every ``every_s`` for ``window_s`` (the window's wait)."""
    readings = []
    end = time.monotonic() + window_s
    while time.monotonic() < end:
        readings.append(rss_bytes(pid))
        time.sleep(min(every_s, max(0.0, end - time.monotonic())))
    return readings
