"""Differential: the same ``nginx.conf`` served by real nginx and by wsgate, compared byte for byte.

For every :class:`Case` the same config text (the seed article's config, or a variant of
it) is served twice on the same ports, one after the other: first by nginx
(``run_nginx_async``), then by wsgate (``proxy_in_process``), each in front of its own
:class:`RecordingBackend` (one ``server`` in the upstream, so both proxies talk to a known
backend). The same raw bytes are written to each over a plain socket. Then
(nginx-semantics.md sections 1.4 to 1.7, 2 and 5.2):

* ``test_request_sent_upstream``: the request heads (and de-chunked bodies) the backend
  received are equal byte for byte;
* ``test_response_to_client``: every response the client read is equal after the ``Date``
  value and the server token (``Server:`` header, ``<hr><center>TOKEN</center>`` of error
  pages) are replaced by placeholders; chunked bodies are compared de-chunked (chunk
  boundaries follow the reads from upstream), with their header lines;
* ``test_access_log``: the lines of a custom ``log_format`` and of ``combined`` are equal,
  after ``[$time_local]`` is replaced by a placeholder and wsgate's logged sizes are
  shifted by what legitimately differs (server-token length, chunk boundaries:
  :func:`size_offsets`).

The two proxies run one after the other on the same ports, so the config text is the same
byte for byte (``$upstream_addr`` and ``Location`` ports included).

Each case also checks nginx's own answer (statuses, number of requests upstream), so a
case that silently stopped testing what it names fails too.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import uvloop

from tests.support.backend import RecordingBackend
from tests.support.confs import Variant, differential_conf
from tests.support.nginx import require_nginx, run_nginx_async
from tests.support.ports import free_ports
from tests.support.wsgate import proxy_in_process
from wsgate import __version__

IO_TIMEOUT = 2.0  # seconds for one step of a client script (loopback: far more than enough)
LOG_TIMEOUT = 1.5  # seconds for the access-log lines to appear after the client is done
CASE_TIMEOUT = 40.0  # seconds for one case, both proxies
WSGATE_TOKEN = f"wsgate/{__version__}"
PLACEHOLDER = "SERVER"

# --- client scripts ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write these bytes to the proxy."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Response:
    """Read interim (1xx other than 101) responses, then one final response."""

    method: str = "GET"


@dataclass(frozen=True, slots=True)
class ReadOne:
    """Read exactly one response, interim or not (``Expect: 100-continue``)."""

    method: str = "GET"


@dataclass(frozen=True, slots=True)
class Echo:
    """Read exactly ``size`` bytes of tunnel data."""

    size: int


@dataclass(frozen=True, slots=True)
class Eof:
    """The proxy must close the connection (after any bytes it still sends)."""


Step = Send | Response | ReadOne | Echo | Eof


@dataclass(frozen=True, slots=True)
class Message:
    """One HTTP response as the client read it."""

    status: int
    head: bytes  # status line to the blank line included
    body: bytes  # de-chunked
    raw: bytes  # head + body exactly as framed on the wire
    chunks: tuple[int, ...] | None  # chunk sizes, None when not chunked


@dataclass(frozen=True, slots=True)
class Seen:
    """A response after normalization (Date value and server token replaced)."""

    status: int
    head: tuple[str, ...]
    body: bytes  # de-chunked
    raw: bytes | None  # normalized wire bytes; None for a chunked body
    chunks: tuple[int, ...] | None = field(compare=False)  # reported, never compared


@dataclass(frozen=True, slots=True)
class Data:
    """Tunnel bytes read after a 101."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    """The proxy closed the connection; ``extra`` = bytes read before the EOF."""

    extra: bytes


@dataclass(frozen=True, slots=True)
class Broken:
    """A step failed (timeout, EOF in the middle of a response, reset)."""

    what: str


Item = Message | Data | Closed | Broken
SeenItem = Seen | Data | Closed | Broken


def request(*lines: str, body: bytes = b"") -> bytes:
    """A request head from its lines (request line first), then ``body``."""
    return "".join(line + "\r\n" for line in lines).encode("latin-1") + b"\r\n" + body


async def read_message(reader: asyncio.StreamReader, method: str) -> Message:
    """Read one response, framed as RFC 9112 section 6.3 says for a client."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = [(n.strip().lower(), v.strip()) for n, _, v in (x.partition(b":") for x in lines[1:])]
    te = b",".join(v for n, v in headers if n == b"transfer-encoding").lower()
    lengths = [v for n, v in headers if n == b"content-length"]
    if status < 200 or status in (204, 304) or method == "HEAD":
        return Message(status, head, b"", head, None)
    if b"chunked" in te:
        wire, decoded, sizes = bytearray(head), bytearray(), []
        while True:
            line = await reader.readuntil(b"\r\n")
            wire += line
            size = int(line.split(b";", 1)[0].strip(), 16)
            sizes.append(size)
            if size == 0:
                break
            data = await reader.readexactly(size + 2)
            if data[-2:] != b"\r\n":
                raise ValueError(f"chunk of {size} bytes not followed by CRLF: {bytes(wire)!r}")
            wire += data
            decoded += data[:-2]
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":  # trailer fields
            wire += line
        wire += b"\r\n"
        return Message(status, head, bytes(decoded), bytes(wire), tuple(sizes))
    if lengths:
        body = await reader.readexactly(int(lengths[0]))
    else:
        body = await reader.read()  # close-delimited
    return Message(status, head, body, head + body, None)


