"""The grpc-unclosed story's matrix: which cells a run has, and what each is expected to show.

Axes: how the client treats its channels (``client``), grpc's subchannel pool (``pool``),
the server's idle-connection timeout (``server_idle``), and how long a new connection waits
for the server's SETTINGS frame (``connect_timeout``, which decides the error a new client
sees at the fd limit).
"""

from __future__ import annotations

import dataclasses
import itertools

from leaklab.stories.grpc_unclosed.protocol import CLIENT_MODES, POOLS

LEAK = "leak-per-call-held"
SERVER_IDLES = {"off": 0, "1s": 1000}  # grpc.max_connection_idle_ms
# "1s": UNAVAILABLE "... before receiving SETTINGS frame" within the 2 s call deadline;
# "20s" is grpc's own minimum connect timeout: the call's deadline expires first.
CONNECT_TIMEOUTS = {"1s": 1000, "20s": 0}

# The quick matrix: its cells and their seconds of load (the fd limit is reached in seconds).
QUICK_LOAD_S = {
    (LEAK, "local"): 8.0,
    (LEAK, "shared"): 5.0,
    ("close-each", "local"): 4.0,
    ("reuse-one", "local"): 4.0,
}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One experiment: the client's channel handling against one soda server."""

    client: str  # one of CLIENT_MODES
    pool: str  # "shared" (grpc's default) or "local"
    server_idle: str = "off"  # a key of SERVER_IDLES
    connect_timeout: str = "1s"  # a key of CONNECT_TIMEOUTS
    load_s: float | None = None  # seconds of load; None: the run's duration

    @property
    def name(self) -> str:
        """A short unique name, usable as a file name."""
        return (
            f"{self.client}_pool-{self.pool}_idle-{self.server_idle}_connect-{self.connect_timeout}"
        )

    @property
    def label(self) -> str:
        """A human label for tables and charts."""
        parts = [self.client, f"{self.pool} subchannel pool"]
        if self.server_idle != "off":
            parts.append(f"server idle timeout {self.server_idle}")
        if self.connect_timeout != "1s":
            parts.append(f"connect timeout {self.connect_timeout}")
        return ", ".join(parts)

    def settings(self) -> dict[str, str]:
        """The cell's axes, as written to summary.json."""
        return {
            "client": self.client,
            "pool": self.pool,
            "server_idle": self.server_idle,
            "connect_timeout": self.connect_timeout,
        }

    @property
    def max_connection_idle_ms(self) -> int:
        """The server's ``grpc.max_connection_idle_ms`` (0: off)."""
        return SERVER_IDLES[self.server_idle]

    @property
    def connect_timeout_ms(self) -> int:
        """The client's minimum connect timeout (0: grpc's default, 20 s)."""
        return CONNECT_TIMEOUTS[self.connect_timeout]


def expected_verdict(cell: Cell) -> str:
    """Held channels leak one connection each with the local pool, unless the server reaps idle
    ones; the shared pool hides them behind one connection; closing or reusing is healthy."""
    if cell.client != LEAK:
        return "healthy"
    if cell.pool == "shared" or cell.server_idle != "off":
        return "masked"
    return "leak"


AXES = {
    "client": CLIENT_MODES,
    "pool": POOLS,
    "server_idle": tuple(SERVER_IDLES),
    "connect_timeout": tuple(CONNECT_TIMEOUTS),
}


def build_matrix(
    scope: str = "default", only: dict[str, tuple[str, ...]] | None = None
) -> list[Cell]:
    """The cells of a run.

    - quick: the leak (local pool), the trap (shared pool), close-each and reuse-one, each
      for a few seconds (:data:`QUICK_LOAD_S`);
    - default: every client with each pool, plus the leak with the server's idle timeout;
    - full: client x pool x server idle timeout, plus the leak with grpc's 20 s connect
      timeout (a new client then sees DEADLINE_EXCEEDED instead of UNAVAILABLE).

    ``only`` keeps the cells whose axes take one of the listed values.
    """
    if scope == "quick":
        cells = [Cell(client, pool, load_s=s) for (client, pool), s in QUICK_LOAD_S.items()]
    else:
        idles = tuple(SERVER_IDLES) if scope == "full" else ("off",)
        cells = [
            Cell(client, pool, idle)
            for idle, client, pool in itertools.product(idles, CLIENT_MODES, POOLS)
        ]
        if scope != "full":
            cells.append(Cell(LEAK, "local", "1s"))
        else:
            cells.append(Cell(LEAK, "local", connect_timeout="20s"))
    only = only or {}
    return [
        cell
        for cell in cells
        if all(value in only.get(axis, (value,)) for axis, value in cell.settings().items())
    ]
