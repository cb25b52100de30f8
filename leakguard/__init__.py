"""A pytest plugin that fails tests which leave asyncio tasks, threads, child processes, fds
or unread socket backlogs behind: ``pytest --leak-guard``, a marker, or a fixture.
"""
