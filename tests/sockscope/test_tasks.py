"""Tests for sockscope.tasks: real tasks parked in known places, grouped by their await chain;
grouping, formatting and parsing of literal stacks and dumps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sockscope.tasks import (
    CoroFrame,
    StackGroup,
    TaskStack,
    await_chain,
    format_groups,
    format_stacks,
    group_stacks,
    group_tasks,
    parse_dump,
    render_dump,
    task_stack,
)


async def leaf(event: asyncio.Event) -> None:
    await event.wait()


async def middle_of(event: asyncio.Event) -> None:
    await leaf(event)


async def outer_of(event: asyncio.Event) -> None:
    await middle_of(event)


async def wait_for_event(event: asyncio.Event) -> None:
    await event.wait()


async def get_from(queue: asyncio.Queue[int]) -> None:
    await queue.get()


async def outer(queue: asyncio.Queue[int]) -> None:
    await middle(queue)


async def middle(queue: asyncio.Queue[int]) -> None:
    await get_from(queue)


async def ticks(event: asyncio.Event) -> AsyncIterator[int]:
    while True:
        await event.wait()
        yield 1


async def iterate(event: asyncio.Event) -> None:
    async for _ in ticks(event):
        pass


async def await_task(task: asyncio.Task[None]) -> None:
    await task


async def await_future(future: asyncio.Future[None]) -> None:
    await future


def stack(name: str, *chain: str) -> TaskStack:
    """A literal stack: qualnames only."""
    return TaskStack(name, tuple(CoroFrame(qualname) for qualname in chain))


async def parked(*coros: object) -> list[asyncio.Task[None]]:
    """Start the coroutines as tasks and let each run to its first suspension."""
    tasks = [asyncio.create_task(coro) for coro in coros]  # type: ignore[arg-type]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return tasks


async def cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# The walker


async def test_await_chain_walks_cr_await_to_the_future() -> None:
    """The chain names every coroutine from the task's own to the innermost one."""
    event = asyncio.Event()
    tasks = await parked(outer_of(event))
    try:
        frames = await_chain(tasks[0].get_coro())
        assert [f.qualname for f in frames] == ["outer_of", "middle_of", "leaf", "Event.wait"]
        assert frames[0].location is not None
        # Suspended on its only line, the one after its def.
        line = outer_of.__code__.co_firstlineno + 1
        assert frames[0].location.endswith(f"test_tasks.py:{line}")
    finally:
        await cancel(tasks)


def test_await_chain_of_something_else_is_empty() -> None:
    """An awaitable that is not a coroutine has no chain."""
    assert await_chain(object()) == ()


async def test_chain_follows_coroutines_down_to_the_future() -> None:
    """The stack's coroutines, and the Future at the bottom as its end."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    tasks = await parked(outer(queue))
    try:
        found = task_stack(tasks[0])
        assert found.chain == ("outer", "middle", "get_from", "Queue.get")
        assert found.end == "Future"
        assert found.chain_with_end == ("outer", "middle", "get_from", "Queue.get", "Future")
    finally:
        await cancel(tasks)


async def test_chain_goes_through_async_for_into_the_generator() -> None:
    """``async for`` awaits an ``asend`` wrapper: the chain goes on into the generator."""
    event = asyncio.Event()
    tasks = await parked(iterate(event))
    try:
        assert task_stack(tasks[0]).chain_with_end == ("iterate", "ticks", "Event.wait", "Future")
    finally:
        await cancel(tasks)


async def test_chain_stops_at_an_awaited_task_and_at_a_bare_future() -> None:
    """An awaited Task ends the chain (it has its own), as a bare Future does."""
    event = asyncio.Event()
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    inner = await parked(wait_for_event(event))
    tasks = await parked(await_task(inner[0]), await_future(future))
    try:
        assert task_stack(tasks[0]).chain_with_end == ("await_task", "Task")
        assert task_stack(tasks[1]).chain_with_end == ("await_future", "Future")
    finally:
        await cancel([*tasks, *inner])


async def test_the_running_task_is_marked_running() -> None:
    """A running coroutine awaits nothing yet: its outermost coroutine, then ``(running)``."""
    current = asyncio.current_task()
    assert current is not None
    found = task_stack(current)
    assert len(found.frames) == 1
    assert found.end == "(running)"
    assert found.chain_with_end[-1] == "(running)"


async def test_frames_say_where_each_coroutine_is_suspended() -> None:
    """Every coroutine has its file and line; the end has none."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    tasks = await parked(outer(queue))
    try:
        found = task_stack(tasks[0])
        assert found.frames[0].filename == __file__
        assert all(frame.lineno is not None for frame in found.frames)
        assert found.state == "pending"
    finally:
        await cancel(tasks)


# Grouping


