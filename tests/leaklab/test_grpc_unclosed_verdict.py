"""Tests of the grpc-unclosed story's verdict: figures and verdicts from literal samples."""

from __future__ import annotations

from typing import Any

import pytest

from leaklab.stories.grpc_unclosed.verdict import (
    FD_LIMIT_MARGIN,
    LEAK_CONNECTIONS_PER_HELD,
    MIN_HELD_CHANNELS,
    RULES,
    SHARED_CONNECTIONS_MAX,
    cell_figures,
    judge_cell,
)

LIMIT = 256
BASE_FDS = 8


def sample(
    t_s: float,
    *,
    held: int | None,
    conns: int | None,
    fds: int | None = None,
    errors: dict[str, int] | None = None,
    first_error: dict[str, Any] | None = None,
    rss: int = 50_000_000,
    phase: str = "load",
) -> dict[str, Any]:
    """One per-second sample in the lab's shape; None leaves that side out (a missed reading)."""
    out: dict[str, Any] = {"t_s": t_s, "fd_limit": LIMIT, "phase": phase, "first_error": None}
    if conns is not None:
        server_fds = fds if fds is not None else min(LIMIT, BASE_FDS + conns)
        out["server"] = {"established": conns, "fds": server_fds, "threads": 9, "rss_bytes": 1}
        out["client"] = {"established": conns, "fds": server_fds, "threads": 8, "rss_bytes": rss}
    else:
        out["server"] = out["client"] = None
    if held is not None:
        out["calls"] = {
            "loops": held, "calls_ok": held, "errors": errors or {}, "held_channels": held,
            "open_channels": held, "capped": False,
        }  # fmt: skip
    if first_error:
        out["first_error"] = first_error
    return out


SETTINGS_ERROR = {
    "code": "UNAVAILABLE",
    "details": "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
    "connection attempt timed out before receiving SETTINGS frame",
    "at_s": 4.5,
}


def test_connections_growing_with_held_channels_is_a_leak_before_the_limit():
    samples = [sample(t, held=60 * t, conns=60 * t) for t in range(1, 5)]
    result = judge_cell(samples)
    assert result["verdict"] == "leak"
    assert "240 held channels cost the server 240 ESTABLISHED connections" in result["reason"]
    assert "below the fd limit 256" in result["reason"]
    assert result["figures"]["fd_limit_reached_s"] is None


def test_plateau_at_the_fd_limit_with_errors_is_a_leak_and_says_when():
    samples = [sample(1, held=100, conns=100), sample(2, held=200, conns=200)]
    samples += [
        sample(
            t, held=246 + t, conns=248, errors={"UNAVAILABLE": t - 3}, first_error=SETTINGS_ERROR
        )
        for t in range(3, 9)
    ]
    result = judge_cell(samples)
    figures = result["figures"]
    assert result["verdict"] == "leak"
    assert figures["fd_limit_reached_s"] == 3
    assert figures["server_fds"] == {"start": 108, "peak": 256, "end": 256}
    assert figures["errors"] == {"UNAVAILABLE": 5}
    assert "fd limit 256 reached at 3 s, 5 calls failed" in result["reason"]
    assert "before receiving SETTINGS frame" in result["reason"]


def test_fds_pinned_at_the_limit_is_a_leak_even_when_held_channels_outnumber_connections():
    """At the limit, failed channels keep piling up on the client: the ratio falls, fds say it."""
    samples = [sample(t, held=900 + t, conns=248) for t in range(1, 5)]
    assert 248 < LEAK_CONNECTIONS_PER_HELD * 904
    assert judge_cell(samples)["verdict"] == "leak"


def test_held_channels_on_one_shared_connection_are_masked():
    samples = [sample(t, held=80 * t, conns=1, rss=50_000_000 + 1_000_000 * t) for t in range(1, 6)]
    result = judge_cell(samples)
    assert result["verdict"] == "masked"
    assert "400 held channels share 1 TCP connection" in result["reason"]
    assert "shared subchannel pool" in result["reason"]
    assert "client RSS +3.8 MiB" in result["reason"]


def test_connections_the_server_closes_when_idle_are_masked():
    conns = [60, 140, 150, 145, 140, 0, 0]
    samples = [sample(t + 1, held=min(1000, 100 * (t + 1)), conns=c) for t, c in enumerate(conns)]
    result = judge_cell(samples)
    assert result["verdict"] == "masked"
    assert "server closed idle connections (peak 150, 0 at the end)" in result["reason"]
    assert "held 700 channels" in result["reason"]


def test_closed_channels_are_healthy():
    result = judge_cell([sample(t, held=0, conns=0) for t in range(1, 5)])
    assert result["verdict"] == "healthy"
    assert result["reason"].startswith("healthy: 0 channel(s) open at the end")


