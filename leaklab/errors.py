"""The lab's exceptions, one tree::

    LabError                  anything the lab reports to its user and stops for
    ├── LaunchError           a child process (service, server, client) did not start
    └── UnknownStory          ``run`` was given a story name that is not in the table

Usage errors of the command line are argparse's; a story's own failures inside a cell are
caught by the runner and end that cell with the verdict ``unknown``.
"""

from __future__ import annotations

__all__ = ["LabError", "LaunchError", "UnknownStory"]


class LabError(Exception):
    """Something the lab cannot go on with; the message is for the user."""


class LaunchError(LabError):
    """A child process did not start; the message carries the end of its log."""


class UnknownStory(LabError):
    """A story name that is not in the table."""
