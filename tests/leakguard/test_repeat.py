"""Tests for leakguard.repeat: growth at every run, on literal figures."""

from leakguard.findings import Growth
from leakguard.repeat import Sample, growth


def test_a_figure_that_grows_at_every_run_is_reported() -> None:
    """One more fd after each run: fds grow; tasks stay; RSS wobbles."""
    samples = [Sample(40 + i, 3, rss) for i, rss in enumerate([100, 104, 100, 108])]
    assert growth(samples) == [Growth("fds", (40, 41, 42, 43))]


def test_growth_that_stops_is_not_a_leak() -> None:
    """A cache filled over two runs, then level: not reported."""
    samples = [Sample(40, 3, 100), Sample(41, 3, 104), Sample(41, 3, 108)]
    assert growth(samples) == [Growth("rss_bytes", (100, 104, 108))]


def test_one_sample_says_nothing() -> None:
    """Growth needs two runs to compare."""
    assert growth([Sample(1, 1, 1)]) == []
