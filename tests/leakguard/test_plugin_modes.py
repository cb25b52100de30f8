"""How the guard is turned on and tuned: modes, allow-lists, settle, scopes, repetition."""

from __future__ import annotations

import pytest

from tests.leakguard.conftest import INI, RunExample

pytestmark = pytest.mark.timeout(120)

LEAKY_FILE = """
KEEP = []

def test_leaks(tmp_path):
    KEEP.append(open(tmp_path / "journal.txt", "w"))
"""


def test_off_unless_asked_for(run_example: RunExample) -> None:
    """Without the option, marker or fixture, a leaking test passes."""
    run_example(LEAKY_FILE).assert_outcomes(passed=1)


def test_warn_mode_reports_without_failing(run_example: RunExample) -> None:
    """--leak-guard=warn: the test passes, the terminal summary says what it left."""
    result = run_example(LEAKY_FILE, "--leak-guard=warn")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*= leak guard: 1 test left something behind (warn) =*",
            "leak guard: 1 fd left behind by test_example.py::test_leaks *",
            "    fd * file */journal.txt",
        ]
    )


def test_off_on_the_command_line_wins_over_addopts(run_example: RunExample) -> None:
    """``--leak-guard=off`` after an addopts that turned it on: only marked tests."""
    ini = INI + "addopts = --leak-guard\n"
    run_example(LEAKY_FILE, "--leak-guard=off", ini=ini).assert_outcomes(passed=1)
    run_example(LEAKY_FILE, ini=ini).assert_outcomes(passed=1, errors=1)


def test_bare_option_before_a_path_takes_no_value(run_example: RunExample) -> None:
    """``pytest --leak-guard test_example.py`` guards that file (the path is not the mode)."""
    result = run_example(LEAKY_FILE, "--leak-guard", "test_example.py")
    result.assert_outcomes(passed=1, errors=1)


def test_marker_and_fixture_guard_single_tests(run_example: RunExample) -> None:
    """The marker or the fixture guards a test; its unmarked neighbour is not guarded."""
    source = """
        import pytest

        KEEP = []

        @pytest.mark.leak_guard
        def test_marked(tmp_path):
            KEEP.append(open(tmp_path / "a.txt", "w"))

        def test_with_fixture(leak_guard, tmp_path):
            assert leak_guard.active
            KEEP.append(open(tmp_path / "b.txt", "w"))

        def test_unguarded(tmp_path):
            KEEP.append(open(tmp_path / "c.txt", "w"))
    """
    result = run_example(source)
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines_random(
        ["*ERROR at teardown of test_marked*", "*ERROR at teardown of test_with_fixture*"]
    )
    result.stdout.no_fnmatch_line("*ERROR at teardown of test_unguarded*")


def test_marker_switches_it_off_or_to_warn(run_example: RunExample) -> None:
    """Under --leak-guard, ``off=True`` skips a test and ``mode='warn'`` only reports it."""
    source = """
        import pytest

        KEEP = []

        @pytest.mark.leak_guard(off=True)
        def test_off(tmp_path):
            KEEP.append(open(tmp_path / "a.txt", "w"))

        @pytest.mark.leak_guard(mode="warn")
        def test_warned(tmp_path):
            KEEP.append(open(tmp_path / "b.txt", "w"))
    """
    result = run_example(source, "--leak-guard")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["leak guard: 1 fd left behind by test_example.py::test_warned *"])


def test_bad_marker_arguments_fail_the_setup(run_example: RunExample) -> None:
    """An unknown marker argument is an error of that test, naming the known ones."""
    source = """
        import pytest

        @pytest.mark.leak_guard(allow_everything=True)
        def test_typo():
            pass
    """
    result = run_example(source)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown argument(s) allow_everything; known: *"])


ALLOWED = """
import asyncio
import socket
import threading

import pytest

KEEP = []
STOP = threading.Event()

async def idle():
    await asyncio.sleep(3600)

@pytest.mark.leak_guard(
    allow_tasks=["idle"], allow_threads=["keeper-*"], allow_fds=["*/kept.txt"],
    allow_sockets=["127.0.0.1:*"],
)
async def test_marker_allows(tmp_path):
    KEEP.append(asyncio.create_task(idle()))
    threading.Thread(target=STOP.wait, name="keeper-1", daemon=True).start()
    KEEP.append(open(tmp_path / "kept.txt", "w"))
    KEEP.append(socket.create_server(("127.0.0.1", 0)))

def test_ini_allows():
    threading.Thread(target=STOP.wait, name="ini-allowed", daemon=True).start()

def test_fixture_allows(leak_guard, tmp_path):
    leak_guard.allow(fds=["*/also-kept.txt"])
    KEEP.append(open(tmp_path / "also-kept.txt", "w"))

def test_not_allowed(tmp_path):
    KEEP.append(open(tmp_path / "journal.txt", "w"))
"""


