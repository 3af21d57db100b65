"""Request and response heads, parsed by httptools (the only module that imports it).

Theory of operation: the I/O layer finds the end of a head itself (:func:`find_head_end`)
and hands exactly the head's bytes to :func:`parse_request_head` /
:func:`parse_response_head`. Bodies never go through httptools: the caller frames them
from ``content_length`` / ``chunked`` (:class:`ChunkedDecoder`). So pipelined bytes and the
bytes after an upgrade head are never consumed by a parser, and stay available for the
next request or for the tunnel (nginx-semantics.md §2.1, nginx-tests "handshake pipelined").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httptools

from wsgate.errors import HTTPError

__all__ = [
    "ChunkedDecoder",
    "RequestHead",
    "ResponseHead",
    "find_head_end",
    "parse_request_head",
    "parse_response_head",
]


_PAUSED = "Pause on CONNECT/Upgrade"


def find_head_end(buf: bytes | bytearray, start: int = 0) -> int:
    """Return the index just past the blank line that ends a head, or -1 if not there yet.

    ``start`` lets a caller resume the search without rescanning (pass the previous buffer
    length minus 3).
    """
    i = buf.find(b"\r\n\r\n", start)
    return -1 if i < 0 else i + 4


class _Collector:
    __slots__ = ("complete", "headers", "status", "url")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""
        self.status = b""
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_status(self, status: bytes) -> None:
        self.status += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


@dataclass(slots=True)
class RequestHead:
    """A parsed request head. Strings are latin-1 decodings of the raw bytes (lossless)."""

    method: str
    target: str  # the request-target exactly as received
    version: str  # "1.0" or "1.1"
    headers: list[tuple[str, str]]  # in the order received, names as sent
    request_line: str  # $request: the first line without CRLF
    content_length: int | None
    chunked: bool
    keep_alive: bool  # the client allows keep-alive (version and Connection header)
    raw_length: int  # bytes of the head including the blank line

    def header(self, lname: str) -> str | None:
        """First value of the header whose lower-cased name is ``lname``, else ``None``."""
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return None


@dataclass(slots=True)
class ResponseHead:
    """A parsed response head."""

    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    content_length: int | None
    chunked: bool
    raw_length: int


def _framing(headers: list[tuple[str, str]]) -> tuple[int | None, bool]:
    content_length: int | None = None
    chunked = False
    for n, v in headers:
        ln = n.lower()
        if ln == "content-length":
            content_length = int(v.strip())
        elif ln == "transfer-encoding":
            chunked = v.strip().lower().endswith("chunked")
    return content_length, chunked


def _keep_alive(version: str, headers: list[tuple[str, str]]) -> bool:
    # ngx_http_process_connection: each Connection line sets the type ("close" is looked
    # for first, then "keep-alive"); HTTP/1.1 keeps alive unless "close", 1.0 only if asked.
    kind = ""
    for n, v in headers:
        if n.lower() == "connection":
            low = v.lower()
            if "close" in low:
                kind = "close"
            elif "keep-alive" in low:
                kind = "keep-alive"
    if version == "1.1":
        return kind != "close"
    return kind == "keep-alive"


def _escape_high_bytes(line: bytes) -> bytes:
    """Percent-encode bytes >= 0x80 so that llhttp accepts a target nginx accepts."""
    return b"".join(b"%%%02X" % b if b >= 0x80 else bytes((b,)) for b in line)


def parse_request_head(head: bytes) -> RequestHead:
    """Parse one complete request head (request line, headers, blank line).

    Raises:
        HTTPError: malformed (400), or an unsupported transfer coding (501), in nginx's
            statuses.
    """
    line_end = head.find(b"\r\n")
    request_line = head[:line_end]
    fed = head
    if not request_line.isascii():
        # nginx passes raw UTF-8 (any byte >= 0x80) in the target; llhttp refuses it. The
        # parser sees an escaped copy; the target and $request keep the bytes as sent.
        fed = _escape_high_bytes(request_line) + head[line_end:]
    c = _Collector()
    p = httptools.HttpRequestParser(c)
    try:
        p.feed_data(fed)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserInvalidMethodError as exc:
        raise HTTPError(f"client sent invalid method: {exc}", 400) from None
    except httptools.HttpParserError as exc:
        # A complete head after which llhttp paused for another protocol is fine.
        if not (c.complete and _PAUSED in str(exc)):
            if "Transfer-Encoding" in str(exc) and "Content-Length" not in str(exc):
                raise HTTPError(f'client sent unknown "Transfer-Encoding": {exc}', 501) from None
            raise HTTPError(f"client sent invalid request: {exc}", 400) from None
    if not c.complete:
        raise HTTPError("client sent invalid request", 400)
    version = p.get_http_version()
    if version not in ("1.0", "1.1"):
        raise HTTPError(f"client sent unsupported HTTP version {version}", 505)
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in c.headers]
    content_length, chunked = _framing(headers)
    method = p.get_method().decode("latin-1")
    if fed is head:
        target = c.url.decode("latin-1")
    else:
        target = request_line.split(b" ")[1].decode("latin-1")
    return RequestHead(
        method=method,
        target=target,
        version=version,
        headers=headers,
        request_line=request_line.decode("latin-1"),
        content_length=None if chunked else content_length,
        chunked=chunked,
        keep_alive=_keep_alive(version, headers),
        raw_length=len(head),
    )


def parse_response_head(head: bytes) -> ResponseHead:
    """Parse one complete response head from an upstream.

    Raises:
        HTTPError: the upstream sent an invalid header (the caller logs
            ``upstream sent invalid header`` and answers 502).
    """
    c = _Collector()
    p = httptools.HttpResponseParser(c)
    try:
        p.feed_data(head)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError as exc:
        # llhttp pauses after a 101 head even without "Connection: upgrade": the head is
        # complete, which is all this function needs.
        if not (c.complete and _PAUSED in str(exc)):
            raise HTTPError(f"upstream sent invalid header: {exc}", 502) from None
    if not c.complete:
        raise HTTPError("upstream sent invalid header", 502)
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in c.headers]
    try:
        content_length, chunked = _framing(headers)
    except ValueError:
        raise HTTPError("upstream sent invalid header", 502) from None
    return ResponseHead(
        status=p.get_status_code(),
        reason=c.status.decode("latin-1"),
        version=p.get_http_version(),
        headers=headers,
        content_length=None if chunked else content_length,
        chunked=chunked,
        raw_length=len(head),
    )


# RFC 9112 §7.1: chunk-size [ chunk-ext ] CRLF, chunk-ext = *( BWS ";" BWS name [ BWS "="
# BWS value ] ), names tokens, values tokens or quoted strings. Anything else (control
# characters, a bare LF, spaces after the size) is refused: parsers that disagree on
# chunk lines are how bodies get smuggled.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*"
)
_TRAILER_LINE = re.compile(_TOKEN + rb":[\t \x21-\x7e\x80-\xff]*")


class ChunkedDecoder:
    """Sans-I/O decoder of a chunked body (RFC 9112 §7.1).

    Call :meth:`feed` with each piece of bytes; it returns the decoded body pieces. When
    :attr:`done` becomes true, :attr:`leftover` holds the bytes after the body (pipelined
    data) and the caller stops feeding.
    """

    MAX_LINE = 4096  # a chunk-size line or trailer line longer than this is invalid

    __slots__ = ("_buf", "_need", "_state", "done", "leftover")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need = 0  # data bytes still expected in the current chunk
        self._state = "size"  # size | data | data_crlf | trailer
        self.done = False
        self.leftover = b""

    def feed(self, data: bytes) -> list[bytes]:
        """Decode ``data``; return the body bytes it completes, in order.

        Raises:
            ValueError: invalid chunk framing (the caller answers 400 or drops upstream).
        """
        out: list[bytes] = []
        buf = self._buf
        buf += data
        while buf and not self.done:
            if self._state == "data":
                take = min(self._need, len(buf))
                out.append(bytes(buf[:take]))
                del buf[:take]
                self._need -= take
                if self._need == 0:
                    self._state = "data_crlf"
                continue
            if self._state == "data_crlf":
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise ValueError("invalid chunked body")
                del buf[:2]
                self._state = "size"
                continue
            nl = buf.find(b"\r\n")
            if nl < 0:
                if len(buf) > self.MAX_LINE:
                    raise ValueError("chunk line too long")
                break
            line = bytes(buf[:nl])
            del buf[: nl + 2]
            if self._state == "size":
                m = _CHUNK_LINE.fullmatch(line)
                if m is None:
                    raise ValueError("invalid chunk size or extension")
                size_text = m.group(1)
                if len(size_text) > 15:
                    raise ValueError("chunk size too large")
                size = int(size_text, 16)
                if size == 0:
                    self._state = "trailer"
                else:
                    self._need = size
                    self._state = "data"
            elif line == b"":  # end of trailers
                self.done = True
                self.leftover = bytes(buf)
                buf.clear()
            elif _TRAILER_LINE.fullmatch(line) is None:
                raise ValueError("invalid trailer line")
        return out
