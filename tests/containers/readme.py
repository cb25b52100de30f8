"""The shell commands of the README's "With Docker" section, as the compose test runs them.

Pure text work: the section is cut out of README.md, its ``sh`` blocks are split into
commands (continuation lines joined, trailing comments kept apart), and each command is
turned into an argument list and environment for this machine: ``docker compose`` becomes the
Compose command found here (v1's ``docker-compose`` needs ``-T`` to ``exec`` or ``run``
without a terminal), host ports the test had to move are replaced, ``ping-swarm`` is this
Python's ``-m ping_client``.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Mapping, Sequence

SECTION = "## With Docker"
ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=")
LOOPBACK_PORT = re.compile(r"(?<=127\.0\.0\.1:)(\d+(?:-\d+)?)")


@dataclasses.dataclass(frozen=True)
class Command:
    """One command of the section: its text (one line) and the comment after it."""

    text: str
    comment: str = ""


@dataclasses.dataclass(frozen=True)
class Invocation:
    """A command as this machine runs it."""

    argv: list[str]
    env: dict[str, str]


def docker_section(readme: str) -> str:
    """The text of the "With Docker" section, up to the next section of the same level."""
    start = readme.index(f"\n{SECTION}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end != -1 else len(readme)]


def section_commands(section: str) -> list[Command]:
    """The commands of the section's ``sh`` blocks, in order."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL):
        pending = ""
        for line in block.splitlines():
            code, comment = _split_comment(line)
            if code.rstrip().endswith("\\"):
                pending += code.rstrip()[:-1].strip() + " "
                continue
            text = (pending + code.strip()).strip()
            pending = ""
            if text:
                commands.append(Command(" ".join(text.split()), comment))
    return commands


def _split_comment(line: str) -> tuple[str, str]:
    """Split ``code   # comment`` where the ``#`` starts a word outside quotes."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index], line[index + 1 :].strip()
    return line, ""


def invocation(
    command: str,
    *,
    compose: Sequence[str],
    python: str,
    ports: Mapping[str, str],
    env: Mapping[str, str] | None = None,
) -> Invocation:
    """``command`` as argv and extra environment on this machine.

    ``ports`` maps a port (or range) the README names to the one the test uses; ``env``
    overrides the command's own ``NAME=value`` prefix (the test shortens durations).
    """
    words = shlex.split(command)
    assigned: dict[str, str] = {}
    while words and ASSIGNMENT.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        assigned[name] = ports.get(value, value) if name.endswith("_PORT") else value
    words = [LOOPBACK_PORT.sub(lambda m: ports.get(m.group(1), m.group(1)), w) for w in words]
    if words[:2] == ["docker", "compose"]:
        words = [*compose, *_without_tty(words[2:], compose)]
    elif words[:1] == ["ping-swarm"]:
        words = [python, "-m", "ping_client", *words[1:]]
    return Invocation(words, {**assigned, **(env or {})})


def _without_tty(args: list[str], compose: Sequence[str]) -> list[str]:
    """v1 asks for a terminal in ``exec`` and ``run`` unless told ``-T``; v2 finds out itself."""
    if list(compose) != ["docker-compose"]:
        return args
    for index, arg in enumerate(args):
        if arg in ("exec", "run"):
            return [*args[: index + 1], "-T", *args[index + 1 :]]
    return args


@dataclasses.dataclass(frozen=True)
class PortRow:
    """One row of the section's host port table."""

    port: int
    variable: str
    service: str


def port_table(section: str) -> list[PortRow]:
    """The rows of the section's table of host ports: port, its variable, the service."""
    rows = []
    for line in section.splitlines():
        match = re.match(r"\| (\d+) \| `([A-Z_]+)` \| `([\w-]+)` \|", line)
        if match:
            rows.append(PortRow(int(match.group(1)), match.group(2), match.group(3)))
    return rows
