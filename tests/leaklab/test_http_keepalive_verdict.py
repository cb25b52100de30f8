"""Tests of the http-keepalive verdict rules on synthetic samples: growth, mask, plateau,
noise and missing samples."""

from __future__ import annotations

from typing import Any

import pytest

from leaklab.stories.http_keepalive.verdict import (
    HELD_MIN,
    MIN_IDLE_S,
    RULES,
    cell_figures,
    held_threshold,
    judge,
    judge_cell,
)

BASE_FDS = 15


def sample(
    t_s: float,
    requests: int,
    caller: dict[str, int],
    callee: dict[str, int],
    *,
    last_request_s: float | None = None,
    tasks: tuple[int, int] = (3, 2),
) -> dict[str, Any]:
    """One per-second sample as the cell writes it."""
    out: dict[str, Any] = {
        "t_s": t_s,
        "requests_done": requests,
        "errors": 0,
        "first_error": None,
        "last_request_s": last_request_s
        if last_request_s is not None
        else (t_s if requests else None),
        "forward_p50_ms": 8.0 if requests else None,
        "caller_tasks": tasks[0],
        "callee_tasks": tasks[1],
    }
    for side, link in (("caller", caller), ("callee", callee)):
        out |= {
            f"{side}_fds": BASE_FDS + sum(link.values()),
            f"{side}_link": link,
            f"{side}_link_sockets": sum(link.values()),
            f"{side}_established": link.get("ESTABLISHED", 0),
            f"{side}_close_wait": link.get("CLOSE_WAIT", 0),
        }
    return out


def run(
    per_second: int, seconds: int, hold_s: int, caller_at: Any, callee_at: Any
) -> list[dict[str, Any]]:
    """Samples of a drive of ``per_second`` requests for ``seconds``, then ``hold_s`` idle.

    ``caller_at(requests, idle_s)`` and ``callee_at(...)`` give each side's link states.
    """
    samples = [sample(0.0, 0, {}, {})]
    end = per_second * seconds
    for t in range(1, seconds + hold_s + 1):
        done = min(end, per_second * t)
        idle = max(0, t - seconds)
        last = float(min(t, seconds))
        samples.append(sample(float(t), done, caller_at(done, idle), callee_at(done, idle),
                              last_request_s=last))  # fmt: skip
    return samples


def both_established(done: int, idle: int) -> dict[str, int]:
    return {"ESTABLISHED": done}


def test_growth_on_both_sides_that_stays_is_a_leak():
    samples = run(50, 3, 3, both_established, both_established)
    verdict = judge_cell(samples)
    assert verdict["verdict"] == "leak"
    assert "both sides" in verdict["reason"]
    figures = verdict["figures"]
    assert figures["caller_link_sockets_end"] == figures["callee_link_sockets_end"] == 150
    assert figures["caller_fds_per_100_requests"] == figures["callee_fds_per_100_requests"] == 100
    assert (figures["caller_tasks_start"], figures["caller_tasks_end"]) == (3, 3)


def test_callee_closing_idle_ends_while_caller_keeps_close_wait_is_masked():
    """Keep-alive 2 s: the callee's sockets go after 2 s idle, the caller's turn CLOSE_WAIT."""

    def callee(done: int, idle: int) -> dict[str, int]:
        return {} if idle >= 2 else {"ESTABLISHED": min(done, 100)}

    def caller(done: int, idle: int) -> dict[str, int]:
        closed = done if idle >= 2 else max(0, done - 100)
        return {"CLOSE_WAIT": closed, "ESTABLISHED": done - closed}

    verdict = judge_cell(run(50, 3, 3, caller, callee))
    assert verdict["verdict"] == "masked"
    assert "150 sockets in CLOSE_WAIT" in verdict["reason"]
    assert verdict["figures"]["callee_link_sockets_peak"] == 100
    assert verdict["figures"]["callee_fds_per_100_requests"] == 0


def test_one_shared_connection_is_a_plateau_and_healthy():
    def one(done: int, idle: int) -> dict[str, int]:
        return {"ESTABLISHED": 1} if done else {}

    verdict = judge_cell(run(50, 3, 3, one, one))
    assert verdict["verdict"] == "healthy"
    assert verdict["figures"]["caller_link_sockets_peak"] == 1


def test_a_few_sockets_of_noise_stay_healthy():
    """Up to HELD_MIN - 1 sockets (garbage not yet collected, a probe) is not a leak."""

    def noisy(done: int, idle: int) -> dict[str, int]:
        return {"ESTABLISHED": (done * 7) % HELD_MIN}

    assert judge_cell(run(50, 3, 3, noisy, noisy))["verdict"] == "healthy"


def test_connections_that_closed_during_the_hold_are_healthy():
    def drained(done: int, idle: int) -> dict[str, int]:
        return {} if idle else {"ESTABLISHED": done}

    verdict = judge_cell(run(50, 3, 3, drained, drained))
    assert verdict["verdict"] == "healthy"
    assert verdict["figures"]["callee_link_sockets_peak"] == 150


def test_caller_holding_established_sockets_alone_is_a_leak_on_the_caller():
    verdict = judge_cell(run(50, 3, 3, both_established, lambda done, idle: {}))
    assert verdict["verdict"] == "leak"
    assert "on the caller" in verdict["reason"]


def test_missing_samples_and_fields_are_skipped():
    samples = run(50, 3, 3, both_established, both_established)
    for index in (1, 3):  # a side's /counts and psutil reading failed in two samples
        for key in ("callee_fds", "callee_link", "callee_link_sockets", "caller_tasks"):
            samples[index].pop(key)
    del samples[2]  # a tick that never came
    assert judge_cell(samples)["verdict"] == "leak"


def test_no_socket_figures_is_unknown():
    samples = [{"t_s": float(t), "requests_done": 50 * t} for t in range(6)]
    verdict = judge_cell(samples)
    assert verdict["verdict"] == "unknown"
    assert "socket figures" in verdict["reason"]
    assert judge_cell([])["verdict"] == "unknown"


def test_too_few_requests_is_unknown():
    samples = [sample(0.0, 0, {}, {}), sample(4.0, 5, {}, {}, last_request_s=0.5)]
    assert judge_cell(samples)["verdict"] == "unknown"


def test_a_cell_without_idle_time_at_its_end_is_unknown():
    samples = run(50, 3, 0, both_established, both_established)
    figures = cell_figures(samples)
    assert figures["idle_s"] < MIN_IDLE_S
    verdict, reason = judge(figures)
    assert verdict == "unknown"
    assert "idle" in reason


@pytest.mark.parametrize(
    ("requests", "threshold"), [(0, HELD_MIN), (10, HELD_MIN), (150, 75), (400, 200)]
)
def test_held_threshold_is_half_a_socket_per_request_and_at_least_the_minimum(requests, threshold):
    assert held_threshold(requests) == threshold


def test_rules_sentence_names_the_thresholds():
    assert f"at least {HELD_MIN} sockets" in RULES
    assert "CLOSE_WAIT" in RULES
