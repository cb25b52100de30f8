"""The ws-unclosed story's matrix: which cells a run has, and what each is expected to show."""

from __future__ import annotations

import dataclasses
import itertools

# How the client handles the connection of each request (see :mod:`.client`).
CLIENTS = ("unclosed", "closed", "reused")
# MAX_SESSIONS: the service's cap derived from its fd limit, or one above the limit, which is
# what a service without a cap does.
MAX_SESSIONS = ("auto", "100000")
AXES = {"client": CLIENTS, "max_sessions": MAX_SESSIONS}

# Quick cells: a low fd limit and a fast loop reach the limit in about 2 s, and the cells are
# short enough for the demo (about 7 s each with start and stop).
QUICK_FD_LIMIT = 256
QUICK_RATE_PER_S = 150.0
QUICK_DURATION_S = 6.0
# Default and full: a slower build-up, the limit in about 25 s.
FD_LIMIT = 512
RATE_PER_S = 20.0


@dataclasses.dataclass(frozen=True)
class Cell:
    """One experiment: how the client handles its connections, and the service's cap."""

    client: str  # "unclosed", "closed" or "reused"
    max_sessions: str  # "auto" or a number (MAX_SESSIONS)
    fd_limit: int = FD_LIMIT
    rate_per_s: float = RATE_PER_S
    # The cell's length at most (quick cells); None: the run's duration.
    max_duration_s: float | None = None

    @property
    def name(self) -> str:
        """A short unique name, usable as a file name."""
        return f"{self.client}_max-sessions-{self.max_sessions}_fd-{self.fd_limit}"

    @property
    def label(self) -> str:
        """A human label for tables and charts."""
        cap = "auto" if self.max_sessions == "auto" else f"{self.max_sessions} (> fd limit)"
        return f"client {self.client}, MAX_SESSIONS={cap}, fd limit {self.fd_limit}"

    @property
    def session_cap(self) -> int | None:
        """MAX_SESSIONS as the service's setting (None: derived from the fd limit)."""
        return None if self.max_sessions == "auto" else int(self.max_sessions)

    def settings(self) -> dict[str, str]:
        """The cell's axes, as written to summary.json."""
        return {
            "client": self.client,
            "max_sessions": self.max_sessions,
            "fd_limit": str(self.fd_limit),
            "rate_per_s": f"{self.rate_per_s:g}",
        }


def expected_verdict(cell: Cell) -> str:
    """An unclosed connection per request leaks; the derived session cap contains it."""
    if cell.client != "unclosed":
        return "healthy"
    return "masked" if cell.max_sessions == "auto" else "leak"


def build_matrix(
    *,
    quick: bool = False,
    full: bool = False,
    clients: tuple[str, ...] | None = None,
    max_sessions: tuple[str, ...] | None = None,
) -> list[Cell]:
    """The leak without and with the cap, and both fixes under the cap; every pair with ``full``.

    ``clients`` and ``max_sessions`` choose those axes explicitly (every pair of them).
    """
    if clients is None and max_sessions is None and not full:
        pairs = [("unclosed", "100000"), ("unclosed", "auto"), ("closed", "auto"),
                 ("reused", "auto")]  # fmt: skip
    else:
        pairs = list(itertools.product(clients or CLIENTS, max_sessions or MAX_SESSIONS))
    cells = [Cell(client, cap) for client, cap in pairs]
    if quick:
        cells = [
            dataclasses.replace(cell, fd_limit=QUICK_FD_LIMIT, rate_per_s=QUICK_RATE_PER_S,
                                max_duration_s=QUICK_DURATION_S)
            for cell in cells
        ]  # fmt: skip
    return cells
