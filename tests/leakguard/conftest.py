"""Run pytest with the leak guard on small example test files, in a child process each.

A child process keeps the examples' leaks (threads, sockets, patched asyncio) out of the
process that runs these tests, which may itself run under the guard.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

# Examples use the project's asyncio settings; a shorter settle keeps leaking examples quick
# (the settle itself is tested with the default).
INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
leak_guard_settle_s = 0.3
"""

RunExample = Callable[..., pytest.RunResult]


@pytest.fixture
def run_example(pytester: pytest.Pytester) -> RunExample:
    """Write ``source`` as test_example.py, and an ini file; run pytest there; its result."""

    def run(
        source: str, *args: str, ini: str = INI, conftest: str | None = None
    ) -> pytest.RunResult:
        pytester.makeini(ini)
        if conftest is not None:
            pytester.makeconftest(conftest)
        pytester.makepyfile(test_example=source)
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=90)

    return run
