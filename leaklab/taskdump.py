"""The task dump of a service the lab started, as the few lines a report quotes.

A cell fetches ``GET /debug/tasks`` while its load runs and keeps the top groups in its
samples (``sample["task_groups"]``); :func:`last_task_groups` is what the cell's figures
carry, and the report prints them under the story's table, so a user sees what piled up.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from leaklab.story import Sample
from sockscope.tasks import format_groups, parse_dump

__all__ = ["TOP_GROUPS", "fetch_task_groups", "last_task_groups", "quote_dump"]

TOP_GROUPS = 4
# A session's chain is about 30 links, 20 of them the framework's: keep its first and its end.
MAX_FRAMES = 8
TIMEOUT_S = 0.8


def quote_dump(text: str, *, top: int = TOP_GROUPS) -> list[str]:
    """The total and the ``top`` largest groups of a ``debug=1`` dump, long chains shortened."""
    total, groups = parse_dump(text)
    lines = [f"tasks: total {total}"] if total is not None else []
    return lines + format_groups(groups[:top], max_frames=MAX_FRAMES)


async def fetch_task_groups(
    http: httpx.AsyncClient, *, top: int = TOP_GROUPS, timeout_s: float = TIMEOUT_S
) -> list[str] | None:
    """The service's task dump, quoted (:func:`quote_dump`); None if it did not answer."""
    try:
        response = await http.get("/debug/tasks", timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    return quote_dump(response.text, top=top)


def last_task_groups(samples: Sequence[Sample]) -> list[str] | None:
    """The task groups of the last sample that has them."""
    return next((s["task_groups"] for s in reversed(samples) if s.get("task_groups")), None)
