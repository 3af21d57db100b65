"""Heads through httptools and the chunked decoder, whole and one byte at a time."""

from __future__ import annotations

import pytest

from wsgate.errors import HTTPError
from wsgate.http.parser import (
    NO_STATUS_LINE,
    ChunkedDecoder,
    ChunkError,
    bad_status_line,
    find_head_end,
    find_response_head_end,
    header_buffers_overflow,
    parse_request_head,
    parse_response_head,
)


def test_find_head_end() -> None:
    assert find_head_end(b"GET / HTTP/1.1\r\n\r\nrest") == 18
    assert find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n") == -1


def test_request_head() -> None:
    head = parse_request_head(
        b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX_u: 1\r\n\r\n"
    )
    assert (head.method, head.target, head.version) == ("POST", "/a?b=1", "1.1")
    assert head.request_line == "POST /a?b=1 HTTP/1.1"
    assert head.headers == [("Host", "x"), ("Content-Length", "3"), ("X_u", "1")]
    assert head.content_length == 3 and not head.chunked and head.keep_alive


def test_http10_and_upgrade_heads() -> None:
    head = parse_request_head(b"GET / HTTP/1.0\r\n\r\n")
    assert head.version == "1.0" and not head.keep_alive
    up = parse_request_head(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )
    assert up.header("upgrade") == "websocket"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /a b HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400),  # obsolete line folding
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),  # no Host comes first
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n", 501),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX Y: v\r\n\r\n", 400),  # space in a name
        (b"GET / HTTP/1.1\r\nHost: a\r\nX/Y: a\x00\r\n\r\n", 400),  # ignored, NUL all the same
    ],
)
def test_bad_requests(raw: bytes, status: int) -> None:
    with pytest.raises(HTTPError) as info:
        parse_request_head(raw)
    assert info.value.status == status


def test_header_lines_read_as_nginx_reads_them() -> None:
    """ngx_http_parse_header_line: names with bytes that are no token only make the line
    ignored; a line without a colon is an empty value; only spaces around values go."""
    head = parse_request_head(
        b'GET / HTTP/1.1\r\nHost: a\r\nX"Y: 1\r\nX@Y: 2\r\nX-Caf\xc3\xa9: 3\r\nX{Y}: \x01\r\n'
        b"X-NoColon\r\nUpgrade:  websocket  \r\nX-Ws:\t v \t\r\nTransfer-Encoding: Chunked \r\n\r\n"
    )
    assert head.headers == [
        ("Host", "a"),
        ("X-NoColon", ""),
        ("Upgrade", "websocket"),
        ("X-Ws", "\t v \t"),
        ("Transfer-Encoding", "Chunked"),
    ]
    assert head.chunked


@pytest.mark.parametrize(
    ("lines", "overflow"),
    [
        ([100] * 300, None),  # 30 000 bytes of short lines
        ([1000] + [4000] * 7, None),  # two 4000-byte lines per large buffer
        ([1000] + [4000] * 8 + [300], 9),  # needs a fifth large buffer at line 9
        ([1000] + [5000] * 4, None),
        ([1000] + [5000] * 5, 5),  # one 5000-byte line per buffer: 4 fit
        ([8192], None),  # a line with its CRLF fills a buffer
        ([8193], 0),
        ([100, 8193, 100], 1),
    ],
)
def test_header_buffers_overflow(lines: list[int], overflow: int | None) -> None:
    """ngx_http_alloc_large_header_buffer: a line that does not fit where it started moves
    whole to the next large buffer (4 x 8k after the first 1k buffer); the offset returned
    is where the first line that does not fit starts."""
    head = b"".join(b"x" * (n - 2) + b"\r\n" for n in lines) + b"\r\n"
    expected = -1 if overflow is None else sum(lines[:overflow])
    assert header_buffers_overflow(head, 4, 8192) == expected


def test_header_buffers_overflow_with_a_smaller_first_buffer() -> None:
    head = b"GET / HTTP/1.1\r\n" + b"x" * 298 + b"\r\n\r\n"
    assert header_buffers_overflow(head, 2, 512, first=1024) == -1
    assert header_buffers_overflow(head, 2, 512, first=256) == -1  # moved to a large one
    assert header_buffers_overflow(head, 1, 256, first=256) == 16


def test_response_head() -> None:
    head = parse_response_head(
        b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\n"
    )
    assert (head.status, head.reason, head.content_length) == (426, "Upgrade Required", 2)
    with pytest.raises(HTTPError):
        parse_response_head(b"garbage\r\n\r\n")