def test_allow_lists_from_marker_ini_and_fixture(run_example: RunExample) -> None:
    """What an allow-list names may stay; anything else is still reported."""
    ini = INI + "leak_guard_allow_threads =\n    ini-*\n"
    result = run_example(ALLOWED, "--leak-guard", ini=ini)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        ["leak guard: 1 fd left behind by test_example.py::test_not_allowed *"]
    )


def test_ignore_skips_a_kind_of_check(run_example: RunExample) -> None:
    """``ignore=["threads"]``: a thread may stay, a file may not."""
    source = """
        import threading
        import pytest

        KEEP = []
        STOP = threading.Event()

        @pytest.mark.leak_guard(ignore=["threads"])
        def test_leaks(tmp_path):
            threading.Thread(target=STOP.wait, daemon=True).start()
            KEEP.append(open(tmp_path / "journal.txt", "w"))
    """
    result = run_example(source)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["leak guard: 1 fd left behind by *"])


SETTLE = """
import asyncio
import threading
import time

KEEP = []

async def test_task_ends_50_ms_later():
    KEEP.append(asyncio.create_task(asyncio.sleep(0.05)))

def test_thread_ends_50_ms_later():
    threading.Thread(target=time.sleep, args=(0.05,)).start()

def test_loop_in_a_thread_ends_50_ms_later():
    async def main():
        asyncio.get_running_loop().call_later(0.05, stop.set)
        await asyncio.to_thread(stop.wait)
    stop = threading.Event()
    threading.Thread(target=asyncio.run, args=(main(),)).start()
"""


def test_settle_does_not_flag_what_ends_shortly_after(run_example: RunExample) -> None:
    """With the default 1 s settle, a task or thread that ends 50 ms after the test is fine."""
    ini = INI.replace("leak_guard_settle_s = 0.3\n", "")
    result = run_example(SETTLE, "--leak-guard", ini=ini)
    result.assert_outcomes(passed=3)


def test_without_settle_the_same_task_would_be_flagged(run_example: RunExample) -> None:
    """The witness: with no settle at all, the 50 ms task counts as left behind."""
    ini = INI.replace("leak_guard_settle_s = 0.3", "leak_guard_settle_s = 0")
    result = run_example(SETTLE, "--leak-guard", "-k", "task_ends", ini=ini)
    result.assert_outcomes(passed=1, errors=1)


SCOPES = """
import socket
import threading

import pytest

@pytest.fixture(scope="module")
def server():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="module-server")
    thread.start()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener
    stop.set()
    thread.join()

@pytest.fixture(scope="session")
def journal(tmp_path_factory):
    with open(tmp_path_factory.mktemp("session") / "journal.txt", "w") as journal:
        yield journal

@pytest.fixture
def leaky_log(server, tmp_path):
    yield open(tmp_path / "log.txt", "w")  # never closed: a function fixture is the test's

def test_first_user(server, journal):
    pass

def test_second_user(server, journal):
    pass

def test_function_fixture_leak_is_the_tests(leaky_log):
    pass
"""


def test_higher_scoped_fixtures_are_not_the_tests_leak(run_example: RunExample) -> None:
    """What module/session fixtures create is theirs; a function fixture's leak is the test's."""
    result = run_example(SCOPES, "--leak-guard")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_function_fixture_leak_is_the_tests*",
            "leak guard: 1 fd left behind by *",
            "    fd * file */log.txt",
        ]
    )


SESSION_CONFTEST = """
import socket
import threading

# Opened at import, before the session starts: the session's own, never reported, not
# even its unread bytes.
LISTENER = socket.create_server(("127.0.0.1", 0))
CLIENT = socket.create_connection(LISTENER.getsockname())
SERVER, _ = LISTENER.accept()
CLIENT.sendall(b"unread")
STOP = threading.Event()
threading.Thread(target=STOP.wait, name="session-thread", daemon=True).start()
"""


def test_what_the_session_owns_at_start_is_never_reported(run_example: RunExample) -> None:
    """Sockets (with unread bytes) and threads of the session's start are not the test's."""
    result = run_example(
        "def test_nothing():\n    pass\n", "--leak-guard", conftest=SESSION_CONFTEST
    )
    result.assert_outcomes(passed=1)


def test_a_process_global_of_the_first_uvloop_loop_is_not_a_leak(run_example: RunExample) -> None:
    """libuv opens one pipe for the whole process with its first loop: not the test's."""
    source = """
        import asyncio
        import uvloop

        def test_first_uvloop_loop():
            loop = uvloop.new_event_loop()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()
    """
    run_example(source, "--leak-guard").assert_outcomes(passed=1)


