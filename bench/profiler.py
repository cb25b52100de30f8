"""Sampling a running server with py-spy (optional: ``pip install py-spy`` into the venv),
and timing the direct fan-out's own Python per delivery (``python -m bench.profiler``).

py-spy attaches to the pid from outside and samples Python stacks without pausing the
process (``--nonblocking``), so the profile costs the server almost nothing. Idle samples
(the event loop waiting in epoll) are left out: the fractions are of busy time.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.figures import collapsed_stacks_top, self_top


def py_spy_path() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH; None if not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, duration_s: int, output: Path, rate_hz: int = 250) -> dict[str, Any]:
    """Sample ``pid`` for ``duration_s``; the top functions by inclusive and by own time."""
    exe = py_spy_path()
    if exe is None:
        return {"error": "py-spy not installed (pip install py-spy)"}
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(duration_s),
        "--rate",
        str(rate_hz),
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(output),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 60)
    if done.returncode != 0 or not output.exists():
        return {"error": (done.stderr or done.stdout)[-1000:]}
    lines = output.read_text().splitlines()
    return {
        "collapsed_stacks": str(output),
        "samples": sum(int(line.rpartition(" ")[2]) for line in lines if line.strip()),
        "top_inclusive": [
            {"function": name, "self": round(own, 4), "total": round(total, 4)}
            for name, own, total in collapsed_stacks_top(lines, limit=40)
        ],
        "top_self": [
            {"function": name, "self": round(own, 4)} for name, own in self_top(lines, limit=25)
        ],
        "top_self_lines": [
            {"line": name, "self": round(own, 4)}
            for name, own in self_top(lines, limit=25, by_line=True)
        ],
    }


class _NullTransport:
    """Just enough of a transport for uvicorn's protocol; every write is dropped."""

    def write(self, data: bytes) -> None:
        """Drop ``data``: the system call is what this timing leaves out."""

    def close(self) -> None:
        """Nothing to close."""

    def is_closing(self) -> bool:
        """Never closing."""
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        """Loopback addresses, as uvicorn asks for them."""
        addresses = {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}
        return addresses.get(name, default)

    def pause_reading(self) -> None:
        """Nothing to pause."""

    def resume_reading(self) -> None:
        """Nothing to resume."""


async def python_per_delivery_us(subscribers: int = 1000, batches: int = 2000) -> float:
    """The direct fan-out's own Python per delivery, in µs: the hub's loop, ``deliver`` and
    ``write_frames`` to ``subscribers`` sinks on a transport whose ``write`` does nothing
    (best of 3 runs of ``batches`` one-event batches)."""
    # Imported here: only this timing needs the service's internals in the bench process.
    from uvicorn.config import Config
    from uvicorn.server import ServerState
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri

    from event_service.counters import Counters
    from event_service.direct_fanout import DirectFanoutProtocol
    from event_service.events import make_event
    from event_service.hub import Hub

    accepted = asyncio.Event()
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set()
        await release.wait()

    config = Config(app, ws_ping_interval=None, log_level="warning")
    protocol = DirectFanoutProtocol(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(_NullTransport())  # type: ignore[arg-type]
    client = ClientProtocol(parse_uri("ws://127.0.0.1:8000/ws"))
    client.send_request(client.connect())
    protocol.data_received(b"".join(client.data_to_send()))
    try:
        await asyncio.wait_for(accepted.wait(), 5)
        counters = Counters()
        hub = Hub(counters, 256)
        for _ in range(subscribers):
            hub.subscribe(None, protocol)
        event = make_event("bench", {"n": 1})
        best_s = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(batches):
                hub.publish(event)
                hub.flush()
            best_s = min(best_s, time.perf_counter() - started)
        assert counters.events_delivered == 3 * batches * subscribers
        return best_s / (batches * subscribers) * 1e6
    finally:
        release.set()
        await asyncio.sleep(0)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.profiler``: print the direct fan-out's Python per delivery."""
    parser = argparse.ArgumentParser(prog="python -m bench.profiler", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=2000)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    us = asyncio.run(python_per_delivery_us(args.subscribers, args.batches))
    print(f"direct fan-out, Python per delivery on a null transport: {us:.3f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
