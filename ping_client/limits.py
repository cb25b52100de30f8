"""The kernel limits a swarm plans with (a short shell): the fd limit and the port range."""

from __future__ import annotations

import resource

from ping_client.plan import Limits
from sockscope.kernel import read_port_range

__all__ = ["raise_fd_limit", "read_limits"]


def raise_fd_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return soft
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def read_limits() -> Limits:
    """The fd hard limit of this process and the ephemeral port range of its namespace."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20  # the kernel's nr_open default caps any process anyway
    return Limits(fd_hard_limit=hard, port_range=read_port_range())