def test_a_failed_test_still_reports_its_leak(run_example: RunExample) -> None:
    """A leak is reported whether or not the test itself passed."""
    source = """
        KEEP = []

        def test_fails_and_leaks(tmp_path):
            KEEP.append(open(tmp_path / "journal.txt", "w"))
            assert False
    """
    result = run_example(source, "--leak-guard")
    result.assert_outcomes(failed=1, errors=1)


ASYNC_PLUGINS = """
import asyncio

import pytest

KEEP = []

async def forever():
    await asyncio.sleep(3600)

@pytest.mark.asyncio
async def test_asyncio_marked():
    KEEP.append(asyncio.create_task(forever()))

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.anyio
async def test_anyio_leaks():
    KEEP.append(asyncio.create_task(forever()))

@pytest.mark.anyio
async def test_anyio_clean():
    await asyncio.sleep(0)

@pytest.fixture
async def server_task():
    task = asyncio.create_task(forever())
    yield task
    task.cancel()

@pytest.mark.asyncio
async def test_async_fixture_cleans_up(server_task):
    assert not server_task.done()
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_pytest_asyncio_and_anyio_loops(run_example: RunExample, mode: str) -> None:
    """Tasks left on pytest-asyncio's and anyio's loops are reported before they cancel them."""
    result = run_example(ASYNC_PLUGINS, "--leak-guard", f"-o asyncio_mode={mode}")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines_random(
        [
            "*ERROR at teardown of test_asyncio_marked*",
            "*ERROR at teardown of test_anyio_leaks*",
        ]
    )
    result.stdout.fnmatch_lines(["    1 @ forever > sleep  (*; cancelled when its loop closed)"])
    result.stdout.no_fnmatch_line("*ERROR at teardown of test_anyio_clean*")
    result.stdout.no_fnmatch_line("*ERROR at teardown of test_async_fixture_cleans_up*")


REPEAT = """
import os

CACHE = []
LEAKED = []

def test_slow_fd_leak():
    # One more fd at every run, held in a global: the single-run check is told to allow it.
    LEAKED.append(os.open(os.devnull, os.O_RDONLY))

def test_steady():
    # Fills a cache once, then reuses it: grows at the first run only.
    if not CACHE:
        CACHE.append(os.open(os.devnull, os.O_RDONLY))
    with open(os.devnull) as null:
        null.read()
"""


def test_repetition_catches_a_slow_leak_and_passes_a_steady_test(run_example: RunExample) -> None:
    """--leak-guard-repeat 4: fds that grow at every run fail; a cache filled once does not."""
    ini = INI + "leak_guard_allow_fds =\n    /dev/null\n"
    result = run_example(REPEAT, "--leak-guard-repeat", "4", ini=ini)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_slow_fd_leak*",
            "leak guard: growth over repetitions left behind by *::test_slow_fd_leak*",
            "grew at every one of 4 repetitions (after each run):",
            "    fds: *, *, *, *",
        ]
    )
    result.stdout.no_fnmatch_line("*ERROR at teardown of test_steady*")


REPEAT_FIXTURES = """
import pytest

RUNS = {"function": 0, "module": 0}

@pytest.fixture(scope="module")
def module_resource():
    RUNS["module"] += 1
    yield

@pytest.fixture
def function_resource(tmp_path):
    RUNS["function"] += 1
    with open(tmp_path / "f", "w") as f:
        yield f

class TestFirst:
    def test_fails(self):
        assert False

class TestSecond:
    def test_uses_fixtures(self, module_resource, function_resource):
        pass

def test_counts():
    assert RUNS == {"function": 4, "module": 1}
"""


def test_repetition_reruns_the_tests_fixtures_and_keeps_the_modules(
    run_example: RunExample,
) -> None:
    """Each run sets up and tears down the test's own fixtures; a module's stays up; a run
    that fails ends the repetition and the logged run shows the failure."""
    result = run_example(REPEAT_FIXTURES, "--leak-guard-repeat", "3")
    result.assert_outcomes(passed=2, failed=1)


def test_trace_shows_where_it_was_created(run_example: RunExample) -> None:
    """--leak-guard-trace: the line that created the leaked object is in the report."""
    result = run_example(LEAKY_FILE, "--leak-guard", "--leak-guard-trace")
    result.stdout.fnmatch_lines(
        [
            "    fd * file */journal.txt",
            "      created at:",
            '        test_example.py:4: KEEP.append(open(tmp_path / "journal.txt", "w"))',
        ]
    )
