"""Tests for sockscope.fds: link targets classified, our own fds listed by inode."""

import os
import socket

import pytest

from sockscope.fds import classify_target, count_fds, read_fds


@pytest.mark.parametrize(
    ("target", "kind", "inode"),
    [
        ("socket:[41002]", "socket", 41002),
        ("pipe:[98765]", "pipe", 98765),
        ("anon_inode:[eventpoll]", "anon", None),
        ("anon_inode:[eventfd]", "anon", None),
        ("/dev/null", "device", None),
        ("/dev/pts/3", "device", None),
        ("/dev/shm/sem.lock", "file", None),
        ("/tmp/x.txt (deleted)", "file", None),
        ("/memfd:buffer (deleted)", "file", None),
        ("net:[4026531840]", "other", None),
    ],
)
def test_classify_target_gives_kind_and_inode(target: str, kind: str, inode: int | None) -> None:
    """Sockets and pipes carry their inode; paths are files, except devices outside /dev/shm."""
    assert classify_target(target) == (kind, inode)


def test_read_fds_lists_a_new_socket_by_its_inode() -> None:
    """A socket we open appears at its fd, with the inode fstat gives."""
    with socket.socket() as sock:
        entries = {entry.fd: entry for entry in read_fds()}
        entry = entries[sock.fileno()]
        assert entry.kind == "socket"
        assert entry.inode == os.fstat(sock.fileno()).st_ino


def test_count_fds_follows_open_and_close() -> None:
    """count_fds rises by one per fd opened and falls back when it is closed."""
    before = count_fds()
    read_end, write_end = os.pipe()
    try:
        assert count_fds() == before + 2
    finally:
        os.close(read_end)
        os.close(write_end)
    assert count_fds() == before
