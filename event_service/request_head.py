"""Limits on an HTTP request head, checked on the raw bytes before any parser buffers them.

Pure: :class:`HeadScanner` follows the bytes of one request head (request line, header lines,
the blank line that ends it) as they arrive, and raises :class:`HeadTooLarge` with the HTTP
status to answer (414 for the request line, 431 for the headers) as soon as a limit is
passed. It does not parse HTTP; the server's parser still does, on the same bytes.

Why the defaults: websockets (uvicorn's default WebSocket implementation) refuses a line
over 8192 bytes and more than 128 headers, and uvicorn re-serialises the head before handing
it over (``name: value``, one byte longer when the client wrote no space). Staying under
those limits here means no request the HTTP layer lets through can trip them; see
:mod:`event_service.uvicorn_guards` for what happens when one does.
"""

from __future__ import annotations

import dataclasses

from event_service.errors import HeadTooLarge

__all__ = ["HEAD_LIMITS", "HeadLimits", "HeadScanner", "HeadTooLarge"]

URI_TOO_LONG = 414
HEADER_FIELDS_TOO_LARGE = 431


@dataclasses.dataclass(frozen=True, slots=True)
class HeadLimits:
    """Bounds of one request head, in bytes with line endings included."""

    line_bytes: int = 8190
    head_bytes: int = 16384
    header_count: int = 100


HEAD_LIMITS = HeadLimits()


class HeadScanner:
    """Follows one request head as bytes arrive, until the blank line that ends it."""

    __slots__ = ("_head_bytes", "_limits", "_line_bytes", "_line_has_content", "_lines")

    def __init__(self, limits: HeadLimits = HEAD_LIMITS) -> None:
        self._limits = limits
        self._head_bytes = 0
        self._line_bytes = 0
        self._line_has_content = False
        self._lines = 0  # lines with content: the request line, then one per header

    def feed(self, data: bytes) -> bool:
        """Scan ``data``; ``True`` once the head is complete. Raises :class:`HeadTooLarge`.

        Bytes after the end of the head (a body, a pipelined request) are not looked at.
        """
        pos, end = 0, len(data)
        while pos < end:
            newline = data.find(b"\n", pos)
            stop = end if newline < 0 else newline + 1
            self._line_bytes += stop - pos
            self._head_bytes += stop - pos
            if not self._line_has_content and data[pos:stop].strip(b"\r\n"):
                self._line_has_content = True
            self._check()
            if newline < 0:
                return False
            if self._line_has_content:
                self._lines += 1
                if self._lines - 1 > self._limits.header_count:
                    raise HeadTooLarge(
                        HEADER_FIELDS_TOO_LARGE,
                        f"more than {self._limits.header_count} header fields",
                    )
            elif self._lines:
                return True  # the blank line after the headers
            # A blank line before the request line is ignored (RFC 9112, section 2.2).
            self._line_bytes = 0
            self._line_has_content = False
            pos = stop
        return False

    def _check(self) -> None:
        in_request_line = self._lines == 0
        status = URI_TOO_LONG if in_request_line else HEADER_FIELDS_TOO_LARGE
        what = "request line" if in_request_line else "header line"
        if self._line_bytes > self._limits.line_bytes:
            raise HeadTooLarge(status, f"{what} longer than {self._limits.line_bytes} bytes")
        if self._head_bytes > self._limits.head_bytes:
            raise HeadTooLarge(status, f"request head larger than {self._limits.head_bytes} bytes")
