"""A pytest plugin that fails tests which leave asyncio tasks, threads, child processes,
file descriptors or unread socket backlogs behind.

Install the package and turn it on with ``pytest --leak-guard``, the ``leak_guard`` marker or
the ``leak_guard`` fixture. The hooks live in :mod:`leakguard.plugin`; :mod:`leakguard.tasks`
groups pending tasks by await chain for any caller (a ``/debug/tasks`` endpoint, say).
"""
