"""Tests of the task dump: real tasks parked in known places, grouped by their await chain."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sockscope.taskdump import (
    StackGroup,
    await_chain,
    await_frames,
    format_groups,
    format_stacks,
    group_tasks,
    parse_dump,
    render_dump,
)


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


async def test_chain_follows_coroutines_down_to_the_future() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    tasks = await parked(outer(queue))
    try:
        assert await_chain(tasks[0]) == ("outer", "middle", "get_from", "Queue.get", "Future")
    finally:
        await cancel(tasks)


async def test_chain_goes_through_async_for_into_the_generator() -> None:
    event = asyncio.Event()
    tasks = await parked(iterate(event))
    try:
        assert await_chain(tasks[0]) == ("iterate", "ticks", "Event.wait", "Future")
    finally:
        await cancel(tasks)


async def test_chain_stops_at_an_awaited_task_and_at_a_bare_future() -> None:
    event = asyncio.Event()
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    inner = await parked(wait_for_event(event))
    tasks = await parked(await_task(inner[0]), await_future(future))
    try:
        assert await_chain(tasks[0]) == ("await_task", "Task")
        assert await_chain(tasks[1]) == ("await_future", "Future")
    finally:
        await cancel([*tasks, *inner])


async def test_the_running_task_is_marked_running() -> None:
    current = asyncio.current_task()
    assert current is not None
    # A running coroutine awaits nothing yet: the chain is its outermost coroutine only.
    chain = await_chain(current)
    assert len(chain) == 2
    assert chain[-1] == "(running)"


async def test_frames_say_where_each_coroutine_is_suspended() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    tasks = await parked(outer(queue))
    try:
        frames = await_frames(tasks[0])
        assert frames[0].filename == __file__
        assert frames[0].lineno is not None
        assert frames[-1].filename is None  # the Future has no code
    finally:
        await cancel(tasks)


async def test_groups_count_tasks_parked_in_the_same_place_largest_first() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    event = asyncio.Event()
    tasks = await parked(
        *(outer(queue) for _ in range(5)),
        *(wait_for_event(event) for _ in range(3)),
        iterate(event),
    )
    try:
        groups = group_tasks(tasks)
        assert groups == [
            StackGroup(5, ("outer", "middle", "get_from", "Queue.get", "Future")),
            StackGroup(3, ("wait_for_event", "Event.wait", "Future")),
            StackGroup(1, ("iterate", "ticks", "Event.wait", "Future")),
        ]
        assert format_groups(groups)[0] == "5 @ outer > middle > get_from > Queue.get > Future"
    finally:
        await cancel(tasks)


def test_long_chains_keep_their_first_and_last_links() -> None:
    group = StackGroup(40, ("run_asgi", "a", "b", "c", "subscribe", "write_events", "next"))
    assert format_groups([group], max_frames=4) == ["40 @ run_asgi > ... > subscribe > "
                                                    "write_events > next"]  # fmt: skip
    assert format_groups([group], max_frames=7) == [
        "40 @ run_asgi > a > b > c > subscribe > write_events > next"
    ]
    assert format_groups([StackGroup(1, ())]) == ["1 @ ?"]


async def test_stacks_list_every_task_with_its_links() -> None:
    event = asyncio.Event()
    tasks = await parked(wait_for_event(event), wait_for_event(event))
    try:
        lines = format_stacks(tasks)
        assert sum(line.startswith("task ") and "[pending]" in line for line in lines) == 2
        assert sum(line.strip().startswith("wait_for_event  ") for line in lines) == 2
        assert any(f"{__file__}:" in line for line in lines)
    finally:
        await cancel(tasks)


async def test_dump_has_a_total_then_groups_or_stacks() -> None:
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
    queue: asyncio.Queue[int] = asyncio.Queue()
    event = asyncio.Event()
    tasks = await parked(*(outer(queue) for _ in range(2)), wait_for_event(event))
    try:
        assert parse_dump(render_dump(tasks)) == (3, group_tasks(tasks))
        assert parse_dump("garbage\n") == (None, [])
    finally:
        await cancel(tasks)