def test_a_reused_channel_with_noisy_readings_is_healthy():
    """A sample may catch a second connection during a reconnect: still one channel held."""
    result = judge_cell([sample(t, held=1, conns=c) for t, c in enumerate([1, 2, 1, 0, 1], 1)])
    assert result["verdict"] == "healthy"
    assert result["figures"]["server_connections"]["peak"] == 2


def test_healthy_cells_say_when_calls_failed():
    samples = [sample(1, held=1, conns=1), sample(2, held=1, conns=0, errors={"UNAVAILABLE": 3},
                                                  first_error=SETTINGS_ERROR)]  # fmt: skip
    result = judge_cell(samples)
    assert result["verdict"] == "healthy"
    assert "3 calls failed (first error UNAVAILABLE at 4.5 s" in result["reason"]


def test_missing_samples_are_skipped():
    """The client's first second (no counts yet) and a failed reading change nothing."""
    samples = [
        sample(1, held=None, conns=0),
        sample(2, held=100, conns=100),
        sample(3, held=150, conns=None),
        sample(4, held=200, conns=200),
        {"t_s": 5},
    ]
    result = judge_cell(samples)
    assert result["verdict"] == "leak"
    assert result["figures"]["server_connections"] == {"start": 0, "peak": 200, "end": 200}
    assert result["figures"]["held_channels"] == 200


@pytest.mark.parametrize(
    "samples",
    [[], [sample(1, held=None, conns=10)], [sample(1, held=100, conns=None)], [{"t_s": 1}]],
    ids=["none", "no-client-counts", "no-server-figures", "empty-sample"],
)
def test_without_both_sides_the_verdict_is_unknown(samples):
    assert judge_cell(samples)["verdict"] == "unknown"


@pytest.mark.parametrize(
    ("held", "conns", "expected"),
    [
        (MIN_HELD_CHANNELS - 1, MIN_HELD_CHANNELS - 1, "healthy"),
        (MIN_HELD_CHANNELS, int(MIN_HELD_CHANNELS * LEAK_CONNECTIONS_PER_HELD), "leak"),
        (MIN_HELD_CHANNELS, int(MIN_HELD_CHANNELS * LEAK_CONNECTIONS_PER_HELD) - 1, "masked"),
        (MIN_HELD_CHANNELS, SHARED_CONNECTIONS_MAX, "masked"),
    ],
)
def test_thresholds(held, conns, expected):
    assert judge_cell([sample(1, held=held, conns=conns)])["verdict"] == expected


def test_fds_within_the_margin_count_as_at_the_limit():
    near = LIMIT - FD_LIMIT_MARGIN
    assert cell_figures([sample(1, held=10, conns=10, fds=near)])["fd_limit_reached_s"] == 1
    assert cell_figures([sample(1, held=10, conns=10, fds=near - 1)])["fd_limit_reached_s"] is None


def test_recovery_after_the_client_exits():
    samples = [sample(t, held=248, conns=248) for t in (1, 2)]
    samples += [
        {**sample(3, held=248, conns=0, phase="recovery"), "since_client_exit_s": 0.1},
        {**sample(4, held=248, conns=0, phase="recovery"), "since_client_exit_s": 1.1},
    ]
    figures = cell_figures(samples)
    assert figures["recovered_s"] == 0.1
    assert figures["server_after_exit"] == {"established": 0, "fds": BASE_FDS}
    # Recovery samples are not the load: the verdict is judged on the load's connections.
    assert figures["server_connections"]["end"] == 248
    assert judge_cell(samples)["verdict"] == "leak"


def test_no_recovery_is_said():
    samples = [
        sample(1, held=248, conns=248),
        {**sample(2, held=248, conns=3, phase="recovery"), "since_client_exit_s": 0.0},
    ]
    assert cell_figures(samples)["recovered_s"] is None


def test_rules_sentence_quotes_the_thresholds():
    for number in (MIN_HELD_CHANNELS, FD_LIMIT_MARGIN, SHARED_CONNECTIONS_MAX):
        assert str(number) in RULES
    assert f"{LEAK_CONNECTIONS_PER_HELD:g}" in RULES


def test_held_channels_and_connections_are_compared_in_the_same_sample():
    """The client's final count (written as it exits) is not set against an older reading."""
    samples = [sample(1, held=100, conns=100), sample(2, held=300, conns=None)]
    figures = cell_figures(samples)
    assert (figures["held_channels"], figures["server_connections_with_held"]) == (100, 100)
    assert figures["held_channels_at_exit"] == 300
    assert judge_cell(samples)["verdict"] == "leak"
