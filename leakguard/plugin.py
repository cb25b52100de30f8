"""The leak guard's pytest hooks (entry point ``leakguard`` in the ``pytest11`` group).

Off until asked for: ``--leak-guard`` (fail) or ``--leak-guard=warn`` for every test, the
``leak_guard`` marker or fixture for one. For a guarded test the hooks run, in order:

- setup (outermost): the snapshot before anything of the test exists; from then on
  ``asyncio.Runner.close()`` is watched, and every higher-scoped fixture set up meanwhile
  is snapshotted around its setup so that what it creates is its own, not the test's;
- call (outermost, after the test function returned): unread backlogs on our TCP sockets;
- teardown (outermost, after every fixture was torn down): what is left, after the settle;
  a leak fails the teardown (fail mode) or is added to the report and the terminal summary
  (warn mode);
- with ``--leak-guard-repeat N``, the protocol first runs the test N more times unlogged
  and compares the figures after each run.

What the session owned when it started is never reported; each socket is reported once.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Generator
from typing import Any, cast

import pytest
from _pytest.runner import runtestprotocol  # the protocol, as pytest-rerunfailures reruns it

from leakguard import trace
from leakguard.allow import DEFAULT_ALLOW
from leakguard.findings import Growth
from leakguard.guard import GuardHandle, ItemGuard, socket_inodes
from leakguard.loops import create_process_globals
from leakguard.options import (
    INI_ALLOW,
    MARKER_HELP,
    MODES,
    GuardOptions,
    allow_from_ini,
    normalize_args,
    resolve,
)
from leakguard.probe import measure, take_snapshot
from leakguard.repeat import growth
from leakguard.report import format_report, plural
from leakguard.settle import backoff_delays
from sockscope.fds import read_fds

__all__ = ["LeakGuard", "leak_guard"]

SECTION = "leak guard"
# Everything the guard reads about fds, sockets and children comes from Linux's /proc.
SUPPORTED = os.path.isdir("/proc/self/fd")
NOT_SUPPORTED = "the leak guard reads /proc/self: it runs on Linux only"
STATE = pytest.StashKey[ItemGuard]()
WARNING = pytest.StashKey[str]()
GROWTH = pytest.StashKey[tuple[Growth, ...]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """The command line and ini options."""
    group = parser.getgroup("leakguard", "leak guard")
    group.addoption(
        "--leak-guard",
        dest="leak_guard",
        nargs="?",
        const="fail",
        default=None,
        metavar="MODE",
        # No argparse choices: pytest parses once before our hook can fix a bare option
        # followed by a path, and an invalid choice would end the run there.
        help="check that every test leaves no asyncio task, thread, child process, fd or "
        "unread socket backlog behind: fail such tests (MODE fail, the default), only "
        "report them (--leak-guard=warn), or guard marked tests only (--leak-guard=off)",
    )
    group.addoption(
        "--leak-guard-repeat",
        dest="leak_guard_repeat",
        type=int,
        default=0,
        metavar="N",
        help="run each guarded test N more times first (N >= 2, the first warms up) and fail "
        "it when fds, tasks or RSS grew at every run; turns the guard on",
    )
    group.addoption(
        "--leak-guard-trace",
        dest="leak_guard_trace",
        action="store_true",
        help="record where things are created (tracemalloc, slow) and show it in reports",
    )
    for name, kind in INI_ALLOW.items():
        parser.addini(name, f"leak guard: {kind} that may stay (globs)", "linelist", [])
    parser.addini(
        "leak_guard_settle_s",
        "leak guard: seconds to look again, with backoff, before reporting a leak",
        default="1.0",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """A bare ``--leak-guard`` must not swallow the path after it (see ``normalize_args``)."""
    fixed = normalize_args(args)
    if fixed != args:
        args[:] = fixed
        early_config.known_args_namespace = parser.parse_known_args(
            args, namespace=copy.copy(early_config.option)
        )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker and start the session's guard."""
    config.addinivalue_line("markers", MARKER_HELP)
    config.pluginmanager.register(LeakGuard(config), "leakguard-session")


@pytest.fixture
def leak_guard(request: pytest.FixtureRequest) -> GuardHandle:
    """Guard this test, as the ``leak_guard`` marker does; ``allow(...)`` allows more."""
    return GuardHandle(request.node.stash.get(STATE, None))


