"""Tests for event_service.request_head: the head scanner on literal bytes."""

import pytest

from event_service.request_head import HEAD_LIMITS, HeadLimits, HeadScanner, HeadTooLarge

HANDSHAKE = (
    b"GET /ws?events=a HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def feed_all(scanner: HeadScanner, chunks: list[bytes]) -> list[bool]:
    return [scanner.feed(chunk) for chunk in chunks]


def test_a_handshake_in_one_piece_is_complete():
    assert HeadScanner().feed(HANDSHAKE) is True


def test_a_handshake_one_byte_at_a_time_completes_on_its_last_byte():
    results = feed_all(HeadScanner(), [HANDSHAKE[i : i + 1] for i in range(len(HANDSHAKE))])
    assert results == [False] * (len(HANDSHAKE) - 1) + [True]


def test_bytes_after_the_head_are_not_looked_at():
    body = b"x" * (HEAD_LIMITS.head_bytes * 2)
    head = b"POST /events HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body)
    assert HeadScanner().feed(head + body) is True


def test_bare_line_feeds_end_lines_too():
    assert HeadScanner().feed(b"GET / HTTP/1.1\nHost: x\n\n") is True


def test_blank_lines_before_the_request_line_are_skipped():
    scanner = HeadScanner()
    assert scanner.feed(b"\r\n\r\n") is False
    assert scanner.feed(b"GET / HTTP/1.1\r\n\r\n") is True


@pytest.mark.parametrize("split", [1, 5, 8191, 8192])
def test_a_long_request_line_gets_414_wherever_the_chunks_end(split):
    request = b"GET /?q=" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"
    scanner = HeadScanner()
    with pytest.raises(HeadTooLarge) as excinfo:
        feed_all(scanner, [request[:split], request[split:]])
    assert excinfo.value.status == 414
    assert "request line longer than 8190 bytes" in str(excinfo.value)


def test_a_request_line_at_the_limit_passes():
    line = (
        b"GET /?q="
        + b"a" * (HEAD_LIMITS.line_bytes - len(b"GET /?q= HTTP/1.1\r\n"))
        + b" HTTP/1.1\r\n"
    )
    assert len(line) == HEAD_LIMITS.line_bytes
    assert HeadScanner().feed(line + b"\r\n") is True


def test_a_long_header_line_gets_431():
    with pytest.raises(HeadTooLarge) as excinfo:
        HeadScanner().feed(b"GET / HTTP/1.1\r\nCookie: " + b"c" * 9000 + b"\r\n\r\n")
    assert excinfo.value.status == 431
    assert "header line longer than" in str(excinfo.value)


def test_a_long_header_line_is_refused_before_it_ends():
    scanner = HeadScanner()
    scanner.feed(b"GET / HTTP/1.1\r\nCookie: ")
    with pytest.raises(HeadTooLarge):
        for _ in range(100):
            scanner.feed(b"c" * 100)


def test_many_short_headers_past_the_head_size_get_431():
    headers = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 4000) for i in range(5))
    with pytest.raises(HeadTooLarge) as excinfo:
        HeadScanner().feed(b"GET / HTTP/1.1\r\n" + headers + b"\r\n")
    assert excinfo.value.status == 431
    assert "request head larger than 16384 bytes" in str(excinfo.value)


def test_more_header_fields_than_the_limit_get_431():
    limits = HeadLimits(header_count=3)
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(4))
    with pytest.raises(HeadTooLarge) as excinfo:
        HeadScanner(limits).feed(b"GET / HTTP/1.1\r\n" + fields + b"\r\n")
    assert excinfo.value.status == 431
    assert HeadScanner(limits).feed(b"GET / HTTP/1.1\r\n" + fields[: -len(b"X-3: v\r\n")] + b"\r\n")


def test_endless_blank_lines_are_bounded_by_the_head_size():
    with pytest.raises(HeadTooLarge) as excinfo:
        HeadScanner().feed(b"\r\n" * 10_000)
    assert excinfo.value.status == 414
