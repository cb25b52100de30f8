"""The swarm's exceptions, one tree::

    PingClientError          anything the swarm raises on purpose
    ├── InvalidConfig        a swarm option has a value it cannot run with (ValueError)
    ├── UnsafeTarget         the target is not this machine's loopback (ValueError)
    └── WorkerFailed         a worker process of a multi-process swarm died or went silent

Connection failures of single clients are counted, not raised: a swarm goes on without them.
"""

from __future__ import annotations

__all__ = ["InvalidConfig", "PingClientError", "UnsafeTarget", "WorkerFailed"]


class PingClientError(Exception):
    """Base of every exception the swarm raises on purpose."""


class InvalidConfig(PingClientError, ValueError):
    """A swarm option has a value the swarm cannot run with; the message names the option."""


class UnsafeTarget(PingClientError, ValueError):
    """The swarm was aimed at a host that is not this machine's loopback."""


class WorkerFailed(PingClientError):
    """A worker of a multi-process swarm ended before it was asked to, or without a summary.

    The message names the worker, its pid, how it ended and its last lines of stderr; the
    other workers have been stopped and every worker reaped by then.
    """
