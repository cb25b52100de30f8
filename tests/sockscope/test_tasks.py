"""Tests for sockscope.tasks: await chains of real coroutines, grouping of literal stacks."""

import asyncio

from sockscope.tasks import (
    CoroFrame,
    TaskStack,
    await_chain,
    format_groups,
    group_stacks,
    group_tasks,
)


async def leaf(event: asyncio.Event) -> None:
    await event.wait()


async def middle(event: asyncio.Event) -> None:
    await leaf(event)


async def outer(event: asyncio.Event) -> None:
    await middle(event)


def stack(name: str, *chain: str) -> TaskStack:
    """A literal stack: qualnames only."""
    return TaskStack(name, tuple(CoroFrame(qualname) for qualname in chain))


async def test_await_chain_walks_cr_await_to_the_future() -> None:
    """The chain names every coroutine from the task's own to the innermost one."""
    event = asyncio.Event()
    task = asyncio.create_task(outer(event))
    await asyncio.sleep(0)
    try:
        frames = await_chain(task.get_coro())
        assert [f.qualname for f in frames] == ["outer", "middle", "leaf", "Event.wait"]
        assert frames[0].location is not None
        # Suspended on its only line, the one after its def.
        assert frames[0].location.endswith(f"test_tasks.py:{outer.__code__.co_firstlineno + 1}")
    finally:
        event.set()
        await task


async def test_group_tasks_counts_identical_chains_largest_first() -> None:
    """40 tasks in one place and 2 in another: two groups, the 40 first."""
    event = asyncio.Event()
    tasks = [asyncio.create_task(outer(event)) for _ in range(40)]
    tasks += [asyncio.create_task(leaf(event)) for _ in range(2)]
    await asyncio.sleep(0)
    try:
        groups = group_tasks(tasks)
        assert [(g.count, g.chain) for g in groups] == [
            (40, ("outer", "middle", "leaf", "Event.wait")),
            (2, ("leaf", "Event.wait")),
        ]
    finally:
        event.set()
        await asyncio.gather(*tasks)


def test_await_chain_of_something_else_is_empty() -> None:
    """An awaitable that is not a coroutine has no chain."""
    assert await_chain(object()) == ()


def test_group_stacks_orders_by_count_then_chain() -> None:
    """Ties are broken by the chain, so dumps are stable."""
    stacks = [stack("a", "b", "x"), stack("b", "a", "x"), stack("c", "b", "x"), stack("d", "a")]
    groups = group_stacks(stacks)
    assert [(g.count, g.chain) for g in groups] == [(2, ("b", "x")), (1, ("a",)), (1, ("a", "x"))]
    assert groups[0].example.name == "a"


def test_format_groups_aligns_counts_and_says_how_many_more() -> None:
    """Go's form, ``N @ a > b``; past the limit, one line for the rest."""
    stacks = [stack("t", "serve", "read")] * 40 + [stack("t", "main")] * 2 + [stack("t", "x")]
    assert format_groups(group_stacks(stacks), limit=2) == [
        "40 @ serve > read",
        " 2 @ main",
        "... and 1 more tasks in 1 groups",
    ]
