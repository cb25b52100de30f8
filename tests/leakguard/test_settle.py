"""Tests for leakguard.settle: the backoff schedule and the retry loop, with a fake clock."""

import itertools

import pytest

from leakguard.settle import backoff_delays, settle


def test_backoff_doubles_from_10_ms_and_adds_up_to_1_s() -> None:
    """10, 20, 40 ... ms, the last cut so that the whole wait is 1 s, as goleak's is."""
    delays = backoff_delays()
    assert delays[:3] == [0.01, 0.02, 0.04]
    assert sum(delays) == pytest.approx(1.0)
    # Doubling until the cut: only the last delay may be shorter than the one before.
    assert all(b == 2 * a for a, b in itertools.pairwise(delays[:-1]))


def test_no_settle_means_no_delays() -> None:
    """A total of 0 s: look once and decide."""
    assert backoff_delays(total_s=0) == []


def test_settle_stops_at_the_first_clean_look() -> None:
    """Looks until clean; waits only between looks that were not."""
    looks = iter([3, 2, 0, 0])
    waits: list[float] = []
    assert settle(lambda: next(looks), lambda n: n == 0, waits.append, [0.01, 0.02, 0.04]) == 0
    assert waits == [0.01, 0.02]


def test_settle_clean_at_once_waits_for_nothing() -> None:
    """The common case costs one look and no wait."""
    waits: list[float] = []
    assert settle(lambda: 0, lambda n: n == 0, waits.append, [0.01]) == 0
    assert waits == []


def test_settle_gives_the_last_look_when_never_clean() -> None:
    """After the last delay the last look is the answer."""
    looks = iter([5, 4, 3])
    waits: list[float] = []
    assert settle(lambda: next(looks), lambda n: n == 0, waits.append, [0.01, 0.02]) == 3
    assert waits == [0.01, 0.02]
