"""The swarm's data pings as masked client frames, many at a time (pure apart from entropy).

websockets' protocol frames one message at a time: a ``Frame`` object, its header, a
4-byte mask from ``secrets.token_bytes`` (one ``getrandom`` system call per frame) and the
masked payload. At tens of thousands of pings a second that is about a third of the swarm's
own time. A :class:`PingFramer` builds a slot's worth of the same frames at once: the header
is computed once, and the masks (and a random payload) come from one ``os.urandom`` call per
batch of at most :data:`RANDOM_CHUNK_BYTES`.

A random payload is sent as the masked bytes themselves: mask and masked data are both
fresh random bytes, so what the server unmasks (their XOR) is fresh random bytes too, the
same distribution as masking random bytes, without a masking pass. A text payload is masked
with websockets' own ``apply_mask`` (C), so the server reads the exact text.

Only uncompressed data frames are built here; with permessage-deflate, and for control
pings, the swarm goes through websockets' protocol as before.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

from websockets.frames import Opcode

try:  # websockets' C masking, as websockets.frames itself imports it
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - a websockets built without its C extension
    from websockets.utils import apply_mask

__all__ = ["MASK_BYTES", "RANDOM_CHUNK_BYTES", "PingFramer", "frame_header"]

MASK_BYTES = 4
# At most this much entropy per os.urandom call, whatever the slot's size: a slot of large
# pings is drawn in several calls, never held whole in memory.
RANDOM_CHUNK_BYTES = 256 * 1024
_FIN = 0b1000_0000
_MASKED = 0b1000_0000


def frame_header(opcode: Opcode, length: int) -> bytes:
    """The first bytes of a final, masked client frame of ``length`` payload bytes (RFC 6455)."""
    head1 = _FIN | opcode
    if length < 126:
        return struct.pack("!BB", head1, _MASKED | length)
    if length < 1 << 16:
        return struct.pack("!BBH", head1, _MASKED | 126, length)
    return struct.pack("!BBQ", head1, _MASKED | 127, length)


class PingFramer:
    """Builds the swarm's data pings: binary frames of random bytes, or text frames of ``text``."""

    def __init__(self, size_bytes: int, *, text: bytes | None = None) -> None:
        if text is not None and len(text) != size_bytes:
            raise ValueError(f"text payload of {len(text)} bytes for pings of {size_bytes}")
        self.size_bytes = size_bytes
        self._text = text
        opcode = Opcode.BINARY if text is None else Opcode.TEXT
        self._header = frame_header(opcode, size_bytes)
        # The random bytes each frame takes: its mask, and for binary pings its payload.
        self._entropy_bytes = MASK_BYTES + (size_bytes if text is None else 0)
        self._per_chunk = max(1, RANDOM_CHUNK_BYTES // self._entropy_bytes)

    @property
    def frame_bytes(self) -> int:
        """The size of one frame on the wire."""
        return len(self._header) + MASK_BYTES + self.size_bytes

    def frames(self, count: int) -> Iterator[bytes]:
        """``count`` complete frames, each with a fresh mask (and fresh random payload)."""
        header, text, step = self._header, self._text, self._entropy_bytes
        while count > 0:
            batch = min(count, self._per_chunk)
            entropy = os.urandom(batch * step)
            if text is None:
                for start in range(0, batch * step, step):
                    yield header + entropy[start : start + step]
            else:
                for start in range(0, batch * step, step):
                    mask = entropy[start : start + step]
                    yield header + mask + apply_mask(text, mask)
            count -= batch
