"""Tests for sockscope.process: /proc text parsed on literal inputs, children read for real."""

import subprocess
import sys

from sockscope.process import (
    parse_children,
    parse_cmdline,
    parse_stat,
    parse_statm_rss_pages,
    read_children,
    read_rss_bytes,
)

# A name with a space and a parenthesis, as a process may choose: fields count from the last ")".
STAT = (
    "4242 (my (odd) name) Z 4200 4242 4200 0 -1 4227084 75 0 1 0 0 0 0 0 20 0 1 0 "
    "59035 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
)


def test_parse_stat_reads_name_state_parent_and_start_time() -> None:
    """The name may hold spaces and parentheses; start time is field 22."""
    stat = parse_stat(STAT)
    assert (stat.name, stat.state, stat.ppid, stat.start_ticks) == (
        "my (odd) name",
        "Z",
        4200,
        59035,
    )


def test_parse_children_cmdline_and_statm() -> None:
    """children: pids and spaces; cmdline: NUL-separated; statm: RSS pages second."""
    assert parse_children("101 102 \n") == [101, 102]
    assert parse_children("") == []
    assert parse_cmdline(b"sleep\x0030\x00") == "sleep 30"
    assert parse_statm_rss_pages("5000 1200 300 10 0 900 0\n") == 1200


def test_read_children_sees_a_child_until_it_is_waited_for() -> None:
    """A child is listed while it runs; once waited for, it is gone."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        found = {c.pid: c for c in read_children()}
        assert child.pid in found
        assert "sys.stdin.read()" in found[child.pid].command
        assert not found[child.pid].is_zombie
    finally:
        child.communicate(timeout=10)
    assert child.pid not in {c.pid for c in read_children()}


def test_read_rss_bytes_is_positive() -> None:
    """The resident set of a running interpreter is at least a few MiB."""
    assert read_rss_bytes() > 4 * 1024 * 1024
