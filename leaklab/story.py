"""What a story is, and the table of stories chosen by name.

A story is one module behind one small interface (:class:`Story`): its matrix of cells, how a
cell starts its server side and its client side and samples them every second, the rules that
turn the samples into a verdict, the outcome it expects of each cell, and how its report
section looks (table columns and charts). The runner, the report and the command line know
nothing else about it. Adding a story is adding a module and a line to :data:`STORIES`, the
way uvicorn picks its ``*_impl.py`` modules from a table.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NotRequired, Protocol, TypeAlias, TypedDict

from leaklab.errors import UnknownStory

__all__ = [
    "STORIES",
    "VERDICTS",
    "CellResult",
    "CellRun",
    "CellSummary",
    "Chart",
    "Column",
    "Json",
    "LabOptions",
    "MutableSample",
    "RunInfo",
    "Sample",
    "Scope",
    "Story",
    "load_story",
]

VERDICTS = ("leak", "masked", "healthy", "unknown")
Verdict = Literal["leak", "masked", "healthy", "unknown"]
Scope = Literal["quick", "default", "full"]

# A value json.dumps writes as it is (what settings.json and summary.json hold).
Json: TypeAlias = "str | int | float | bool | Sequence[Json] | Mapping[str, Json] | None"
# One per-second sample of a cell: JSON-ready figures; what is in it is the story's. Read-only
# here (the runner, the report and the charts only read samples), so that a story may give its
# samples a TypedDict of their own; a story without one builds them as ``MutableSample``.
Sample: TypeAlias = Mapping[str, Any]
MutableSample: TypeAlias = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class LabOptions:
    """Load and timing every cell of a run shares (a story may ignore what it has no use for)."""

    duration_s: float = 60.0
    clients: int = 20
    interval_s: float = 0.1
    size_bytes: int = 4096
    event_rate: float = 5.0
    amqp_url: str | None = None


class CellResult(TypedDict):
    """What a story's rules make of one cell's samples."""

    figures: dict[str, Any]
    verdict: Verdict
    reason: str


class CellRun(TypedDict):
    """What running a cell returns: its samples and the exact settings of what it started."""

    samples: Sequence[Sample]
    processes: Mapping[str, Json]


class RunInfo(TypedDict):
    """What ran, at the top of ``summary.json`` and of the reports (and how to repeat it)."""

    command: str
    started_at: str
    duration_s: float
    clients: int
    interval_s: float
    size_bytes: int
    event_rate: float
    source: Literal["rabbitmq", "embedded"]
    host: str
    python: str
    versions: dict[str, str]
    cpus: int | None
    interrupted: NotRequired[bool]


class CellSummary(TypedDict):
    """One entry of ``summary.json``'s ``cells``."""

    story: str
    name: str
    label: str
    settings: dict[str, str]
    processes: Mapping[str, Json]
    figures: dict[str, Any]
    verdict: Verdict
    reason: str
    expected: Verdict
    surprise: bool


class Cell(Protocol):
    """One experiment of a story: a name (usable as a file name), a label, its axes."""

    @property
    def name(self) -> str: ...

    @property
    def label(self) -> str: ...

    def settings(self) -> dict[str, str]:
        """The cell's axes, as written to summary.json."""
        ...


@dataclasses.dataclass(frozen=True)
class Column:
    """A column of a story's report table: a header and the text of one cell's figures."""

    header: str
    text: Callable[[dict[str, Any]], str]


@dataclasses.dataclass(frozen=True)
class Chart:
    """A chart of a story: every cell on shared axes, one line per cell."""

    name: str  # file name without the story prefix and .png
    title: str
    unit: str
    value: Callable[[Sample], float | None]


class Story(Protocol):
    """The interface every story module exposes as ``STORY``."""

    name: str
    title: str
    summary: str
    rules: str

    # Read-only, so that a story may give them as a dict or a tuple.
    @property
    def axes(self) -> Mapping[str, tuple[str, ...]]:
        """Axes a run may narrow with ``--only AXIS=V1,V2``: name -> valid values."""
        ...

    @property
    def columns(self) -> Sequence[Column]:
        """The figures of a cell in the results table, in order."""
        ...

    @property
    def charts(self) -> Sequence[Chart]:
        """The charts of the report, one per figure over time."""
        ...

    def matrix(
        self, scope: Scope, only: Mapping[str, tuple[str, ...]] | None = None
    ) -> Sequence[Any]:
        """The cells of a run: ``quick`` (the demo's), ``default`` or ``full``."""
        ...

    def expected(self, cell: Any) -> Verdict:
        """What the story predicts for ``cell``."""
        ...

    async def run_cell(
        self,
        cell: Any,
        options: LabOptions,
        logs: Path,
        on_sample: Callable[[Sample], None],
    ) -> CellRun:
        """Start the cell's processes, sample them every second, stop them all."""
        ...

    def judge(self, cell: Any, samples: Sequence[Sample]) -> CellResult:
        """The cell's figures and verdict, by the story's rules."""
        ...

    def live(self, sample: Sample) -> str:
        """The key figures of one sample on one line, for the progress display."""
        ...


# Story name -> module that defines ``STORY``; imported only when chosen.
STORIES = {
    "ws-read-handler": "leaklab.stories.ws_read_handler",
    "ws-unclosed": "leaklab.stories.ws_unclosed",
    "grpc-unclosed": "leaklab.stories.grpc_unclosed",
    "http-keepalive": "leaklab.stories.http_keepalive",
}


def load_story(name: str) -> Story:
    """The story called ``name``; raise :class:`UnknownStory` with the valid names."""
    try:
        module_name = STORIES[name]
    except KeyError:
        raise UnknownStory(
            f"unknown story {name!r}: expected one of {', '.join(STORIES)}"
        ) from None
    story: Story = importlib.import_module(module_name).STORY
    return story
