"""One run of ``make demo``'s command for the whole session: every story's quick matrix.

The stories' end-to-end tests each read their own cells from this one run instead of running
their quick matrix again: the cells are the same (the demo is every story's ``--quick``
matrix at the quick duration), and the suite pays for them once.
"""

from __future__ import annotations

import time

import pytest

from tests.utils import DEMO_TIMEOUT_S, DemoRun, run_lab


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """``make demo``'s command, run once (``--out`` in a temporary folder)."""
    out = tmp_path_factory.mktemp("demo") / "report"
    started = time.monotonic()
    result, pids = run_lab(["demo", "--out", str(out)], timeout_s=DEMO_TIMEOUT_S)
    elapsed_s = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    return DemoRun(result=result, out=out, pids=pids, elapsed_s=elapsed_s)