@pytest.mark.parametrize(
    ("line", "text", "status", "version"),
    [
        (b"HTTP/1.1 200 OK", "200 OK", 200, 1001),
        (b"HTTP/1.1 200", "200", 200, 1001),
        (b"HTTP/1.0 404 Not  Found ", "404 Not  Found ", 404, 1000),
        (b"HTTP/1.2 201 Made", "201 Made", 201, 1002),
        (b"HTTP/10.1 200 OK", "200 OK", 200, 10001),
        (b"HTTP/1.01 200 OK", "200 OK", 200, 1001),
        (b"HTTP/1.1   200 OK", "200 OK", 200, 1001),
        (b"HTTP/1.1 403.1 Forbidden", "403.1 Forbidden", 403, 1001),
        (b"HTTP/1.1 000 Odd", "000 Odd", 0, 1001),
        (b"HTTP/1.1 200 caf\xc3\xa9\x01", "200 caf\xc3\xa9\x01", 200, 1001),
    ],
)
def test_response_status_line(line: bytes, text: str, status: int, version: int) -> None:
    """ngx_http_parse_status_line: the text from the code on is kept as sent."""
    for head in (line + b"\r\nA: b\r\n\r\n", line + b"\nA: b\n\n"):
        parsed = parse_response_head(head)
        assert (parsed.status_text, parsed.status) == (text, status)
        assert (parsed.http_version, parsed.headers) == (version, [("A", "b")])


@pytest.mark.parametrize(
    "line",
    [
        b"HTTP/2 200 OK",
        b"HTTP/0.9 200 OK",
        b"http/1.1 200 OK",
        b"HTTP/1.1 20",
        b"HTTP/1.1 2000",
        b"HTTP/1.1 20x",
        b"HTTP/01.1 200 OK",
        b"HTTP/1. 200",
        b"HTTP/1.1\t200 OK",
        b" HTTP/1.1 200",
        b"garbage",
        b"HTTP/1.1 200 OK\rX",
    ],
)
def test_response_without_status_line(line: bytes) -> None:
    with pytest.raises(HTTPError, match=NO_STATUS_LINE):
        parse_response_head(line + b"\r\nA: b\r\n\r\n")
    assert bad_status_line(line + b"\r\n")


def test_bad_status_line_prefixes() -> None:
    """A status line is refused at its first byte that cannot fit, not at its end."""
    for good in (
        b"",
        b"H",
        b"HTTP/",
        b"HTTP/1.1",
        b"HTTP/1.1 20",
        b"HTTP/1.1 200 O",
        b"HTTP/1.1 200\r",
    ):
        assert not bad_status_line(good), good
    for bad in (b"X", b"HTTP/0", b"HTTP/1.1x", b"HTTP/1.1 2x", b"HTTP/1.1 200x", b"SSH-2.0"):
        assert bad_status_line(bad), bad


