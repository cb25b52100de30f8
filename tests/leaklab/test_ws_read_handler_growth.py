"""The churn and vanished-client rules of the read-handler story, on synthetic samples."""

from __future__ import annotations

import random
from typing import Any

import pytest

from leaklab.stories.ws_read_handler import STORY
from leaklab.stories.ws_read_handler.growth import (
    DEAD_ALLOWED,
    DEAD_GROWTH_PER_MIN,
    LINEAR_R2,
    MIN_SAMPLES,
    churn_figures,
    dead_sessions,
    judge_churn_cell,
    linear_fit,
)
from leaklab.stories.ws_read_handler.matrix import CHURN_QUICK, KEEPALIVE_OFF, Cell
from leaklab.stories.ws_read_handler.vanished import judge_vanished_cell

KIB = 1024
ACTIVE = 16  # clients connected and not leaving, at any time (4 new a second, 4 s each)


def churn_sample(t_s: float, dead: int, *, left: int | None = None, closing: bool = False,
                 server: bool = True) -> dict[str, Any]:  # fmt: skip
    """One lab sample of a churn cell with ``dead`` sessions whose client is gone."""
    sample: dict[str, Any] = {
        "t_s": t_s, "active": ACTIVE, "opened": ACTIVE + 4 * int(t_s),
        "left": 4 * max(0, int(t_s) - 3) if left is None else left,
        "swarm_closing": closing, "connected": ACTIVE, "closes": {},
        "sockets_by_state": {"ESTABLISHED": ACTIVE + dead + 1},
    }  # fmt: skip
    if server:
        sample["server"] = {"connections": ACTIVE + dead, "recv_q_bytes": dead * 120 * KIB,
                            "recv_q_max_bytes": 124 * KIB if dead else 0}  # fmt: skip
    return sample


def churn(dead_at: Any, seconds: int = 10) -> list[dict[str, Any]]:
    """Samples at t = 1..seconds, the first clients leaving at t = 4."""
    return [churn_sample(float(t), dead_at(t) if t >= 4 else 0) for t in range(1, seconds + 1)]


def verdict_of(samples: list[dict[str, Any]]) -> str:
    return judge_churn_cell(samples)["verdict"]


# The line


def test_fit_of_a_line_has_its_slope_per_minute_and_r2_of_one():
    fit = linear_fit([(t, 3.0 + 4.0 * t) for t in range(10)])
    assert fit.slope_per_min == pytest.approx(240.0)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.points == 10


def test_fit_of_a_flat_line_or_too_few_points_explains_nothing():
    assert linear_fit([(t, 5.0) for t in range(10)]).r2 == 0.0
    assert linear_fit([(1.0, 2.0)]).slope_per_min == 0.0
    assert linear_fit([(1.0, 2.0), (1.0, 3.0)]).r2 == 0.0  # no spread in time


def test_fit_of_noise_has_a_low_r2():
    rng = random.Random(7)
    fit = linear_fit([(float(t), rng.uniform(0, 2)) for t in range(30)])
    assert fit.r2 < 0.3 and abs(fit.slope_per_min) < DEAD_GROWTH_PER_MIN


# Dead sessions


def test_dead_sessions_are_the_sessions_whose_client_is_not_active():
    assert dead_sessions(churn_sample(5.0, 7)) == 7
    assert dead_sessions({"active": 3, "server": {"connections": 2}}) == 0  # skew: never < 0
    assert dead_sessions({"active": 3}) is None
    assert dead_sessions({"server": {"connections": 2}}) is None


# The churn rule


def test_linear_growth_of_dead_sessions_is_a_leak():
    result = judge_churn_cell(churn(lambda t: 4 * (t - 3)))
    figures = result["figures"]
    assert result["verdict"] == "leak"
    assert figures["dead_sessions_growth_per_min"] == pytest.approx(240.0)
    assert figures["dead_sessions_r2"] == pytest.approx(1.0)
    assert figures["recv_q_growth_mib_per_min"] == pytest.approx(240 * 120 / 1024, rel=1e-3)
    assert figures["sockets_by_state_end"] == {"ESTABLISHED": ACTIVE + 28 + 1}
    assert "240/min" in result["reason"] and "ESTABLISHED" in result["reason"]
    assert figures["events_lost"] is None


def test_sessions_reaped_as_clients_leave_are_healthy():
    result = judge_churn_cell(churn(lambda t: 0))
    assert result["verdict"] == "healthy"
    assert result["figures"]["dead_sessions_end"] == 0


def test_noise_of_a_session_or_two_being_closed_is_healthy():
    rng = random.Random(3)
    assert verdict_of(churn(lambda t: rng.choice((0, 1, 2)))) == "healthy"


