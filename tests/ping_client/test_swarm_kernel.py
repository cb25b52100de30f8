"""The spacing of the swarm's socket-table reads: a bounded share of the time, within limits."""

import pytest

from ping_client.swarm import (
    KERNEL_READ_MAX_SPACING_S,
    KERNEL_READ_MIN_SPACING_S,
    KERNEL_READ_SHARE,
    kernel_read_spacing_s,
)


def test_a_cheap_read_is_repeated_at_every_one_second_sample():
    assert kernel_read_spacing_s(0.001) == KERNEL_READ_MIN_SPACING_S <= 1.0


def test_a_costly_read_is_spaced_to_keep_its_share_of_the_time():
    read_s = 0.1  # about what 10,000 sockets take
    spacing_s = kernel_read_spacing_s(read_s)
    assert spacing_s == pytest.approx(read_s / KERNEL_READ_SHARE)
    assert read_s / spacing_s == pytest.approx(KERNEL_READ_SHARE)


def test_a_very_slow_read_is_still_repeated_at_the_longest_spacing():
    assert kernel_read_spacing_s(5.0) == KERNEL_READ_MAX_SPACING_S


def test_spacing_never_shrinks_as_reads_get_slower():
    reads_s = [0.0, 0.005, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0]
    spacings_s = [kernel_read_spacing_s(r) for r in reads_s]
    assert spacings_s == sorted(spacings_s)
