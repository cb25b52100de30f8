"""The ws-unclosed verdict rules on synthetic samples: freeze, plateau at the cap, noise, gaps."""

from __future__ import annotations

from typing import Any

import pytest

from leaklab.stories.ws_unclosed import STORY, notes
from leaklab.stories.ws_unclosed.matrix import Cell
from leaklab.stories.ws_unclosed.verdict import (
    cell_figures,
    cost_per_connection,
    judge,
    judge_cell,
    recovery_s,
    slope,
)

LIMIT = 256
BASE_FDS = 15


def sample(
    t_s: float,
    held: int,
    *,
    running: bool = True,
    probe: str = "101",
    healthz: str = "200",
    failed: dict[str, int] | None = None,
    requests: int | None = None,
    stopped_at: float | None = None,
    answers: bool = True,
    opened: int | None = None,
) -> dict[str, Any]:
    """One second of a cell: the service holds ``held`` sessions at 1 fd and 2 tasks each."""
    fds = min(BASE_FDS + held, LIMIT)
    return {
        "t_s": t_s,
        "client_running": running,
        "client_stopped_at_s": stopped_at,
        "fds": fds,
        "established": fds - BASE_FDS,
        "sessions": held if answers else None,
        "stats": "ok" if answers else "http_500",
        "stats_tasks": 5 + 2 * held if answers else None,
        "tasks": 5 + 2 * held,
        "probe": probe,
        "healthz": healthz,
        "client": None if t_s == 0 else {
            "requests": requests if requests is not None else int(150 * t_s),
            "opened": held if opened is None else opened, "held": held, "closed": 0,
            "closed_by_server": 0,
            "failed": failed or {}, "first_failure_s": None,
        },
    }  # fmt: skip


def frozen() -> list[dict[str, Any]]:
    """The leak without a cap: the fds run out at t=2, /healthz and newcomers are dropped."""
    return [
        sample(0, 0, running=False),
        sample(1, 120),
        sample(2, 241, probe="dropped", healthz="dropped", answers=False),
        sample(3, 241, probe="dropped", healthz="dropped", failed={"dropped": 140}),
        sample(4, 241, probe="dropped", healthz="timeout", failed={"dropped": 290}),
        sample(5, 0, running=False, stopped_at=4.5, failed={"dropped": 290}),
        sample(6, 0, running=False, stopped_at=4.5, failed={"dropped": 290}),
    ]


def capped() -> list[dict[str, Any]]:
    """The leak under MAX_SESSIONS=auto: a plateau at 205 sessions, 503 to the rest."""
    return [
        sample(0, 0, running=False),
        sample(1, 130),
        sample(2, 205, probe="http_503", failed={"http_503": 60}),
        sample(3, 205, probe="http_503", failed={"http_503": 210}),
        sample(4, 205, probe="http_503", failed={"http_503": 360}),
        sample(5, 0, running=False, stopped_at=4.5, failed={"http_503": 420}),
    ]


def closed(noise: bool = False) -> list[dict[str, Any]]:
    """A client that closes each connection: 0 to 2 open at a time, fds jitter."""
    return [
        sample(0, 0, running=False),
        *(sample(t, t % 3 if noise else 0, opened=150 * t) for t in range(1, 5)),
        sample(5, 0, running=False, stopped_at=4.5, opened=600),
    ]


def test_a_freeze_at_the_fd_limit_is_a_leak_with_its_recovery():
    verdict, reason = judge(cell_figures(frozen(), LIMIT))
    assert verdict == "leak"
    assert "241 connections held by the client (+1.0 fd and +2.0 tasks each" in reason
    assert "256 of 256 fds" in reason and "/healthz answered 1 of 4 s" in reason
    assert "dropped: 3" in reason and "back 0.5 s after the client exited" in reason


def test_figures_of_a_freeze():
    figures = cell_figures(frozen(), LIMIT)
    assert (figures["fds_base"], figures["fds_peak"], figures["fds_end"]) == (15, 256, 15)
    assert (figures["fds_per_connection"], figures["tasks_per_connection"]) == (1.0, 2.0)
    assert figures["probes"] == {"101": 1, "dropped": 3}
    assert (figures["healthz_failed"], figures["healthz_samples"]) == (3, 4)
    assert figures["stats_failed"] == 1 and figures["sessions_peak"] == 241
    assert figures["client_failures"] == {"dropped": 290} and figures["recovery_s"] == 0.5


def test_a_plateau_at_the_session_cap_with_503s_is_masked():
    verdict, reason = judge(cell_figures(capped(), LIMIT))
    assert verdict == "masked"
    assert reason.startswith("masked (contained): the leak is still there (205 connections")
    assert "refused 420 requests with HTTP 503 and kept 36 fds free" in reason
    assert "/healthz answered 4 of 4 s; new clients got 503 too" in reason


