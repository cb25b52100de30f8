"""Tests for leakguard.snapshot: differences by identity, on literal entries."""

from leakguard.snapshot import EMPTY, Snapshot
from sockscope.fds import Fd
from sockscope.process import ChildProcess


def test_difference_is_by_identity_not_by_count() -> None:
    """An fd number reused by a new socket is new; a child with a reused pid is new."""
    before = Snapshot(
        processes={(10, 100): ChildProcess(10, 100, "S", "sleep 1")},
        fds={(5, "socket:[1]"): Fd(5, "socket:[1]", "socket", 1)},
    )
    after = Snapshot(
        processes={(10, 200): ChildProcess(10, 200, "S", "sleep 2")},
        fds={(5, "socket:[2]"): Fd(5, "socket:[2]", "socket", 2)},
    )
    left = after - before
    assert list(left.processes) == [(10, 200)]
    assert list(left.fds) == [(5, "socket:[2]")]
    assert left.socket_inodes == {2}


def test_a_child_that_changed_state_is_the_same_child() -> None:
    """Running then zombie: same pid and start time, so not new."""
    before = Snapshot(processes={(10, 100): ChildProcess(10, 100, "S", "sleep 1")})
    after = Snapshot(processes={(10, 100): ChildProcess(10, 100, "Z", "sleep")})
    assert not after - before


def test_union_and_empty() -> None:
    """Owned resources accumulate; the empty snapshot is false."""
    a = Snapshot(fds={(3, "/a"): Fd(3, "/a", "file")})
    b = Snapshot(fds={(4, "/b"): Fd(4, "/b", "file")})
    assert set((a | b).fds) == {(3, "/a"), (4, "/b")}
    assert not EMPTY
    assert not (a | b) - a - b
