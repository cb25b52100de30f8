"""The swarm's batch framing: frames a WebSocket server parses as the pings they stand for."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from ping_client.frames import MASK_BYTES, RANDOM_CHUNK_BYTES, PingFramer, frame_header


def parse(data: bytes) -> tuple[Frame, bytes]:
    """One frame read as a server reads a client's (unmasked), and the bytes after it."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=True, max_size=None, extensions=[])
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
    else:
        raise AssertionError("incomplete frame")
    return frame, bytes(reader.buffer)


def test_binary_pings_are_final_masked_frames_of_fresh_random_bytes() -> None:
    framer = PingFramer(64)
    frames = list(framer.frames(100))
    assert len(frames) == 100
    assert {len(frame) for frame in frames} == {framer.frame_bytes} == {2 + MASK_BYTES + 64}
    payloads = set()
    for raw in frames:
        frame, rest = parse(raw)
        assert (frame.opcode, frame.fin, len(frame.data), rest) == (Opcode.BINARY, True, 64, b"")
        payloads.add(frame.data)
    assert len(payloads) == 100  # fresh bytes for every ping
    assert len({raw[2:6] for raw in frames}) == 100  # and a fresh mask


def test_text_pings_unmask_to_the_text_under_fresh_masks() -> None:
    text = b"ping " * 20
    framer = PingFramer(len(text), text=text)
    frames = list(framer.frames(50))
    for raw in frames:
        frame, _ = parse(raw)
        assert (frame.opcode, frame.data) == (Opcode.TEXT, text)
    assert len(set(frames)) == 50


def test_large_pings_are_drawn_in_bounded_chunks() -> None:
    size = RANDOM_CHUNK_BYTES // 2  # two frames' entropy per os.urandom call at most
    framer = PingFramer(size)
    frames = list(framer.frames(5))
    assert len(frames) == 5
    for raw in frames:
        frame, _ = parse(raw)
        assert len(frame.data) == size
    assert len({raw[-16:] for raw in frames}) == 5


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 1 << 20])
def test_header_lengths_follow_rfc_6455(length: int) -> None:
    raw = frame_header(Opcode.BINARY, length) + bytes(MASK_BYTES) + bytes(length)
    frame, rest = parse(raw)
    assert (len(frame.data), rest) == (length, b"")


def test_zero_pings_are_no_frames() -> None:
    assert list(PingFramer(10).frames(0)) == []


def test_text_of_another_size_is_refused() -> None:
    with pytest.raises(ValueError, match="text payload of 3 bytes for pings of 4"):
        PingFramer(4, text=b"abc")