def test_growth_that_nothing_stopped_yet_is_a_leak():
    samples = [sample(0, 0, running=False), *(sample(t, 40 * t) for t in range(1, 5))]
    verdict, reason = judge(cell_figures(samples, LIMIT))
    assert verdict == "leak" and "nothing stopped the growth yet" in reason


def test_a_failed_health_check_below_the_limit_is_noise_not_a_freeze():
    """A slow /healthz on a busy host, far from the fd limit, does not make a leak."""
    samples = capped()
    samples[3]["healthz"] = "timeout"
    verdict, reason = judge(cell_figures(samples, LIMIT))
    assert verdict == "masked" and "/healthz answered 3 of 4 s" in reason
    noisy = closed(noise=True)
    noisy[2]["healthz"] = "timeout"
    verdict, reason = judge(cell_figures(noisy, LIMIT))
    assert verdict == "healthy" and "/healthz answered 3 of 4 s" in reason


def test_a_client_that_closes_or_reuses_is_healthy():
    verdict, reason = judge(cell_figures(closed(noise=True), LIMIT))
    assert verdict == "healthy"
    assert "750 requests over 600 connections, 2 held at most; service fds +2" in reason
    assert cell_figures(closed(), LIMIT)["fds_per_connection"] is None  # too few to say


def test_missing_readings_are_skipped_not_fatal():
    samples = frozen()
    for s in samples[2:4]:
        s.update(fds=None, established=None, tasks=None, probe=None, healthz=None, client=None)
    figures = cell_figures(samples, LIMIT)
    assert figures["fds_peak"] == 256 and figures["healthz_samples"] == 2
    assert judge(figures)[0] == "leak"


def test_too_few_samples_or_no_client_line_is_unknown():
    assert judge(cell_figures(frozen()[:2], LIMIT))[0] == "unknown"
    silent = [{**s, "client": None} for s in capped()]
    verdict, reason = judge(cell_figures(silent, LIMIT))
    assert verdict == "unknown" and "client never reported" in reason
    assert judge(cell_figures([], LIMIT))[0] == "unknown"


def test_recovery_is_none_when_the_service_never_comes_back():
    samples = frozen()
    for s in samples[5:]:
        s.update(healthz="dropped", probe="dropped", fds=LIMIT)
    assert recovery_s(samples, BASE_FDS) is None
    assert "not back by the end of the cell" in judge(cell_figures(samples, LIMIT))[1]


def test_cost_per_connection_is_a_slope_over_the_steady_samples():
    assert slope([(0, 1), (1, 3), (2, 5)]) == 2.0
    assert slope([(1, 1), (1, 2)]) is None and slope([]) is None
    for samples in (frozen(), capped()):
        assert cost_per_connection(samples, "fds") == 1.0
        assert cost_per_connection(samples, "tasks") == 2.0


def test_cost_per_connection_is_not_thrown_by_readings_that_race_the_ramp():
    """On a loaded host the task dump is read a moment after the connections were counted:
    during the ramp it saw 60 more connections; held still, the figures agree again."""
    for samples in (frozen(), capped()):
        samples[1]["tasks"] += 2 * 60
        assert cost_per_connection(samples, "tasks") == 2.0
    # The ramp alone, with nothing steady after it, is not enough to say.
    ramp = [sample(0, 0, running=False), sample(1, 120), sample(2, 240)]
    assert cost_per_connection(ramp, "fds") is None


def test_the_story_adds_the_dump_taken_while_the_client_ran_and_notes():
    samples = capped()
    samples[4]["task_groups"] = ["tasks: total 415", "205 @ run_asgi > ... > drain_messages"]
    samples[5]["task_groups"] = ["tasks: total 5"]
    samples[5]["log_digest"] = [(420, "ERROR: ASGI callable returned without completing ...")]
    result = STORY.judge(Cell("unclosed", "auto", fd_limit=LIMIT), samples)
    assert result == {**judge_cell(samples, LIMIT), "figures": result["figures"]}
    assert result["figures"]["task_groups"][1].startswith("205 @ ")
    assert result["figures"]["notes"] == notes(samples)
    assert notes(samples) == [
        "service log, warnings and errors: `ERROR: ASGI callable returned without completing "
        "...` (420 lines)",
        "after the client exited: `tasks: total 5`",
    ]


@pytest.mark.parametrize("figures_of", [frozen, capped, closed])
def test_every_column_renders(figures_of):
    figures = cell_figures(figures_of(), LIMIT)
    assert all(column.text(figures) for column in STORY.columns)