def test_a_plateau_of_dead_sessions_is_masked():
    """Something reaps them late (keepalive): many dead, but no growth."""
    result = judge_churn_cell(churn(lambda t: 20, seconds=30))
    assert result["verdict"] == "masked"
    assert "no growth" in result["reason"]


def test_growth_that_is_not_steady_is_unknown():
    values = {4: 0, 5: 40, 6: 0, 7: 45, 8: 2, 9: 60, 10: 30}
    result = judge_churn_cell(churn(values.__getitem__))
    assert result["figures"]["dead_sessions_r2"] < LINEAR_R2
    assert result["verdict"] == "unknown"
    assert "not steadily" in result["reason"]


def test_missing_samples_are_skipped_and_the_rest_still_shows_the_leak():
    samples = churn(lambda t: 4 * (t - 3))
    for index in (4, 6):
        samples[index] = churn_sample(samples[index]["t_s"], 0, server=False)
    assert verdict_of(samples) == "leak"
    assert churn_figures(samples)["dead_sessions_fit_samples"] == len(samples) - 3 - 2


def test_too_few_samples_after_the_first_departure_is_unknown():
    short = churn(lambda t: 4 * (t - 3), seconds=3 + MIN_SAMPLES - 1)
    result = judge_churn_cell(short)
    assert result["verdict"] == "unknown"
    assert f"{MIN_SAMPLES} needed" in result["reason"]
    assert verdict_of([]) == "unknown"
    no_server = [churn_sample(float(t), 0, server=False) for t in range(1, 11)]
    assert verdict_of(no_server) == "unknown"


def test_samples_taken_while_the_swarm_closes_are_not_fitted():
    """The end of a run (every client closing at once) is not churn."""
    closing = [churn_sample(11.0, 28, closing=True), churn_sample(12.0, 28, closing=True)]
    samples = [*churn(lambda t: 4 * (t - 3)), *closing]
    figures = churn_figures(samples)
    assert figures["dead_sessions_fit_samples"] == 7
    assert figures["dead_sessions_r2"] == pytest.approx(1.0)


def test_a_few_dead_at_the_end_are_allowed():
    assert verdict_of(churn(lambda t: DEAD_ALLOWED if t == 10 else 0)) == "healthy"


def test_the_story_judges_churn_cells_by_the_churn_rule():
    cell = Cell("missing", KEEPALIVE_OFF, shape="churn", churn=CHURN_QUICK)
    assert STORY.judge(cell, churn(lambda t: 4 * (t - 3)))["verdict"] == "leak"
    assert "dead sessions" in STORY.rules and "vanished" in STORY.rules.lower()


# The vanished-client rule


def vanished(sessions_at: Any, *, down_at: float | None = 4.0, seconds: int = 20):
    """Samples of a vanished cell: 20 sessions, the link down at ``down_at``."""
    samples = []
    for t in range(1, seconds + 1):
        down = down_at is not None and t >= down_at
        samples.append({
            "t_s": float(t), "server": {"connections": sessions_at(t) if down else 20},
            "link_down": down, "link_down_at_s": down_at if down else None,
            "sockets_by_state": {"ESTABLISHED": 21}, "sockets_send_q_bytes": 1000 * t,
            **({"tcp_retries2": 15} if t == down_at else {}),
        })  # fmt: skip
    return samples


def test_sessions_kept_after_the_link_went_down_are_a_leak():
    result = judge_vanished_cell(vanished(lambda t: 20))
    assert result["verdict"] == "leak"
    assert result["figures"]["observed_after_down_s"] == 16.0
    assert "20 of 20" in result["reason"] and "tcp_retries2=15" in result["reason"]


def test_sessions_reaped_soon_after_the_link_went_down_are_healthy():
    result = judge_vanished_cell(vanished(lambda t: 20 if t < 8 else 0))
    assert result["verdict"] == "healthy"
    assert result["figures"]["reaped_after_s"] == 4.0


def test_a_link_that_never_went_down_or_a_short_watch_is_unknown():
    assert judge_vanished_cell(vanished(lambda t: 20, down_at=None))["verdict"] == "unknown"
    assert judge_vanished_cell(vanished(lambda t: 20, seconds=8))["verdict"] == "unknown"
    assert judge_vanished_cell([])["verdict"] == "unknown"


def test_vanished_samples_without_server_figures_are_skipped():
    samples = vanished(lambda t: 20 if t < 8 else 0)
    for sample in samples[7:11]:  # t = 8..11: the first after the reaping is t = 12
        del sample["server"]
    assert judge_vanished_cell(samples)["figures"]["reaped_after_s"] == 8.0