async def drive(port: int, steps: Sequence[Step]) -> list[Item]:
    """Run a client script on one connection; a failing step ends it (recorded as Broken)."""
    items: list[Item] = []
    async with asyncio.timeout(IO_TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for index, step in enumerate(steps):
            try:
                async with asyncio.timeout(IO_TIMEOUT):
                    if isinstance(step, Send):
                        writer.write(step.data)
                        await writer.drain()
                    elif isinstance(step, ReadOne):
                        items.append(await read_message(reader, step.method))
                    elif isinstance(step, Response):
                        while True:
                            message = await read_message(reader, step.method)
                            items.append(message)
                            if not 100 <= message.status < 200 or message.status == 101:
                                break
                    elif isinstance(step, Echo):
                        items.append(Data(await reader.readexactly(step.size)))
                    else:
                        items.append(Closed(await reader.read()))
            except TimeoutError:
                pending = bytes(reader._buffer)  # type: ignore[attr-defined]  # diagnostics only
                items.append(
                    Broken(f"step {index} {step}: no answer in {IO_TIMEOUT}s; unread {pending!r}")
                )
                break
            except asyncio.IncompleteReadError as exc:
                items.append(Broken(f"step {index} {step}: EOF after {exc.partial!r}"))
                break
            except (OSError, ValueError, asyncio.LimitOverrunError) as exc:
                items.append(Broken(f"step {index} {step}: {exc!r}"))
                break
    finally:
        writer.close()
        with suppress(OSError, TimeoutError):
            async with asyncio.timeout(IO_TIMEOUT):
                await writer.wait_closed()
    return items


# --- normalization ----------------------------------------------------------------------

_IMF_FIXDATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
_TIME_LOCAL = re.compile(r"\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]")
_COMBINED_SIZE = re.compile(r'" \d{3} (\d+) "')  # $body_bytes_sent after "$request" $status


def normalize(message: Message, token: str) -> Seen:
    """Replace the first ``Date`` value (if well-formed) and the server token.

    The error page's ``Content-Length`` is lowered by what the token replacement removed,
    so a wrong length stays visible.
    """
    body = message.body.replace(
        f"<hr><center>{token}</center>".encode(), f"<hr><center>{PLACEHOLDER}</center>".encode()
    )
    shrink = len(message.body) - len(body)
    head: list[str] = []
    date_seen = False
    for line in message.head[:-4].decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        lname, value = name.lower(), value.strip()
        if lname == "date" and not date_seen and _IMF_FIXDATE.fullmatch(value):
            date_seen = True
            line = line.replace(value, "DATE")
        elif lname == "server" and value == token:
            line = line.replace(token, PLACEHOLDER)
        elif lname == "content-length" and shrink and value.isdigit():
            line = line.replace(value, str(int(value) - shrink))
        head.append(line)
    raw = None
    if message.chunks is None:
        raw = "".join(line + "\r\n" for line in head).encode("latin-1") + b"\r\n" + body
    return Seen(message.status, tuple(head), body, raw, message.chunks)


def normalize_items(items: Sequence[Item], token: str) -> list[SeenItem]:
    return [normalize(i, token) if isinstance(i, Message) else i for i in items]


def final_responses(items: Sequence[Item]) -> list[Message]:
    """The responses that end a request (not ``100 Continue``; a 101 does)."""
    return [
        i
        for i in items
        if isinstance(i, Message) and not (100 <= i.status < 200 and i.status != 101)
    ]


def framing(message: Message) -> int:
    """Bytes of chunk framing around the body (0 unless chunked)."""
    return len(message.raw) - len(message.head) - len(message.body)


def size_offsets(
    nginx_items: Sequence[Item], wsgate_items: Sequence[Item], nginx_token: str
) -> list[tuple[int, int]] | None:
    """Per request: what to subtract from wsgate's logged ``$body_bytes_sent`` and
    ``$bytes_sent`` to compare them with nginx's; ``None`` if the responses do not pair.

    Two things differ for reasons that are not bugs: the server token's length (in
    ``Server`` and in error pages), and the chunk framing of a re-chunked body (nginx's
    chunks follow its reads from upstream: 12+13+12 bytes in one run, 12+25 in the
    next). Both are measured on the bytes the client read; anything else a proxy counts
    or misses (e.g. an interim ``100 Continue``, or the framing itself) stays visible.
    """
    ng, ws = final_responses(nginx_items), final_responses(wsgate_items)
    if len(ng) != len(ws):
        return None
    longer = len(WSGATE_TOKEN) - len(nginx_token)
    marker = WSGATE_TOKEN.encode()
    offsets = []
    for n, w in zip(ng, ws, strict=True):
        body = framing(w) - framing(n) + longer * w.body.count(marker)
        offsets.append((body, body + longer * w.head.count(marker)))
    return offsets


def shift_sizes(
    lines: Sequence[str], combined: Sequence[str], offsets: Sequence[tuple[int, int]] | None
) -> tuple[list[str], list[str]]:
    """``lines`` (log_format diff) and ``combined`` with sizes lowered by ``offsets``."""
    if offsets is None or len(offsets) != len(lines) or len(offsets) != len(combined):
        return list(lines), list(combined)
    fixed, fixed_combined = [], []
    for line, (body, total) in zip(lines, offsets, strict=True):
        fields = line.split(" ", 3)
        if len(fields) == 4 and fields[1].isdigit() and fields[2].isdigit():
            fields[1] = str(int(fields[1]) - body)
            fields[2] = str(int(fields[2]) - total)
        fixed.append(" ".join(fields))
    for line, (body, _) in zip(combined, offsets, strict=True):
        size = _COMBINED_SIZE.search(line)
        if size is not None:
            line = f"{line[: size.start(1)]}{int(size[1]) - body}{line[size.end(1) :]}"
        fixed_combined.append(line)
    return fixed, fixed_combined


# --- running one side -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    steps: tuple[Step, ...]
    statuses: tuple[int, ...]  # final statuses nginx answers (checked: the case means it)
    upstream: int  # request heads nginx sends to the backend
    variant: Variant = "seed"
    backend_alive: bool = True


@dataclass(frozen=True, slots=True)
class Observation:
    """What one proxy did for one case."""

    heads: list[bytes]
    bodies: list[bytes]
    upstream_connections: int
    items: list[Item]
    log: list[str]
    combined: list[str]

    @property
    def statuses(self) -> tuple[int, ...]:
        return tuple(i.status for i in final_responses(self.items))


@dataclass(frozen=True, slots=True)
class Pair:
    case: Case
    nginx_token: str
    nginx: Observation
    wsgate: Observation


async def wait_lines(path: Path, count: int) -> list[str]:
    """The lines of ``path`` once it has ``count`` of them, or what it has after
    LOG_TIMEOUT (a proxy that never logs shows up as a difference, not a hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LOG_TIMEOUT
    while True:
        lines = path.read_text(errors="surrogateescape").splitlines() if path.exists() else []
        if len(lines) >= count or loop.time() > deadline:
            return lines
        await asyncio.sleep(0.01)  # polling a file for a condition, bounded by the deadline


async def observe(
    case: Case, kind: Literal["nginx", "wsgate"], tmp: Path, listen: int, backend_port: int
) -> Observation:
    conf = differential_conf(case.variant, listen, backend_port)
    async with AsyncExitStack() as stack:
        backend = None
        if case.backend_alive:
            backend = await stack.enter_async_context(RecordingBackend("b1", backend_port))
        if kind == "nginx":
            run = await stack.enter_async_context(run_nginx_async(conf, tmp, [listen]))
            logs = run.prefix / "logs"
        else:
            tmp.mkdir()
            await stack.enter_async_context(proxy_in_process(conf, tmp))
            logs = tmp / "logs"
        items = await drive(listen, case.steps)
        lines = await wait_lines(logs / "diff.log", len(case.statuses))
        combined = await wait_lines(logs / "combined.log", len(case.statuses))
        return Observation(
            heads=list(backend.heads) if backend else [],
            bodies=list(backend.bodies) if backend else [],
            upstream_connections=backend.connections if backend else 0,
            items=items,
            log=lines,
            combined=combined,
        )


async def observe_pair(case: Case, tmp: Path, nginx_token: str) -> Pair:
    listen, backend_port = free_ports(2)
    # One after the other on the same ports, so the config text is the same byte for byte.
    nginx = await observe(case, "nginx", tmp / "ng", listen, backend_port)
    wsgate = await observe(case, "wsgate", tmp / "ws", listen, backend_port)
    return Pair(case, nginx_token, nginx, wsgate)


def nginx_server_token(binary: str) -> str:
    """``nginx/1.22.1`` from ``nginx -v``."""
    done = subprocess.run([binary, "-v"], capture_output=True, timeout=10, check=False)
    match = re.search(r"nginx version: (nginx/\S+)", done.stderr.decode(errors="replace"))
    assert match is not None, done.stderr
    return match[1]


# --- cases ------------------------------------------------------------------------------

WS_KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
TUNNEL_DATA = b"\x81\x05hello, bytes through the tunnel\x00\xff"


def simple(case_id: str, *lines: str, status: int = 200, variant: Variant = "seed") -> Case:
    """One keep-alive request, one response."""
    return Case(case_id, (Send(request(*lines)), Response()), (status,), 1, variant)


CASES: tuple[Case, ...] = (
    # --- request head sent upstream (section 1.4) ---
    simple(
        "get-transcript-1.4",
        "GET /foo?a=1 HTTP/1.1",
        "Host: Example.TEST:8080",
        "User-Agent: t",
        "X-Forwarded-For: 1.2.3.4",
        "X-Forwarded-For: 5.6.7.8",
        "Connection: keep-alive",
        "Keep-Alive: 300",
        "TE: trailers",
        "Expect: 100-continue",
        "X-Empty:",
        "X_under: 1",
        "Accept: */*",
        "Proxy-Connection: x",
    ),
    simple(
        "connection-tokens-not-stripped",
        "GET /hop HTTP/1.1",
        "Host: example.com",
        "Connection: keep-alive, X-Foo",
        "X-Foo: 1",
        "Upgrade:",
    ),
    Case(
        "websocket-handshake",
        (
            Send(
                request(
                    "GET /ws-hello HTTP/1.1",
                    "Host: example.test",
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    WS_KEY,
                    "Sec-WebSocket-Version: 13",
                    "Origin: http://example.test",
                )
            ),
            Response(),
            Send(TUNNEL_DATA),
            Echo(len(TUNNEL_DATA)),
        ),
        (101,),
        1,
    ),
    Case(
        "websocket-early-data",
        (
            Send(
                request(
                    "GET /ws-early HTTP/1.1",
                    "Host: example.test",
                    "Upgrade: WebSocket",
                    "Connection: keep-alive, Upgrade",
                    WS_KEY,
                    "Sec-WebSocket-Version: 13",
                )
                + TUNNEL_DATA
            ),
            Response(),
            Echo(len(TUNNEL_DATA)),
        ),
        (101,),
        1,
    ),
    Case(
        # ngx_http_parse_request_line skips any number of CR and LF before a request.
        "empty-lines-before-requests",
        (
            Send(
                b"\r\n\r\n\n\r\n"
                + request("GET /a HTTP/1.1", "Host: example.com")
                + b"\r\n\r\n\r\n"
                + request("GET /b HTTP/1.1", "Host: example.com", "Connection: close")
            ),
            Response(),
            Response(),
            Eof(),
        ),
        (200, 200),
        2,
    ),
    Case(
        "http10-no-host",
        (Send(request("GET /old HTTP/1.0", "User-Agent: old/1.0")), Response(), Eof()),
        (200,),
        1,
    ),
    Case(
        "post-content-length",
        (
            Send(
                request(
                    "POST /submit HTTP/1.1",
                    "Host: example.com",
                    "Content-Type: text/plain",
                    "Content-Length: 11",
                    body=b"hello world",
                )
            ),
            Response(),
        ),
        (200,),
        1,
    ),
    Case(
        "post-chunked",
        (
            Send(
                request(
                    "POST /submit?x=1 HTTP/1.1",
                    "Host: example.com",
                    "Transfer-Encoding: chunked",
                    "Content-Type: text/plain",
                    body=b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
                )
            ),
            Response(),
        ),
        (200,),
        1,
    ),
    Case(
        "expect-100-continue-post",
        (
            Send(
                request(
                    "POST /expect HTTP/1.1",
                    "Host: example.com",
                    "Content-Length: 5",
                    "Expect: 100-continue",
                )
            ),
            ReadOne(),
            Send(b"abcde"),
            Response(),
        ),
        (200,),
        1,
    ),
    simple(
        "xff-empty",
        "GET /xff HTTP/1.1",
        "Host: example.com",
        "X-Forwarded-For:",
    ),
    simple(
        "host-port-upper-case",
        "GET /host HTTP/1.1",
        "Host: WWW.Example.COM:8080",
    ),
    simple("absolute-form", "GET http://example.test/abs?x HTTP/1.1", "Host: other.test"),
    simple(
        "absolute-form-port-upper-case",
        "GET http://Example.TEST:8080/abs/%41?x=%20 HTTP/1.1",
        "Host: other.test",
    ),
    simple(
        "underscore-header",
        "GET /u HTTP/1.1",
        "Host: example.com",
        "X_Custom_Header: 1",
        "X-Normal: 2",
        "under_score: 3",
    ),
    simple(
        "duplicate-headers",
        "GET /dup HTTP/1.1",
        "Host: example.com",
        "X-Dup: a",
        "User-Agent: ua-one",
        "X-Dup: b",
        "Cookie: a=1",
        "Cookie: b=2",
        "User-Agent: ua-two",
    ),
    Case(
        "bare-proxy-pass-with-uri",
        (
            Send(
                request(
                    "GET /h?q=1 HTTP/1.0",
                    "Host: example.test",
                    "User-Agent: curl/7.88.1",
                    "Accept: */*",
                )
            ),
            Response(),
            Eof(),
        ),
        (200,),
        1,
        "bare",
    ),
    simple(
        "bare-websocket-not-forwarded",
        "GET /ws-bare HTTP/1.1",
        "Host: example.test",
        "Upgrade: websocket",
        "Connection: Upgrade",
        WS_KEY,
        "Sec-WebSocket-Version: 13",
        variant="bare",
    ),
    simple("p1-prefix", "GET /p1/a/b?x=1 HTTP/1.1", "Host: example.com"),
    simple("p1-dot-segments", "GET /p1/a%20b/../c?y HTTP/1.1", "Host: example.com"),
    simple(
        "p1-escapes-reencoded",
        "GET /p1/%7Efoo%3Fbar%23x/a%2Fb%20c?k=%2F HTTP/1.1",
        "Host: example.com",
    ),
    Case(
        "p1-auto-redirect-301",
        (Send(request("GET /p1?z=1 HTTP/1.1", "Host: example.com")), Response()),
        (301,),
        0,
    ),
    simple(
        "query-strings",
        "GET /search?q=a+b&x=%41&empty=&&flag&utf=%E2%9C%93&sp=a%20b HTTP/1.1",
        "Host: example.com",
    ),
    simple("percent-escapes-raw", "GET /a%2Fb/./c%20d/..//e%7e?z=%41 HTTP/1.1", "Host: x.test"),
    # client_header_buffer_size 256, large_client_header_buffers 2 512 (variant "buffers"):
    # ngx_http_alloc_large_header_buffer moves a line that does not fit into a large buffer.
    simple("buffers-fit-first", "GET /small HTTP/1.1", "Host: example.com", variant="buffers"),
    simple(
        "buffers-line-moved-to-a-large-buffer",
        "GET /moved HTTP/1.1",
        "Host: example.com",
        "X-Long: " + "a" * 300,
        variant="buffers",
    ),
    Case(
        "buffers-header-line-too-long-400",
        (
            Send(request("GET /long HTTP/1.1", "Host: example.com", "X-Long: " + "b" * 520)),
            Response(),
            Eof(),
        ),
        (400,),
        0,
        "buffers",
    ),
    Case(
        "buffers-out-of-large-buffers-400",
        (
            Send(
                request(
                    "GET /many HTTP/1.1",
                    "Host: example.com",
                    "X-One: " + "c" * 300,
                    "X-Two: " + "d" * 300,
                    "X-Three: " + "e" * 300,
                )
            ),
            Response(),
            Eof(),
        ),
        (400,),
        0,
        "buffers",
    ),
    Case(
        "buffers-request-line-too-long-414",
        (Send(request("GET /" + "f" * 600 + " HTTP/1.1", "Host: example.com")), Response(), Eof()),
        (414,),
        0,
        "buffers",
    ),
    simple(
        "header-values-with-tabs-and-spaces",
        "GET /tabs HTTP/1.1",
        "Host: example.com",
        "X-Lead-Tab:\tv1",
        "X-Trail-Tab: v2\t",
        "X-Spaces:   v3   ",
        "X-Inner: a\tb  c",
        "User-Agent: \tagent\t",
    ),
    Case(
        "bad-percent-escape-400",
        (Send(request("GET /bad%zz HTTP/1.1", "Host: example.com")), Response(), Eof()),
        (400,),
        0,
    ),
    simple("raw-utf8-path", "GET /caf\xc3\xa9?q=\xc3\xa9 HTTP/1.1", "Host: example.com"),
    Case(
        "duplicate-host-400",
        (
            Send(request("GET /dh HTTP/1.1", "Host: a.test", "Host: b.test")),
            Response(),
            Eof(),
        ),
        (400,),
        0,
    ),
    Case(
        "content-length-and-chunked-400",
        (
            Send(
                request(
                    "POST /both HTTP/1.1",
                    "Host: example.com",
                    "Content-Length: 3",
                    "Transfer-Encoding: chunked",
                    body=b"3\r\nabc\r\n0\r\n\r\n",
                )
            ),
            Response(),
            Eof(),
        ),
        (400,),
        0,
    ),
    # --- response to the client (sections 1.5 to 1.7) ---
    Case(
        "status-200-connection-close",
        (
            Send(request("GET /status/200 HTTP/1.1", "Host: example.com", "Connection: close")),
            Response(),
            Eof(),
        ),
        (200,),
        1,
    ),
    simple("chunked-http11", "GET /chunked HTTP/1.1", "Host: example.com"),
    Case(
        "chunked-http10",
        (Send(request("GET /chunked HTTP/1.0", "Host: example.com")), Response(), Eof()),
        (200,),
        1,
    ),
    simple("close-delimited-http11", "GET /close-delimited HTTP/1.1", "Host: example.com"),
    Case(
        "close-delimited-http10",
        (Send(request("GET /close-delimited HTTP/1.0", "Host: example.com")), Response(), Eof()),
        (200,),
        1,
    ),
    Case(
        "upgrade-426-then-http",
        (
            Send(
                request(
                    "GET /426 HTTP/1.1",
                    "Host: example.com",
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    WS_KEY,
                    "Sec-WebSocket-Version: 13",
                )
            ),
            Response(),
            Send(request("GET /after-426 HTTP/1.1", "Host: example.com")),
            Response(),
        ),
        (426, 200),
        2,
    ),
    Case(
        "dead-backend-502",
        (Send(request("GET /dead HTTP/1.1", "Host: example.com")), Response()),
        (502,),
        0,
        backend_alive=False,
    ),
    simple("upstream-404", "GET /status/404 HTTP/1.1", "Host: example.com", status=404),
    Case(
        "head-then-get",
        (
            Send(request("HEAD /status/200 HTTP/1.1", "Host: example.com")),
            Response("HEAD"),
            Send(request("GET /after-head HTTP/1.1", "Host: example.com")),
            Response(),
        ),
        (200, 200),
        2,
    ),
    Case(
        "http10-keep-alive",
        (
            Send(request("GET /k1 HTTP/1.0", "Host: example.com", "Connection: keep-alive")),
            Response(),
            Send(request("GET /k2 HTTP/1.0", "Host: example.com")),
            Response(),
            Eof(),
        ),
        (200, 200),
        2,
    ),
    Case(
        "pipelined-gets",
        (
            Send(
                request("GET /pipe1 HTTP/1.1", "Host: example.com")
                + request("GET /pipe2 HTTP/1.1", "Host: example.com", "Connection: close")
            ),
            Response(),
            Response(),
            Eof(),
        ),
        (200, 200),
        2,
    ),
)


@pytest.fixture(scope="module", params=[pytest.param(c, id=c.id) for c in CASES])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """Both proxies' observations for one case (computed once for its three tests)."""
    case: Case = request.param
    token = nginx_server_token(require_nginx())
    tmp = tmp_path_factory.mktemp(case.id)

    async def bounded() -> Pair:
        async with asyncio.timeout(CASE_TIMEOUT):
            return await observe_pair(case, tmp, token)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(bounded())


def explain(what: str, nginx: Sequence[object], wsgate: Sequence[object]) -> str:
    """Both sequences one element a line, ``!`` marking the entries that differ."""
    out = [f"{what} differ (nginx vs wsgate):"]
    for index in range(max(len(nginx), len(wsgate))):
        ng = repr(nginx[index]) if index < len(nginx) else "<missing>"
        ws = repr(wsgate[index]) if index < len(wsgate) else "<missing>"
        mark = " " if ng == ws else "!"
        out += [f"{mark}[{index}]  nginx: {ng}", f"{mark}[{index}] wsgate: {ws}"]
    return "\n".join(out)


def test_request_sent_upstream(pair: Pair) -> None:
    ng, ws = pair.nginx, pair.wsgate
    assert len(ng.heads) == pair.case.upstream, f"nginx sent {ng.heads!r}"
    assert ws.heads == ng.heads, explain("request heads", ng.heads, ws.heads)
    assert ws.bodies == ng.bodies, explain("request bodies", ng.bodies, ws.bodies)
    assert ws.upstream_connections == ng.upstream_connections


def test_response_to_client(pair: Pair) -> None:
    ng, ws = pair.nginx, pair.wsgate
    assert ng.statuses == pair.case.statuses, f"nginx answered {ng.items!r}"
    expected = normalize_items(ng.items, pair.nginx_token)
    got = normalize_items(ws.items, WSGATE_TOKEN)
    assert got == expected, explain("responses", expected, got)


def test_access_log(pair: Pair) -> None:
    ng, ws = pair.nginx, pair.wsgate
    assert len(ng.log) == len(pair.case.statuses), ng.log
    offsets = size_offsets(ng.items, ws.items, pair.nginx_token)
    log, combined = shift_sizes(ws.log, ws.combined, offsets)
    raw = f"\nwsgate's lines as logged: {ws.log!r}" if log != ws.log else ""
    assert log == ng.log, explain("log_format diff lines", ng.log, log) + raw
    expected = [_TIME_LOCAL.sub("[TIME]", line) for line in ng.combined]
    got = [_TIME_LOCAL.sub("[TIME]", line) for line in combined]
    assert got == expected, explain("combined lines", expected, got)
