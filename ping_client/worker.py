"""One worker of a multi-process swarm: ``python -m ping_client.worker SPEC``.

The parent (:mod:`ping_client.fleet`) renders a :class:`WorkerSpec` as JSON on the command
line; the worker runs one :class:`~ping_client.swarm.Swarm` with it and writes one line of
JSON per second to stdout (``{"kind": "sample", ...}``), then its summary
(``{"kind": "summary", ...}``). Its stdin is the parent's channel: a ``stop-sending`` line
stops the pings (the parent's memory guard), and end of file, which is also what the worker
sees when the parent dies, ends the run with a clean close. SIGTERM ends it the same way;
SIGINT is ignored, since a Ctrl-C in the terminal reaches the whole process group and the
parent decides.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
from typing import Any, BinaryIO

from ping_client.limits import raise_fd_limit
from ping_client.swarm import Swarm, SwarmConfig

__all__ = ["STOP_SENDING", "WorkerSpec", "main", "serve", "spec_from_json", "spec_to_json"]

STOP_SENDING = b"stop-sending"
_COMMAND_LIMIT_BYTES = 1024


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """What one worker runs: its index, its share of the swarm, its source addresses."""

    index: int
    config: SwarmConfig
    source_addresses: tuple[str, ...] = ()


def spec_to_json(spec: WorkerSpec) -> str:
    """The spec as one line of JSON (read back by :func:`spec_from_json`)."""
    return json.dumps(dataclasses.asdict(spec), separators=(",", ":"))


def spec_from_json(text: str) -> WorkerSpec:
    """The spec :func:`spec_to_json` wrote."""
    data = json.loads(text)
    config = dict(data["config"])
    config["subscribe"] = tuple(config["subscribe"])
    return WorkerSpec(
        index=int(data["index"]),
        config=SwarmConfig(**config),
        source_addresses=tuple(data["source_addresses"]),
    )


async def serve(spec: WorkerSpec, out: BinaryIO) -> dict[str, Any]:
    """Run the worker's swarm, reporting to ``out``; return its summary."""
    swarm = Swarm(spec.config, source_addresses=spec.source_addresses, is_worker=True)

    def emit(kind: str, data: dict[str, Any]) -> None:
        line = json.dumps({"kind": kind, "worker": spec.index, **data}, separators=(",", ":"))
        out.write(line.encode() + b"\n")
        out.flush()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, swarm.stop)
    try:
        async with asyncio.TaskGroup() as tasks:
            commands = tasks.create_task(_obey(swarm), name="worker-commands")
            summary = await swarm.run(lambda sample: emit("sample", sample))
            commands.cancel()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    emit("summary", summary)
    return summary


async def _obey(swarm: Swarm) -> None:
    """Follow the parent's lines on stdin; its end (the parent gone) stops the swarm."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_COMMAND_LIMIT_BYTES)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while line := await reader.readline():
            if line.strip() == STOP_SENDING:
                swarm.stop_sending()
        swarm.stop()
    finally:
        transport.close()


def main(argv: list[str] | None = None) -> int:
    """Run one worker with the spec given as the first argument."""
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise_fd_limit()
    asyncio.run(serve(spec_from_json(argv[0]), sys.stdout.buffer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