class LeakGuard:
    """The session's guard: options, what the session owns, and the per-test hooks."""

    def __init__(self, config: pytest.Config) -> None:
        self.mode = config.getoption("leak_guard")
        if self.mode not in (None, "off", *MODES):
            raise pytest.UsageError(f"--leak-guard takes fail, warn or off, not {self.mode!r}")
        if self.mode == "off":  # after an addopts that turned it on: marked tests only
            self.mode = None
        if self.mode is not None and not SUPPORTED:
            raise pytest.UsageError(NOT_SUPPORTED)
        self.repeat: int = config.getoption("leak_guard_repeat")
        if self.repeat < 0 or self.repeat == 1:
            raise pytest.UsageError("--leak-guard-repeat takes N >= 2 (the first run warms up)")
        if self.repeat and self.mode is None:
            self.mode = "fail"
        self.traced: bool = config.getoption("leak_guard_trace")
        self._tracing_started = trace.start() if self.traced else False
        try:
            self.settle_s = float(config.getini("leak_guard_settle_s"))
        except ValueError:
            raise pytest.UsageError("leak_guard_settle_s takes a number of seconds") from None
        self.delays = backoff_delays(total_s=self.settle_s)
        self.allow = DEFAULT_ALLOW + allow_from_ini(config.getini)
        self.session_sockets: frozenset[int] = frozenset()
        self.reported_sockets: set[int] = set()
        self.current: ItemGuard | None = None
        self._process_globals_created = False
        self.warned: list[tuple[str, str]] = []

    def options_for(self, item: pytest.Item) -> GuardOptions | None:
        """How ``item`` is guarded, or None; ValueError for a bad marker."""
        marker = item.get_closest_marker("leak_guard")
        if marker is not None and marker.args:
            raise ValueError("leak_guard marker: keyword arguments only")
        requested = "leak_guard" in getattr(item, "fixturenames", ())
        kwargs = dict(marker.kwargs) if marker is not None else None
        options = resolve(self.mode, kwargs, requested, self.allow)
        if options is not None and not SUPPORTED:
            raise ValueError(NOT_SUPPORTED)
        return options

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Remember the session's own sockets: their queues are never reported."""
        if SUPPORTED:
            self.session_sockets = frozenset(
                fd.inode for fd in read_fds() if fd.kind == "socket" and fd.inode
            )

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Stop tracing allocations if we started it."""
        if self._tracing_started:
            trace.stop()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        """With ``--leak-guard-repeat N``: N unlogged runs and their figures, then the real one."""
        if not self.repeat:
            return None
        try:
            options = self.options_for(item)
        except ValueError:
            return None  # the setup reports it
        if options is None or "growth" in options.ignore:
            return None
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        # Torn down "up to the parent" after each extra run: the test's own fixtures go,
        # the module's, class's and session's stay up for the next run.
        keep_parents = cast(pytest.Item, item.parent)
        samples = []
        for _ in range(self.repeat):
            reports = runtestprotocol(item, nextitem=keep_parents, log=False)
            if not all(report.passed for report in reports):
                break  # a failure, an error or a skip: the logged run below shows it
            samples.append(measure())
        else:
            item.stash[GROWTH] = tuple(growth(samples))
        runtestprotocol(item, nextitem=nextitem, log=True)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        """Take the snapshot before anything of the test exists."""
        try:
            options = self.options_for(item)
        except ValueError as exc:
            # Fail after the setup ran: other plugins' setup wrappers must still run.
            yield
            pytest.fail(str(exc), pytrace=False)
        if options is not None:
            if not self._process_globals_created:
                create_process_globals()
                self._process_globals_created = True
            guard = ItemGuard(item.nodeid, options, self.delays, traced=self.traced)
            item.stash[STATE] = guard
            self.current = guard
            guard.start()
        return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, Any]:
        """What a higher-scoped fixture creates while it is set up is its own."""
        guard = self.current
        if guard is None or fixturedef.scope == "function":
            return (yield)
        before = take_snapshot()
        try:
            return (yield)
        finally:
            guard.own(take_snapshot() - before)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        """When the test function returned: look for unread backlogs."""
        result = yield
        guard = item.stash.get(STATE, None)
        if guard is not None:
            guard.check_backlog(self.session_sockets | self.reported_sockets)
        return result

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, None, None]:
        """After every fixture was torn down: report what is left."""
        guard = item.stash.get(STATE, None)
        if guard is None:
            return (yield)
        try:
            result = yield
            grown: tuple[Growth, ...] = item.stash.get(GROWTH, ())
            findings = guard.finish(grown)
        finally:
            guard.stop_watching()
            self.current = None
            del item.stash[STATE]
            if GROWTH in item.stash:
                del item.stash[GROWTH]
        if findings:
            self.reported_sockets |= socket_inodes(findings)
            text = format_report(item.nodeid, findings, settle_s=self.settle_s, traced=self.traced)
            if guard.mode == "fail":
                pytest.fail(text, pytrace=False)
            item.stash[WARNING] = text
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Warn mode: the report of the teardown carries the message as a section."""
        report = yield
        if call.when == "teardown":
            text = item.stash.get(WARNING, None)
            if text is not None:
                report.sections.append((SECTION, text))
                del item.stash[WARNING]
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect warn-mode messages (from xdist workers too) for the terminal summary."""
        if report.when == "teardown" and report.passed:
            self.warned += [
                (report.nodeid, text) for title, text in report.sections if title == SECTION
            ]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Warn mode: every message at the end."""
        if not self.warned:
            return
        terminalreporter.write_sep(
            "=", f"leak guard: {plural(len(self.warned), 'test')} left something behind (warn)"
        )
        for _nodeid, text in self.warned:
            terminalreporter.write_line(text)
            terminalreporter.write_line("")
