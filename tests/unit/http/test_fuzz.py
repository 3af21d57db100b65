"""Property tests: no input makes the head parser or the chunked decoder fail other than
with the documented errors (HTTPError / ValueError), whatever the bytes and their split."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wsgate.errors import HTTPError
from wsgate.http.parser import ChunkedDecoder, parse_request_head, parse_response_head

TOKENS = st.sampled_from(
    [
        b"GET ",
        b"POST ",
        b"/",
        b"?a=1",
        b" HTTP/1.1",
        b" HTTP/1.0",
        b"\r\n",
        b"Host: a",
        b"Content-Length: 5",
        b"Content-Length: -1",
        b"Transfer-Encoding: chunked",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b": ",
        b" ",
        b"\t",
        b"\x00",
        b"\xff",
        b"%",
        b"%2F",
    ]
)
HEADS = st.lists(TOKENS, max_size=30).map(lambda parts: b"".join(parts) + b"\r\n\r\n")


@settings(max_examples=400, deadline=None)
@given(st.one_of(HEADS, st.binary(max_size=200).map(lambda b: b + b"\r\n\r\n")))
def test_request_head_never_crashes(raw: bytes) -> None:
    try:
        head = parse_request_head(raw)
    except HTTPError as exc:
        assert exc.status in (400, 501, 505)
    else:
        assert head.raw_length == len(raw)
        assert head.version in ("1.0", "1.1")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200).map(lambda b: b"HTTP/1.1 " + b + b"\r\n\r\n"))
def test_response_head_never_crashes(raw: bytes) -> None:
    try:
        parse_response_head(raw)
    except HTTPError as exc:
        assert exc.status == 502


CHUNK_TOKENS = st.sampled_from([b"0", b"5", b"a", b"FF", b";x=y", b"\r\n", b"hello", b"z", b" "])


@settings(max_examples=400, deadline=None)
@given(st.lists(CHUNK_TOKENS, max_size=30), st.integers(min_value=1, max_value=7))
def test_chunked_decoder_never_crashes_and_never_invents_bytes(
    parts: list[bytes], step: int
) -> None:
    data = b"".join(parts)
    d = ChunkedDecoder()
    out = b""
    try:
        for i in range(0, len(data), step):
            if d.done:
                break
            out += b"".join(d.feed(data[i : i + step]))
    except ValueError:
        return
    assert len(out) <= len(data)