async def test_group_tasks_counts_identical_chains_largest_first() -> None:
    """40 tasks in one place and 2 in another: two groups, the 40 first."""
    event = asyncio.Event()
    tasks = await parked(*(outer_of(event) for _ in range(40)), *(leaf(event) for _ in range(2)))
    try:
        groups = group_tasks(tasks)
        assert [(g.count, g.chain) for g in groups] == [
            (40, ("outer_of", "middle_of", "leaf", "Event.wait")),
            (2, ("leaf", "Event.wait")),
        ]
    finally:
        await cancel(tasks)


async def test_groups_with_ends_count_tasks_parked_in_the_same_place() -> None:
    """The dump's grouping: chains with their ends, largest first."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    event = asyncio.Event()
    tasks = await parked(
        *(outer(queue) for _ in range(5)),
        *(wait_for_event(event) for _ in range(3)),
        iterate(event),
    )
    try:
        groups = group_tasks(tasks, with_end=True)
        assert groups == [
            StackGroup(5, ("outer", "middle", "get_from", "Queue.get", "Future")),
            StackGroup(3, ("wait_for_event", "Event.wait", "Future")),
            StackGroup(1, ("iterate", "ticks", "Event.wait", "Future")),
        ]
        assert format_groups(groups)[0] == "5 @ outer > middle > get_from > Queue.get > Future"
    finally:
        await cancel(tasks)


def test_group_stacks_orders_by_count_then_chain() -> None:
    """Ties are broken by the chain, so dumps are stable."""
    stacks = [stack("a", "b", "x"), stack("b", "a", "x"), stack("c", "b", "x"), stack("d", "a")]
    groups = group_stacks(stacks)
    assert [(g.count, g.chain) for g in groups] == [(2, ("b", "x")), (1, ("a",)), (1, ("a", "x"))]
    assert groups[0].example is not None
    assert groups[0].example.name == "a"


# Formatting


def test_format_groups_aligns_counts_and_says_how_many_more() -> None:
    """Go's form, ``N @ a > b``; past the limit, one line for the rest."""
    stacks = [stack("t", "serve", "read")] * 40 + [stack("t", "main")] * 2 + [stack("t", "x")]
    assert format_groups(group_stacks(stacks), limit=2, aligned=True) == [
        "40 @ serve > read",
        " 2 @ main",
        "... and 1 more tasks in 1 groups",
    ]


def test_long_chains_keep_their_first_and_last_links() -> None:
    """Past ``max_frames``, the first link, ``...``, and the last ones."""
    group = StackGroup(40, ("run_asgi", "a", "b", "c", "subscribe", "write_events", "next"))
    assert format_groups([group], max_frames=4) == ["40 @ run_asgi > ... > subscribe > "
                                                    "write_events > next"]  # fmt: skip
    assert format_groups([group], max_frames=7) == [
        "40 @ run_asgi > a > b > c > subscribe > write_events > next"
    ]
    assert format_groups([StackGroup(1, ())]) == ["1 @ ?"]


async def test_stacks_list_every_task_with_its_links() -> None:
    """``debug=2``'s body: a header per task with its state, a line per link with file:line."""
    event = asyncio.Event()
    tasks = await parked(wait_for_event(event), wait_for_event(event))
    try:
        lines = format_stacks(task_stack(task) for task in tasks)
        assert sum(line.startswith("task ") and "[pending]" in line for line in lines) == 2
        assert sum(line.strip().startswith("wait_for_event  ") for line in lines) == 2
        assert any(f"{__file__}:" in line for line in lines)
        assert sum(line == "    Future" for line in lines) == 2
    finally:
        await cancel(tasks)


# The dump


async def test_dump_has_a_total_then_groups_or_stacks() -> None:
    """``debug=1``: the total and the groups; ``debug=2``: the total and every stack."""
    event = asyncio.Event()
    tasks = await parked(*(wait_for_event(event) for _ in range(4)))
    try:
        grouped = render_dump(tasks).splitlines()
        assert grouped == ["tasks: total 4", "", "4 @ wait_for_event > Event.wait > Future"]
        stacks = render_dump(tasks, debug=2)
        assert stacks.startswith("tasks: total 4\n\ntask ")
        assert stacks.count("Event.wait") == 4
    finally:
        await cancel(tasks)


async def test_a_dump_parses_back_into_its_groups() -> None:
    """What :func:`render_dump` writes, :func:`parse_dump` reads back; garbage gives nothing."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    event = asyncio.Event()
    tasks = await parked(*(outer(queue) for _ in range(2)), wait_for_event(event))
    try:
        assert parse_dump(render_dump(tasks)) == (3, group_tasks(tasks, with_end=True))
        assert parse_dump("garbage\n") == (None, [])
    finally:
        await cancel(tasks)
