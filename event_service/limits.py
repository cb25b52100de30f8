"""Rate limits, pure: a token bucket for ``POST /events`` and a log line bounded in rate.

Both take the time as an argument (seconds on a monotonic clock), so they are tested with
literal times and no sleeps.
"""

from __future__ import annotations

import dataclasses
import logging

__all__ = ["BoundedLog", "TokenBucket"]


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` saved up; ``rate_per_s`` 0: unlimited."""

    def __init__(self, rate_per_s: float, burst: float, now_s: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._updated_s = now_s

    def take(self, now_s: float) -> float:
        """Take one token: 0.0 if allowed, else the seconds until one is available."""
        if self.rate_per_s <= 0:
            return 0.0
        elapsed_s = max(0.0, now_s - self._updated_s)
        self._tokens = min(self.burst, self._tokens + elapsed_s * self.rate_per_s)
        self._updated_s = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate_per_s


@dataclasses.dataclass
class BoundedLog:
    """Logs one line per ``every_s`` at most; the lines in between are counted, not lost.

    A flood of refused clients must not become a flood of log lines: the first one is logged
    at once, the next ones are summed into the following line as ``suppressed=N``.
    """

    logger: logging.Logger
    every_s: float
    level: int = logging.WARNING
    _last_s: float | None = None
    _suppressed: int = 0

    def log(self, now_s: float, message: str, *args: object) -> bool:
        """Log ``message % args`` unless a line was logged less than ``every_s`` ago."""
        if self._last_s is not None and now_s - self._last_s < self.every_s:
            self._suppressed += 1
            return False
        suppressed, self._suppressed = self._suppressed, 0
        self._last_s = now_s
        self.logger.log(self.level, message + " suppressed=%d", *args, suppressed)
        return True