@pytest.mark.parametrize(
    ("lines", "headers"),
    [
        (
            b"X@Y: v\r\nX_U: 1\r\nX-Caf\xc3\xa9: v",
            [("X@Y", "v"), ("X_U", "1"), ("X-Caf\xc3\xa9", "v")],
        ),
        (b"X-NoColon\r\nX-Empty:", [("X-NoColon", ""), ("X-Empty", "")]),
        (b"X-Ws: \t v \t\r\nX-Sp:   a b  ", [("X-Ws", "\t v \t"), ("X-Sp", "a b")]),
        (b"X-Ctl: a\x01b\x7f\r\nX-Cr: v\r\r", [("X-Ctl", "a\x01b\x7f"), ("X-Cr", "v")]),
        (b"HTTP/1.1 500 Boom\r\nA: 1", [("A", "1")]),
        (b"\xff: v\r\n@@: w\r\nA: 1", [("A", "1")]),
        (b"A: 1\nB: 2", [("A", "1"), ("B", "2")]),
    ],
)
def test_response_header_lines(lines: bytes, headers: list[tuple[str, str]]) -> None:
    """ngx_http_parse_header_line as the proxy module uses it (underscores allowed,
    invalid names kept, names without a hashed byte dropped, IIS status lines skipped)."""
    head = parse_response_head(b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n\r\n")
    assert head.headers == headers


@pytest.mark.parametrize(
    "line",
    [
        b"X-Nul: a\x00b",
        b"X-N\x00ul: v",
        b"X-Cr: a\rb",
        b" X-Fold: v",
        b"\tX: v",
        b": v",
        b"X Y: v",
        b"X\x7fY: v",
        b"X-Sp : v",
    ],
)
def test_response_invalid_header_lines(line: bytes) -> None:
    with pytest.raises(HTTPError, match="upstream sent invalid header: "):
        parse_response_head(b"HTTP/1.1 200 OK\r\nA: 1\r\n" + line + b"\r\n\r\n")


@pytest.mark.parametrize(
    ("lines", "framing"),
    [
        (b"Content-Length: 11", (11, False)),
        (b"content-length:   11  ", (11, False)),
        (b"Transfer-Encoding: Chunked", (None, True)),
        (b"X-A: 1", (None, False)),
        (b"Content-Length: 0", (0, False)),
    ],
)
def test_response_framing(lines: bytes, framing: tuple[int | None, bool]) -> None:
    head = parse_response_head(b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n\r\n")
    assert (head.content_length, head.chunked) == framing


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (b"Content-Length: 5\r\nContent-Length: 5", "upstream sent duplicate header line"),
        (b"Content-Length: 5, 5", 'upstream sent invalid "Content-Length" header'),
        (b"Content-Length: -1", 'upstream sent invalid "Content-Length" header'),
        (b"Content-Length: +1", 'upstream sent invalid "Content-Length" header'),
        (b"Content-Length:", 'upstream sent invalid "Content-Length" header'),
        (b"Content-Length: 99999999999999999999", 'upstream sent invalid "Content-Length" header'),
        (b"Content-Length: \xb2", 'upstream sent invalid "Content-Length" header'),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 5", 'upstream sent "Content-Length" and'),
        (b"Content-Length: 5\r\nTransfer-Encoding: chunked", 'upstream sent "Content-Length" and'),
        (b"Transfer-Encoding: gzip, chunked", 'upstream sent unknown "Transfer-Encoding"'),
        (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", "upstream sent duplicate"),
    ],
)
def test_response_framing_refused(lines: bytes, message: str) -> None:
    """nginx 1.23's ngx_http_upstream_process_content_length / _transfer_encoding."""
    with pytest.raises(HTTPError, match=message) as info:
        parse_response_head(b"HTTP/1.1 200 OK\r\n" + lines + b"\r\n\r\n")
    assert info.value.status == 502


def test_find_response_head_end() -> None:
    assert find_response_head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody") == 25
    assert find_response_head_end(b"HTTP/1.1 200 OK\nA: b\n\nbody") == 22
    assert find_response_head_end(b"HTTP/1.1 200 OK\nA: b\n\r\nbody") == 23
    assert find_response_head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n") == -1


def test_chunked_decoder_refuses_a_bare_lf_at_once() -> None:
    with pytest.raises(ChunkError):
        ChunkedDecoder().feed(b"5\nhello")


def test_chunk_error_keeps_what_came_before() -> None:
    with pytest.raises(ChunkError) as info:
        ChunkedDecoder().feed(b"5\r\nhello\r\nz\r\n")
    assert info.value.pieces == [b"hello"]


CHUNKED = b"3\r\nabc\r\n4;ext=v\r\ndefg\r\n0\r\nTrailer: x\r\n\r\nNEXT"


@pytest.mark.parametrize("step", [len(CHUNKED), 1, 2, 5])
def test_chunked_decoder(step: int) -> None:
    d = ChunkedDecoder()
    out = b""
    i = 0
    while not d.done:
        out += b"".join(d.feed(CHUNKED[i : i + step]))
        i += step
    assert out == b"abcdefg"
    # Bytes past the body are handed back, none lost (pipelined data).
    assert d.leftover + CHUNKED[i:] == b"NEXT"


@pytest.mark.parametrize("raw", [b"x\r\n", b"3\r\nabcX\r\n", b"-1\r\n", b"1" * 20 + b"\r\n"])
def test_chunked_decoder_rejects(raw: bytes) -> None:
    with pytest.raises(ValueError):
        ChunkedDecoder().feed(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"5 \r\n",  # space after the size
        b"5;\r\n",  # empty extension
        b"5;a b\r\n",  # space inside an extension
        b"5\x00\r\n",
        b"5;a=\x01\r\n",
        b"0\r\nno colon\r\n\r\n",  # a trailer line that is not a header
    ],
)
def test_chunk_lines_nginx_might_read_differently_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        ChunkedDecoder().feed(raw)


def test_chunk_extensions_and_trailers_that_are_valid() -> None:
    d = ChunkedDecoder()
    assert d.feed(b'5 ;a=b; c="x y"\r\nhello\r\n0\r\nT: v\r\n\r\n') == [b"hello"]
    assert d.done
