"""Tests for leakguard.report: the message people read, on literal findings."""

from leakguard.findings import Backlog, FdLeak, Findings, Growth, ProcessLeak, TaskLeak, ThreadLeak
from leakguard.report import format_report, plural
from sockscope.fds import Fd
from sockscope.process import ChildProcess
from sockscope.sockets import SocketInfo
from sockscope.tasks import CoroFrame, TaskStack

SERVE = TaskStack("Task-3", (CoroFrame("serve", "app.py", 12), CoroFrame("sleep")))
CLOSE_WAIT = SocketInfo(9, 77, "tcp", "CLOSE_WAIT", "127.0.0.1:8000", "127.0.0.1:51000", 5, 0)
UNREAD = SocketInfo(11, 78, "tcp", "ESTABLISHED", "127.0.0.1:8000", "127.0.0.1:51002", 4096, 0)
LISTEN = SocketInfo(12, 79, "tcp", "LISTEN", "127.0.0.1:8000", None, None, None, 2, 128)

FINDINGS = Findings(
    tasks=(TaskLeak(SERVE, "cancelled when its loop closed"),) * 2,
    threads=(ThreadLeak("poller", "app.poll", daemon=True),),
    processes=(ProcessLeak(ChildProcess(4242, 1, "Z", "sleep")),),
    fds=(FdLeak(Fd(9, "socket:[77]", "socket", 77), CLOSE_WAIT), FdLeak(Fd(10, "/tmp/j", "file"))),
    backlog=(Backlog(UNREAD), Backlog(LISTEN)),
    growth=(Growth("fds", (40, 41, 42)),),
)


def test_report_names_the_test_each_leak_and_a_fix() -> None:
    """One section per kind, counts first, then one hint per kind found."""
    text = format_report("tests/test_app.py::test_x", FINDINGS, settle_s=1.0, traced=False)
    assert text.splitlines() == [
        "leak guard: 2 tasks, 1 thread, 1 child process, 2 fds, 2 unread backlogs, growth over "
        "repetitions left behind by tests/test_app.py::test_x (looked again for 1 s before "
        "saying so)",
        "2 asyncio tasks still pending:",
        "    2 @ serve > sleep  (app.py:12; cancelled when its loop closed)",
        "1 thread still alive:",
        "    'poller' (target app.poll), daemon",
        "1 child process never waited for:",
        "    pid 4242 exited, not waited for (zombie): sleep",
        "2 fds still open: 1 socket, 1 file",
        "    fd 9 socket tcp CLOSE_WAIT local 127.0.0.1:8000 peer 127.0.0.1:51000, 5 bytes unread",
        "    fd 10 file /tmp/j",
        "unread backlog at the end of the test: 2 sockets, 4096 bytes never read",
        "    fd 11 tcp ESTABLISHED local 127.0.0.1:8000 peer 127.0.0.1:51002: 4096 bytes "
        "received, never read",
        "    fd 12 tcp LISTEN local 127.0.0.1:8000: 2 connections never accepted (listen "
        "backlog 128)",
        "grew at every one of 3 repetitions (after each run):",
        "    fds: 40, 41, 42",
        "how to fix:",
        "    tasks: cancel and await the tasks you start, or start them in an asyncio.TaskGroup",
        "    threads: tell the threads you start to stop, then join() them",
        "    processes: wait() for the processes you start (after terminate() or kill())",
        "    fds: close what you open: `with open(...)`, `with socket...`, contextlib.closing(), "
        "`writer.close(); await writer.wait_closed()`",
        "    backlog: read what the peer sends (a reader next to the writer that drains and "
        "discards messages, and ends the session when reading ends); accept() or close "
        "listening sockets",
        "    growth: something keeps what each run opens: a global list, a cache without a "
        "bound, a pool never closed",
        "(--leak-guard-trace shows where each was created; allow what may stay with",
        " @pytest.mark.leak_guard(allow_...=[...]) or leak_guard_allow_* in the ini)",
    ]


def test_traced_report_shows_where_each_was_created() -> None:
    """With tracing, the creation lines follow the leak and the trace hint goes."""
    leak = FdLeak(Fd(10, "/tmp/j", "file"), created=("test_app.py:4: open('/tmp/j', 'w')",))
    text = format_report("t", Findings(fds=(leak,)), settle_s=1.0, traced=True)
    assert "    fd 10 file /tmp/j\n      created at:\n        test_app.py:4: open(" in text
    assert "--leak-guard-trace" not in text


def test_plural() -> None:
    """Counts with the right noun."""
    assert (plural(1, "fd"), plural(2, "fd"), plural(2, "process", "processes")) == (
        "1 fd",
        "2 fds",
        "2 processes",
    )
