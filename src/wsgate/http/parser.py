"""Request heads (parsed by httptools, the only module that imports it), response heads
(read as nginx reads a peer's) and the chunked decoder.

Theory of operation: the I/O layer finds the end of a head itself (:func:`find_head_end`;
:func:`find_response_head_end` for a peer's, which may end its lines in a bare LF) and
hands exactly the head's bytes to :func:`parse_request_head` /
:func:`parse_response_head`. Bodies never go through a head parser: the caller frames them
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
    "NO_STATUS_LINE",
    "ChunkError",
    "ChunkedDecoder",
    "RequestHead",
    "ResponseHead",
    "bad_status_line",
    "find_head_end",
    "find_response_head_end",
    "header_buffers_overflow",
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


def header_buffers_overflow(
    head: bytes | bytearray, number: int, size: int, first: int = 1024
) -> int:
    """Where nginx's header buffers run out for this complete head: the offset of the
    first line that does not fit, or -1 when the whole head fits.

    ``ngx_http_alloc_large_header_buffer``: the head is read into a ``first`` byte buffer
    (``client_header_buffer_size``, 1k); a line that does not fit where it started is
    moved whole into the next of at most ``number`` large buffers of ``size`` bytes. So
    long lines waste the ends of buffers, and a head under ``number * size`` may still not
    fit (400, "Request Header Or Cookie Too Large"). nginx has read the lines before the
    offset: they are the request's ``$request_length`` and headers in the access log.
    """
    capacity, used, large = first, 0, 0
    pos = 0
    while pos < len(head):
        nl = head.find(b"\n", pos)
        line = (nl if nl >= 0 else len(head) - 1) + 1 - pos
        if used + line <= capacity:
            used += line
        elif large == number or line > size:
            return pos
        else:
            large += 1
            capacity, used = size, line
        pos += line
    return -1


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
    reason: str  # the text after the code and its separator
    version: str  # "major.minor"
    headers: list[tuple[str, str]]
    content_length: int | None
    chunked: bool
    raw_length: int
    status_text: str = ""  # the status line from the code on, as the peer sent it
    http_version: int = 1001  # nginx's major * 1000 + minor


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


# Bytes of a header name that nginx only flags as invalid (the line is then ignored, with
# ignore_invalid_headers on) but llhttp refuses outright: not tokens, not controls or space.
_IGNORED_NAME_BYTES = frozenset(b'"(),/;<=>?@[\\]{}') | frozenset(range(0x80, 0x100))
_NAME_STOP = frozenset(range(0x21)) | {0x7F}


def _nginx_header_lines(lines: list[bytes]) -> list[bytes]:
    """The header lines to give llhttp so that it reads what nginx reads.

    ``ngx_http_parse_header_line``: a name byte that is no letter, digit, ``-`` or ``_``
    but above the space (and not DEL) only marks the line invalid, and
    ``ngx_http_process_request_headers`` then skips the whole line; a line without a colon
    is a header with an empty value. Lines nginx refuses (a control byte or space in the
    name, a NUL or lone CR in the value) are left as they are, for llhttp to refuse.
    """
    out = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not name or name[0] in _NAME_STOP or any(b in _NAME_STOP for b in name):
            out.append(line)
        elif any(b in _IGNORED_NAME_BYTES for b in name):
            if b"\x00" in value or b"\r" in value:
                out.append(line)  # nginx refuses its value all the same
        elif not colon:
            out.append(line + b":")
        else:
            out.append(line)
    return out


def _header_counts(lines: list[bytes]) -> dict[bytes, int]:
    counts: dict[bytes, int] = {}
    for line in lines:
        name = line.partition(b":")[0].lower()
        if name in (b"host", b"transfer-encoding", b"content-length"):
            counts[name] = counts.get(name, 0) + 1
    return counts


def _refused_before_coding(request_line: bytes, lines: list[bytes]) -> bool:
    """Whether nginx answers 400 before it looks at an unknown ``Transfer-Encoding`` (501):
    a duplicate unique header while reading the lines (``ngx_http_process_host``,
    ``ngx_http_process_unique_header_line``), then in ``ngx_http_process_request_header``
    an HTTP/1.1 request without ``Host``."""
    counts = _header_counts(lines)
    if any(n > 1 for n in counts.values()):
        return True
    return request_line.endswith(b"HTTP/1.1") and b"host" not in counts


# Header lines that need none of the above: every name a token followed by a colon, so
# that nginx and llhttp read the same lines (checked in one scan of the block).
_PLAIN_LINES = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]++:[^\r\n]*+\r\n)*+")
# A Transfer-Encoding line among those llhttp is given.
_CODING_LINE = re.compile(rb"\r\ntransfer-encoding:", re.IGNORECASE)


def _nginx_value(raw: bytes) -> str:
    """A header value as ``ngx_http_parse_header_line`` keeps it: spaces (not tabs) before
    and after it are not part of it."""
    return raw.strip(b" ").decode("latin-1")


def parse_request_head(head: bytes) -> RequestHead:
    """Parse one complete request head (request line, headers, blank line).

    Raises:
        HTTPError: malformed (400), an unsupported transfer coding (501) or HTTP version
            (505), in nginx's statuses.
    """
    line_end = head.find(b"\r\n")
    request_line = head[:line_end]
    block = head[line_end + 2 : -2]  # the header lines, each with its CRLF
    fed_line = request_line
    if not request_line.isascii():
        # nginx passes raw UTF-8 (any byte >= 0x80) in the target; llhttp refuses it. The
        # parser sees an escaped copy; the target and $request keep the bytes as sent.
        fed_line = _escape_high_bytes(request_line)
    plain = _PLAIN_LINES.fullmatch(block) is not None
    lines = block[:-2].split(b"\r\n") if block else []
    if plain:
        kept = lines
        fed = head if fed_line is request_line else fed_line + head[line_end:]
    else:
        kept = _nginx_header_lines(lines)
        fed = fed_line + b"".join(b"\r\n" + line for line in kept) + b"\r\n\r\n"
    coded = _CODING_LINE.search(fed) is not None
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
            if _VERSION.fullmatch(request_line) is not None:
                # ngx_http_parse_request_line: a major version above 1 is 505 (llhttp
                # knows no HTTP/3.0), before any header line is read.
                raise HTTPError("client sent unsupported HTTP version", 505) from None
            coding = "Transfer-Encoding" in str(exc) and "Content-Length" not in str(exc)
            if coding and not _refused_before_coding(request_line, kept):
                raise HTTPError(f'client sent unknown "Transfer-Encoding": {exc}', 501) from None
            raise HTTPError(f"client sent invalid request: {exc}", 400) from None
    if not c.complete:
        raise HTTPError("client sent invalid request", 400)
    version = p.get_http_version()
    if version == "0.9":
        # "HTTP/0.9" spelled out is no HTTP/0.9 request line for ngx_http_parse_request_line.
        status = 400 if b" HTTP/" in request_line else 505
        raise HTTPError("client sent invalid request", status)
    if version not in ("1.0", "1.1"):
        raise HTTPError(f"client sent unsupported HTTP version {version}", 505)
    if coded and _header_counts(kept).get(b"transfer-encoding", 0) > 1:
        # ngx_http_process_unique_header_line: Transfer-Encoding may appear once.
        raise HTTPError("client sent duplicate header line: Transfer-Encoding", 400)
    if plain and b" \r\n" not in block and b"\t" not in block:
        # No value ends in a space and none has a tab, where llhttp trims otherwise.
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in c.headers]
    elif len(c.headers) == len(kept):
        # The lines as nginx reads them (llhttp also strips tabs and keeps trailing spaces).
        headers = [
            (n.decode("latin-1"), _nginx_value(line[len(n) + 1 :]))
            for (n, _), line in zip(c.headers, kept, strict=True)
        ]
    else:
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in c.headers]
    codings = [v for n, v in headers if n.lower() == "transfer-encoding"] if coded else []
    if codings:
        # ngx_http_process_request_header: HTTP/1.0 with Transfer-Encoding is 400; a
        # value other than exactly "chunked" ("gzip, chunked" too) is 501.
        if version == "1.0" or _refused_before_coding(request_line, kept):
            raise HTTPError('client sent invalid "Transfer-Encoding" header', 400)
        if codings[0].lower() != "chunked":
            raise HTTPError(f'client sent unknown "Transfer-Encoding": "{codings[0]}"', 501)
    content_length, chunked = _framing(headers)
    method = p.get_method().decode("latin-1")
    if fed_line is request_line:
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


# A request line whose version has a major number above 1 (HTTP/2.0 is left to llhttp).
_VERSION = re.compile(rb"[^ ]+ [^ ]+ HTTP/(?:[2-9]|[1-9][0-9]+)\.[0-9]+")


# ngx_http_parse_status_line: "HTTP/", a major version of one to three digits that does
# not start with 0, ".", a minor version of one to three digits, a space, any spaces, a
# three-digit code, then the end of the line or a space or "." and any text (nginx copies
# the text from the code on, verbatim, into the client's status line).
_STATUS_LINE = re.compile(
    r"HTTP/([1-9][0-9]{0,2})\.([0-9]{1,3}) +(([0-9]{3})(?:[ .]([^\r\n]*))?)\r?\n"
)
# What can still become such a line (the first line is not complete yet).
_STATUS_PREFIX = re.compile(
    r"(?:H(?:T(?:T(?:P(?:/(?:[1-9][0-9]{0,2}(?:\.(?:[0-9]{1,3}(?: +(?:[0-9]{1,3}"
    r"(?:[ .][^\r\n]*)?\r?)?)?)?)?)?)?)?)?)?)?"
)
# The end of a response head: an empty line (CRLF or a bare LF) after a line's LF.
_RESPONSE_HEAD_END = re.compile(rb"\n\r?\n")
# Header lines whose names are letters, digits, "-" and "_" and whose values hold no NUL
# or CR, each ending in CRLF: read by splitting, in one scan.
_PLAIN_RESPONSE_LINES = re.compile(r"(?:[A-Za-z0-9_-]++:[^\x00\r\n]*+\r\n)*+")
# The common head in one scan: an HTTP/1.0 or 1.1 status line with one space around the
# code, then lines "name: value" whose value neither starts nor ends with a space (so
# that splitting at the first ": " reads them exactly).
_PLAIN_RESPONSE = re.compile(
    r"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?\r\n"
    r"((?:[A-Za-z0-9_-]++: [^\x00\r\n ](?:[^\x00\r\n]*+(?<! ))?\r\n)*+)\r\n"
)
# A Content-Length or Transfer-Encoding line among them (any case).
_FRAMING_LINE = re.compile(r"\n(?:content-length|transfer-encoding):", re.IGNORECASE)
# Bytes of a header name that ngx_http_parse_header_line hashes (underscores allowed for
# upstreams); a name without any is never sent on (its hash is 0).
_HASHED = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_MAX_OFF_T = (1 << 63) - 1
NO_STATUS_LINE = "upstream sent no valid HTTP/1.0 header"


def find_response_head_end(buf: bytes | bytearray, start: int = 0) -> int:
    """The index just past the empty line that ends a response head (``\\n\\r\\n`` or
    ``\\n\\n``: nginx reads a bare LF as a line's end), or -1 if not there yet."""
    found = _RESPONSE_HEAD_END.search(buf, start)
    return -1 if found is None else found.end()


def bad_status_line(buf: bytes | bytearray) -> bool:
    """Whether the bytes a response starts with can no longer be a status line
    (ngx_http_parse_status_line fails at the first byte that does not fit)."""
    nl = buf.find(b"\n")
    first = bytes(buf[: nl + 1] if nl >= 0 else buf).decode("latin-1")
    if nl >= 0:
        return _STATUS_LINE.fullmatch(first) is None
    return _STATUS_PREFIX.fullmatch(first) is None


def _invalid_header(line: str, at: int) -> HTTPError:
    """ngx_http_proxy_process_header's message for a line invalid at ``at``."""
    return HTTPError(f'upstream sent invalid header: "{line[:at]}\\x{ord(line[at]):02x}..."', 502)


def _response_header(line: str) -> tuple[str, str] | None:
    """One header line of an upstream's head (without its LF) as
    ngx_http_parse_header_line reads it (underscores allowed); None for a line that is
    not kept: an IIS-style ``HTTP/...`` line, or a name without a hashed byte.

    A name ends at ":" (no colon: the whole line is the name, the value is empty); bytes
    other than controls, space, DEL and ":" only mark a name invalid, which the proxy
    module ignores. Spaces (not tabs) around the value are not part of it. A NUL, or a
    CR that does not end the line, is invalid.
    """
    first = line[0]
    if first <= " " or first == "\x7f" or first == ":":
        raise _invalid_header(line, 0)
    colon = len(line)
    for index, char in enumerate(line):
        if char == ":":
            colon = index
            break
        if char == "\r":
            if line[index:].strip("\r"):
                raise _invalid_header(line, index)
            colon = index
            break
        if char == "/" and index == 4 and line.startswith("HTTP"):
            return None
        if char <= " " or char == "\x7f":
            raise _invalid_header(line, index)
    name = line[:colon]
    if not any(char in _HASHED for char in name):
        return None
    value = line[colon + 1 :].rstrip("\r")
    for index, char in enumerate(value):
        if char == "\x00" or char == "\r":
            raise _invalid_header(line, colon + 1 + index)
    return name, value.strip(" ")


def _response_framing(headers: list[tuple[str, str]]) -> tuple[int | None, bool]:
    """``Content-Length`` and ``Transfer-Encoding`` as nginx 1.23 reads them from an
    upstream (ngx_http_upstream_process_content_length and _transfer_encoding): each at
    most once, not both, a length of digits only, no coding but "chunked"; anything else
    is an invalid header (502). nginx 1.22 took the last length, an invalid one as none,
    and any coding that contains "chunked" (docs/behavior.md)."""
    length: tuple[str, str] | None = None
    coding: tuple[str, str] | None = None
    for name, value in headers:
        low = name.lower()
        if low == "content-length":
            if length is not None or coding is not None:
                raise _framing_conflict(name, value, length, coding)
            length = (name, value)
        elif low == "transfer-encoding":
            if coding is not None or length is not None:
                raise _framing_conflict(name, value, coding, length)
            coding = (name, value)
    if coding is not None:
        if coding[1].lower() != "chunked":
            raise HTTPError(f'upstream sent unknown "Transfer-Encoding": "{coding[1]}"', 502)
        return None, True
    if length is None:
        return None, False
    value = length[1]
    if not value.isdigit() or not value.isascii() or int(value) > _MAX_OFF_T:
        message = f'upstream sent invalid "Content-Length" header: "{length[0]}: {value}"'
        raise HTTPError(message, 502)
    return int(value), False


def _framing_conflict(
    name: str, value: str, same: tuple[str, str] | None, other: tuple[str, str] | None
) -> HTTPError:
    if same is not None:
        return HTTPError(
            f'upstream sent duplicate header line: "{name}: {value}", '
            f'previous value: "{same[0]}: {same[1]}"',
            502,
        )
    return HTTPError(
        'upstream sent "Content-Length" and "Transfer-Encoding" headers at the same time', 502
    )


def parse_response_head(head: bytes) -> ResponseHead:
    """Parse one complete response head from an upstream, as nginx does
    (ngx_http_proxy_process_status_line, ngx_http_proxy_process_header): ``head`` ends
    where :func:`find_response_head_end` found its end.

    Raises:
        HTTPError: no valid status line (:data:`NO_STATUS_LINE`), an invalid header line
            or framing (the caller logs the message and answers 502).
    """
    text = head.decode("latin-1")
    fast = _PLAIN_RESPONSE.fullmatch(text)
    if fast is not None:
        # One scan found the common shape: "name: value" lines that split exactly.
        block = fast[4]
        headers = [tuple(line.split(": ", 1)) for line in block[:-2].split("\r\n")] if block else []
        # The framing lines: each is "\n" + its name + ": " here (names in any case).
        low = text.lower()
        at = low.find("\ncontent-length: ")
        coded = "\ntransfer-encoding: " in low
        value = text[at + 17 : text.find("\r", at)] if at >= 0 else ""
        if at < 0 and not coded:
            content_length, chunked = None, False
        elif (
            not coded
            and value.isdigit()
            and value.isascii()
            and len(value) < 19
            and low.find("\ncontent-length: ", at + 1) < 0
        ):
            content_length, chunked = int(value), False
        else:
            content_length, chunked = _response_framing(headers)
        return ResponseHead(
            int(fast[2]),
            fast[3] or "",
            "1." + fast[1],
            headers,
            content_length,
            chunked,
            len(head),
            text[9 : fast.start(4) - 2],
            1000 + int(fast[1]),
        )
    status = _STATUS_LINE.match(text)
    if status is None:
        raise HTTPError(NO_STATUS_LINE, 502)
    block = text[status.end() :]
    if block.endswith("\r\n") and _PLAIN_RESPONSE_LINES.fullmatch(block, 0, len(block) - 2):
        headers = (
            [
                (name, value.strip(" "))
                for name, _, value in (line.partition(":") for line in block[:-4].split("\r\n"))
            ]
            if len(block) > 2
            else []
        )
    else:
        blank = 2 if block.endswith("\r\n") and (len(block) == 2 or block[-3] == "\n") else 1
        lines = block[:-blank].split("\n")[:-1]
        headers = [kept for kept in map(_response_header, lines) if kept is not None]
    if _FRAMING_LINE.search(text) is None:
        content_length, chunked = None, False
    else:
        content_length, chunked = _response_framing(headers)
    major, minor = int(status[1]), int(status[2])
    return ResponseHead(
        status=int(status[4]),
        reason=status[5] or "",
        version=f"{major}.{minor}",
        headers=headers,
        content_length=content_length,
        chunked=chunked,
        raw_length=len(head),
        status_text=status[3],
        http_version=major * 1000 + minor,
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


class ChunkError(ValueError):
    """Invalid chunk framing; ``pieces`` are the body bytes decoded before it, in the
    same call."""

    def __init__(self, message: str, pieces: list[bytes]) -> None:
        super().__init__(message)
        self.pieces = pieces


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
            ChunkError: invalid chunk framing (the caller answers 400 or drops upstream);
                it carries the body bytes decoded before the fault.
        """
        out: list[bytes] = []
        try:
            self._decode(data, out)
        except ValueError as exc:
            raise ChunkError(str(exc), out) from None
        return out

    def _decode(self, data: bytes, out: list[bytes]) -> None:
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
            lf = buf.find(b"\n", 0, nl + 2 if nl >= 0 else len(buf))
            if lf >= 0 and lf != nl + 1:
                raise ValueError("bare LF in a chunk line")  # refused at once, not waited on
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
