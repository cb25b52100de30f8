"""Tests for leakguard.allow: globs against what the report shows, on literal findings."""

from leakguard.allow import DEFAULT_ALLOW, AllowList, matches
from leakguard.findings import Backlog, FdLeak, Findings, Growth, ProcessLeak, TaskLeak, ThreadLeak
from sockscope.fds import Fd
from sockscope.process import ChildProcess
from sockscope.sockets import SocketInfo
from sockscope.tasks import CoroFrame, TaskStack

AMQP = SocketInfo(7, 1, "tcp", "ESTABLISHED", "127.0.0.1:40000", "127.0.0.1:5672", 0, 0)
WS = SocketInfo(8, 2, "tcp", "ESTABLISHED", "127.0.0.1:8000", "127.0.0.1:51000", 4096, 0)


def task(name: str, *chain: str) -> TaskLeak:
    """A pending task with this chain."""
    return TaskLeak(TaskStack(name, tuple(CoroFrame(q) for q in chain)), "on an idle loop")


FINDINGS = Findings(
    tasks=(task("Task-1", "Connection.reader", "sleep"), task("hub", "Hub.run")),
    threads=(ThreadLeak("asyncio_0", None, daemon=True), ThreadLeak("worker", None, False)),
    processes=(ProcessLeak(ChildProcess(10, 1, "S", "rabbitmq-server -detached")),),
    fds=(
        FdLeak(Fd(7, "socket:[1]", "socket", 1), AMQP),
        FdLeak(Fd(9, "/dev/shm/sem.x", "file")),
        FdLeak(Fd(10, "/tmp/journal.txt", "file")),
    ),
    backlog=(Backlog(WS),),
    growth=(Growth("fds", (1, 2, 3)),),
)


def test_empty_allow_list_keeps_everything() -> None:
    """Nothing allowed: the findings come back whole."""
    assert AllowList().filter(FINDINGS) == FINDINGS


def test_each_kind_matches_what_the_report_shows() -> None:
    """Tasks by chain, outer qualname or name; threads by name; processes by command;
    fds by target; sockets by either address; growth is never allowed away."""
    allow = AllowList(
        tasks=("Connection.reader > *", "hub"),
        threads=("asyncio_*",),
        processes=("rabbitmq-server *",),
        fds=("/dev/shm/*",),
        sockets=("*:5672", "127.0.0.1:8000"),
    )
    left = allow.filter(FINDINGS)
    assert left == Findings(
        threads=(ThreadLeak("worker", None, False),),
        fds=(FdLeak(Fd(10, "/tmp/journal.txt", "file")),),
        growth=FINDINGS.growth,
    )


def test_allow_lists_add_up() -> None:
    """The ini's list plus the marker's."""
    both = AllowList(threads=("a",)) + AllowList(threads=("b",), fds=("c",))
    assert (both.threads, both.fds) == (("a", "b"), ("c",))


def test_defaults_allow_anyios_runner_task_only() -> None:
    """anyio keeps its runner task until its loop closes: not the test's."""
    runner = TaskStack("t", (CoroFrame("TestRunner._run_tests_and_fixtures"),))
    assert DEFAULT_ALLOW.allows_task(runner)
    assert not DEFAULT_ALLOW.allows_task(TaskStack("t", (CoroFrame("serve"),)))


def test_patterns_are_case_sensitive_globs() -> None:
    """``*`` matches anything; case matters."""
    assert matches(["keeper-*"], "keeper-1")
    assert not matches(["Keeper-*"], "keeper-1")
