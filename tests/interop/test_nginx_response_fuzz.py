"""Differential fuzz: malformed and unusual upstream responses, real nginx vs wsgate.

A fixed seed generates a few hundred responses by mutating a valid one (``200`` with
``Content-Length``, chunked, close-delimited; a ``101`` to a WebSocket handshake; interim
``1xx`` answers before a ``200``; ``204`` / ``304``; answers to ``HEAD``): the status line
(versions, codes, reasons, garbage), header lines (no colon, space before the colon,
folding, NUL and control bytes, non-ASCII, ``Content-Length`` / ``Transfer-Encoding``
conflicts and codings, ``Connection`` / ``Keep-Alive`` / ``Upgrade``, ``Server`` /
``Date`` twice, heads near ``proxy_buffer_size``), bodies (short or long for their
length, bad chunk sizes, extensions, trailers, no last chunk, bytes after the end), bare
LF line endings and writes split at chosen offsets.

A :class:`~tests.support.scripted_peer.ScriptPlayer` plays each case's bytes to the
proxy when it asks for the case's path (``/c123``), then closes the connection or keeps
it open as the case says (a script's writes are a few milliseconds apart, so that they
usually reach the proxy as separate reads; no comparison depends on it). The differential
config
(:func:`tests.support.confs.differential_conf`, the seed article's location, with an
``error_log`` line) is served by nginx, every case's request is sent on its own
connection, then the same config on the same ports is served by wsgate and the same
requests are sent again.

What the client sees is recorded as a list of events: each response as its status line,
its header lines (``Date`` and the server token normalised as in
``test_nginx_differential.py``), its framing (``length``, ``chunked``, ``close``,
``none``) and its body (de-chunked); ``tunnel`` and the bytes after a ``101``; ``EOF``
when the proxy closed, ``timeout`` when it said nothing for :data:`IO_TIMEOUT`. After a
response that keeps the connection alive, a probe request (``Connection: close``) is sent
on it, so a connection kept in a bad state shows. The error log's ``[warn]`` / ``[error]``
lines of each request are compared too, by their message up to its details.

Per case the events and the log lines must be equal, unless :func:`documented` names the
documented difference (docs/behavior.md) that explains that very difference. The table of
all differences is written to ``differences.txt`` in the test's temporary directory, and
the undocumented ones are in the failure message.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import pytest
import uvloop

from tests.support import fuzz
from tests.support.backend import websocket_accept
from tests.support.confs import differential_conf
from tests.support.nginx import NGINX, run_nginx_async
from tests.support.ports import free_ports
from tests.support.scripted_peer import Script, ScriptPlayer
from tests.support.wsgate import proxy_in_process
from wsgate import __version__

SEED = 0x5EED_2E5B
COMBINED = 150  # cases with two or three mutations, after one case per option
IO_TIMEOUT = 2.0  # seconds without an answer before a case records "timeout"
CASE_TIMEOUT = 3 * IO_TIMEOUT  # seconds for a whole case before it records "deadline"
LANES = 16  # connections in flight at once (each case has its own)
RUN_TIMEOUT = 40.0  # seconds for all cases on one side
MAX_EVENTS = 24  # events recorded for one case at most
READ_LIMIT = 1 << 20
SHOWN = 120  # body bytes shown in an event

WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
TOKENS = (b"nginx/1.22.1", f"wsgate/{__version__}".encode())
T = TypeVar("T")

Request = Literal["get", "head", "ws", "get10"]

# --- responses --------------------------------------------------------------------------


@dataclass(slots=True)
class Reply:
    """A response being mutated; :meth:`render` makes the bytes, :meth:`writes` the
    pieces the peer writes."""

    headers: list[bytes]  # header lines without their line ending
    body: bytes = b""
    version: bytes = b"HTTP/1.1"
    code: bytes = b"200"
    reason: bytes | None = b"OK"  # None: the status line ends after the code
    line: bytes | None = None  # the whole status line, when it is no longer one
    eol: bytes = b"\r\n"
    end: bytes | None = None  # the blank line (default: eol)
    interim: list[bytes] = field(default_factory=list)  # whole 1xx responses sent first
    after: bytes = b""  # bytes after the response
    close: bool = False  # close after the last write (else wait for the proxy)
    splits: list[int] = field(default_factory=list)  # offsets where writes are cut
    fill: int | None = None  # the head, blank line included, is this many bytes
    edits: list[Callable[[bytes], bytes]] = field(default_factory=list)

    def head(self) -> bytes:
        line = self.line
        if line is None:
            line = self.version + b" " + self.code
            if self.reason is not None:
                line += b" " + self.reason
        headers = list(self.headers)
        if self.fill is not None:
            size = len(self._join(line, headers))
            name = b"X-Fill: "
            headers.insert(0, name + b"f" * max(self.fill - size - len(name) - len(self.eol), 0))
        return self._join(line, headers)

    def _join(self, line: bytes, headers: list[bytes]) -> bytes:
        end = self.eol if self.end is None else self.end
        return line + self.eol + b"".join(h + self.eol for h in headers) + end

    def render(self) -> bytes:
        data = b"".join(self.interim) + self.head() + self.body + self.after
        for edit in self.edits:
            data = edit(data)
        return data

    def writes(self) -> tuple[bytes, ...]:
        data = self.render()
        cuts = sorted({c for c in self.splits if 0 < c < len(data)})
        bounds = [0, *cuts, len(data)]
        return tuple(data[a:b] for a, b in itertools.pairwise(bounds))


LENGTH_BODY = b"hello world"
CHUNKED_BODY = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"


def base_length() -> Reply:
    return Reply(
        [b"Content-Type: text/plain", b"X-Base: length", b"Content-Length: 11"], LENGTH_BODY
    )


def base_chunked() -> Reply:
    return Reply(
        [b"Content-Type: text/plain", b"X-Base: chunked", b"Transfer-Encoding: chunked"],
        CHUNKED_BODY,
    )


def base_eof() -> Reply:
    return Reply([b"Content-Type: text/plain", b"X-Base: eof"], LENGTH_BODY, close=True)


def base_upgrade() -> Reply:
    return Reply(
        [
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Accept: " + websocket_accept(WS_KEY),
            b"X-Base: upgrade",
        ],
        b"tunnel bytes",
        code=b"101",
        reason=b"Switching Protocols",
        close=True,
    )


def base_interim() -> Reply:
    reply = base_length()
    reply.interim.append(b"HTTP/1.1 100 Continue\r\n\r\n")
    return reply


def base_no_content() -> Reply:
    return Reply([b"X-Base: 204"], code=b"204", reason=b"No Content")


def base_not_modified() -> Reply:
    return Reply([b"X-Base: 304", b'ETag: "e1"'], code=b"304", reason=b"Not Modified")


def base_head() -> Reply:
    return Reply([b"Content-Type: text/plain", b"X-Base: head", b"Content-Length: 11"])


Base = Literal["length", "chunked", "eof", "upgrade", "interim", "204", "304", "head", "get10"]
BASES: dict[Base, tuple[Callable[[], Reply], Request]] = {
    "length": (base_length, "get"),
    "chunked": (base_chunked, "get"),
    "eof": (base_eof, "get"),
    "upgrade": (base_upgrade, "ws"),
    "interim": (base_interim, "get"),
    "204": (base_no_content, "get"),
    "304": (base_not_modified, "get"),
    "head": (base_head, "head"),
    "get10": (base_chunked, "get10"),
}

Mutation = Callable[[random.Random, Reply], str]


def _set(reply: Reply, name: bytes, value: bytes | None) -> None:
    """Replace every ``name`` line by one with ``value`` (or remove them if None)."""
    low = name.lower() + b":"
    kept = [h for h in reply.headers if not h.lower().startswith(low)]
    reply.headers = kept if value is None else [*kept, name + b": " + value]


def _insert(rng: random.Random, reply: Reply, *lines: bytes) -> None:
    at = rng.randrange(len(reply.headers) + 1)
    reply.headers[at:at] = lines


def _framing(reply: Reply, kind: Literal["length", "chunked", "none"]) -> None:
    """Make the response framed by ``kind`` (the body is set by the caller)."""
    _set(reply, b"Content-Length", None)
    _set(reply, b"Transfer-Encoding", None)
    if kind == "length":
        _set(reply, b"Content-Length", b"%d" % len(reply.body))
    elif kind == "chunked":
        _set(reply, b"Transfer-Encoding", b"chunked")


def m_version(rng: random.Random, reply: Reply) -> str:
    reply.version = rng.choice(VERSIONS)
    reply.close = True
    return f"version={reply.version.decode('latin-1')!r}"


def m_code(rng: random.Random, reply: Reply) -> str:
    reply.code = rng.choice(CODES)
    return f"code={reply.code.decode('latin-1')!r}"


def m_reason(rng: random.Random, reply: Reply) -> str:
    reply.reason = rng.choice(REASONS)
    shown = None if reply.reason is None else reply.reason.decode("latin-1")[:16]
    return f"reason={shown!r}"


def m_status_line(rng: random.Random, reply: Reply) -> str:
    reply.line = rng.choice(STATUS_LINES)
    reply.close = True  # so that a proxy that reads the rest as a body ends it
    return f"status-line={reply.line.decode('latin-1')[:24]!r}"


def m_line(lines: Sequence[bytes]) -> Mutation:
    def mutate(rng: random.Random, reply: Reply) -> str:
        line = rng.choice(lines)
        _insert(rng, reply, line)
        return f"header={line.decode('latin-1')[:40]!r}"

    return mutate


def m_fold(rng: random.Random, reply: Reply) -> str:
    first = rng.random() < 0.3
    if first:
        reply.headers.insert(0, b" X-Lead: v")
    else:
        _insert(rng, reply, b"X-Fold: a", rng.choice([b" folded", b"\tfolded"]))
    return "obs-fold" + ("-first" if first else "")


def m_length(rng: random.Random, reply: Reply) -> str:
    """Content-Length lines against an 11-byte body (the response keeps its body)."""
    lines = rng.choice(LENGTHS)
    _set(reply, b"Content-Length", None)
    _set(reply, b"Transfer-Encoding", None)
    if not reply.body:
        reply.body = LENGTH_BODY
    _insert(rng, reply, *lines)
    return "length=" + "+".join(repr(x.decode("latin-1")[16:]) for x in lines)


def m_coding(rng: random.Random, reply: Reply) -> str:
    """Transfer-Encoding lines (with or without Content-Length) on a chunked body."""
    lines = rng.choice(CODINGS)
    _set(reply, b"Content-Length", None)
    _set(reply, b"Transfer-Encoding", None)
    reply.body = CHUNKED_BODY
    _insert(rng, reply, *lines)
    return "coding=" + "+".join(repr(x.decode("latin-1")) for x in lines)


def m_connection(rng: random.Random, reply: Reply) -> str:
    lines = rng.choice(CONNECTIONS)
    _insert(rng, reply, *lines)
    return "connection=" + "+".join(repr(x.decode("latin-1")) for x in lines)


def m_server_date(rng: random.Random, reply: Reply) -> str:
    lines = rng.choice(SERVER_DATE)
    _insert(rng, reply, *lines)
    return "server-date=" + "+".join(repr(x.decode("latin-1")[:20]) for x in lines)


def m_hidden(rng: random.Random, reply: Reply) -> str:
    line = rng.choice(HIDDEN_LINES)
    _insert(rng, reply, line)
    return f"hidden={line.decode('latin-1')!r}"


def m_fill(rng: random.Random, reply: Reply) -> str:
    reply.fill = rng.choice(FILLS)
    return f"head-size={reply.fill}"


def m_many(rng: random.Random, reply: Reply) -> str:
    count = rng.choice([60, 100])
    _insert(rng, reply, *(b"X-Many-%d: v" % i for i in range(count)))
    return f"many-headers={count}"


def m_body_length(rng: random.Random, reply: Reply) -> str:
    """A body shorter or longer than its Content-Length."""
    choice = rng.choice(["short-close", "short-keep", "long-keep", "long-close", "zero-extra"])
    reply.body = LENGTH_BODY
    _framing(reply, "length")
    if choice.startswith("short"):
        reply.body = LENGTH_BODY[:5]
    elif choice.startswith("long"):
        reply.after = b"EXTRA BYTES"
    else:
        _set(reply, b"Content-Length", b"0")
        reply.after = LENGTH_BODY
    reply.close = choice.endswith("close")
    return f"body-length={choice}"


def m_chunks(rng: random.Random, reply: Reply) -> str:
    """A chunked body, valid or not."""
    body, close = rng.choice(CHUNKED_BODIES)
    reply.body = body
    _framing(reply, "chunked")
    reply.close = close
    return f"chunks={body[:24].decode('latin-1')!r}" + ("-close" if close else "")


def m_after(rng: random.Random, reply: Reply) -> str:
    """Bytes after the response's end (another response, or garbage)."""
    reply.after = rng.choice(AFTER)
    reply.close = rng.random() < 0.5
    return f"after={reply.after[:16].decode('latin-1')!r}" + ("-close" if reply.close else "")


def m_accept(rng: random.Random, reply: Reply) -> str:
    """The handshake's answer: no accept, a wrong one, two."""
    choice = rng.choice(["missing", "wrong", "twice"])
    accept = b"Sec-WebSocket-Accept: " + websocket_accept(WS_KEY)
    _set(reply, b"Sec-WebSocket-Accept", None)
    if choice == "wrong":
        _insert(rng, reply, b"Sec-WebSocket-Accept: " + websocket_accept(b"other"))
    elif choice == "twice":
        _insert(rng, reply, accept, accept)
    return f"accept={choice}"


def m_close(rng: random.Random, reply: Reply) -> str:
    reply.close = not reply.close
    return "close" if reply.close else "keep"


def m_interim(rng: random.Random, reply: Reply) -> str:
    interim = rng.choice(INTERIM)
    reply.interim[:0] = interim
    return "interim=" + "+".join(repr(x.split(b"\r\n")[0].decode("latin-1")) for x in interim)


def m_eol(rng: random.Random, reply: Reply) -> str:
    choice = rng.choice(["lf", "status-lf", "one-lf", "final-lf", "cr-cr-lf"])
    if choice == "lf":
        reply.eol = b"\n"
    elif choice == "final-lf":
        reply.end = b"\n"
    else:
        index = 0 if choice == "status-lf" else rng.randrange(1, len(reply.headers) + 1)
        bad = b"\r\r\n" if choice == "cr-cr-lf" else b"\n"
        at = len(b"".join(reply.interim))
        reply.edits.append(lambda data: data[:at] + _replace_eol(data[at:], index, bad))
    return f"eol={choice}"


def _replace_eol(data: bytes, index: int, new: bytes) -> bytes:
    """Replace the CRLF that ends line ``index`` (0: the status line)."""
    pos = -1
    for _ in range(index + 1):
        pos = data.find(b"\r\n", pos + 1)
        if pos < 0:
            return data
    return data[:pos] + new + data[pos + 2 :]


def m_split(rng: random.Random, reply: Reply) -> str:
    """Cut the bytes into writes: inside the status line, a header, the blank line or
    the body."""
    data = reply.render()
    head_end = data.find(b"\r\n\r\n")
    choice = rng.choice(["status", "header", "blank", "body", "bytes"])
    if choice == "status":
        cuts = [rng.randrange(1, 12)]
    elif choice == "header":
        cuts = [rng.randrange(14, max(head_end, 15))]
    elif choice == "blank":
        cuts = [head_end + rng.randrange(1, 4)] if head_end > 0 else [len(data) // 2]
    elif choice == "body":
        cuts = [head_end + 4 + rng.randrange(1, 8)] if head_end > 0 else [len(data) - 2]
    else:
        cuts = list(range(1, min(len(data), 40)))
    reply.splits = cuts
    return f"split={choice}"


VERSIONS = (
    b"HTTP/1.0",
    b"HTTP/1.2",
    b"HTTP/2.0",
    b"HTTP/2",
    b"HTTP/0.9",
    b"HTTP/1",
    b"HTTP/1.",
    b"http/1.1",
    b"HTTP/1.1x",
    b"HTTP/10.1",
    b"HTTP/01.1",
    b"HTTP/1.01",
    b"HTTPS/1.1",
    b"ICY",
    b"HTTP/1.1 ",
)

CODES = (
    b"000",
    b"099",
    b"199",
    b"299",
    b"399",
    b"499",
    b"599",
    b"600",
    b"999",
    b"20",
    b"2000",
    b"20x",
    b" 200",
    b"200.1",
    b"201",
    b"404",
    b"500",
    b"502",
    b"426",
)

REASONS = (
    None,
    b"",
    b"Fine",
    b"OK OK  with spaces ",
    b"caf\xc3\xa9",
    b"tab\there",
    b"ctl\x01char",
    b"del\x7f",
    b"nul\x00byte",
    b"r" * 600,
)

STATUS_LINES = (
    b"garbage",
    b"",
    b" HTTP/1.1 200 OK",
    b"HTTP/1.1 OK 200",
    b"HTTP/1.1",
    b"HTTP 200 OK",
    b"HTTP/1.1\t200 OK",
    b"200 OK",
    b"\x00HTTP/1.1 200 OK",
    b"HTTP/1.1 200 OK\x00",
)

NO_COLON = (b"X-NoColon value", b"X-NoColon", b"Content-Length 5")
SPACE_BEFORE_COLON = (b"X-Sp : v", b"X-Tab\t: v", b"Content-Length : 5", b"Server : s")
EMPTY_NAME = (b": v", b":", b" : v")
NUL = (b"X-Nul: a\x00b", b"X-N\x00ul: v", b"X-Nul: \x00")
CTL = (b"X-Ctl: a\x01b", b"X-Del: a\x7fb", b"X-D\x7fel: v", b"X-Cr: a\rb", b"X-Esc: \x1b[31m")
HIGH = (b"X-High: caf\xc3\xa9", b"X-Caf\xc3\xa9: v", b"\xff: v", b"X-Latin: \xe9t\xe9")
NAME_CHARS = (b"X@Y: v", b"X.Y: v", b"X/Y: v", b"X{Y}: v", b'X"Y: v', b"X_Under: v", b"_: v")
VALUES = (
    b"X-Empty:",
    b"X-Sp:   ",
    b"X-Ws: \t v \t",
    b"X-Tail: v  ",
    b"X-Long: " + b"v" * 900,
    b"X-Colon: a:b: c",
)
ODD_LINES = (
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 500 Boom",
    b"Status: 500",
    b"Location: /elsewhere",
    b"Set-Cookie: a=1",
    b"Set-Cookie: b=2",
    b"Vary: Accept",
    b"Link: </x>; rel=preload",
    b'ETag: "e2"',
    b"Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT",
    b"Content-Type: text/html",
    b"Cache-Control: no-cache",
)

LENGTHS: tuple[tuple[bytes, ...], ...] = (
    (b"Content-Length: 11", b"Content-Length: 11"),
    (b"Content-Length: 11", b"Content-Length: 5"),
    (b"Content-Length: 5", b"Content-Length: 11"),
    (b"Content-Length: 11, 11",),
    (b"Content-Length: abc",),
    (b"Content-Length: -1",),
    (b"Content-Length: +11",),
    (b"Content-Length:  11 ",),
    (b"Content-Length: 0x0b",),
    (b"Content-Length: 011",),
    (b"Content-Length: 99999999999999999999",),
    (b"Content-Length: 5",),
    (b"Content-Length: 1e1",),
    (b"Content-Length:",),
    (b"content-length: 11",),
    (b"CONTENT-LENGTH: 11",),
)

CODINGS: tuple[tuple[bytes, ...], ...] = (
    (b"Transfer-Encoding: chunked", b"Content-Length: 5"),
    (b"Content-Length: 5", b"Transfer-Encoding: chunked"),
    (b"Transfer-Encoding: chunked", b"Content-Length: abc"),
    (b"Transfer-Encoding: gzip, chunked",),
    (b"Transfer-Encoding: chunked, gzip",),
    (b"Transfer-Encoding: chunked, identity",),
    (b"Transfer-Encoding: identity",),
    (b"Transfer-Encoding: gzip",),
    (b"Transfer-Encoding: Chunked",),
    (b"Transfer-Encoding: CHUNKED",),
    (b"Transfer-Encoding:  chunked ",),
    (b"Transfer-Encoding: xchunked",),
    (b"Transfer-Encoding: chunkedx",),
    (b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
    (b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked"),
    (b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip"),
    (b"Transfer-Encoding:",),
    (b"Transfer-Encoding: chunked;q=1",),
)

CONNECTIONS: tuple[tuple[bytes, ...], ...] = (
    (b"Connection: close",),
    (b"Connection: keep-alive",),
    (b"Connection: keep-alive", b"Keep-Alive: timeout=5, max=100"),
    (b"Connection: Upgrade", b"Upgrade: websocket"),
    (b"Upgrade: h2c",),
    (b"Connection: X-Hop", b"X-Hop: 1"),
    (b"Connection: closed",),
    (b"Connection: CLOSE",),
    (b"Proxy-Connection: close",),
    (b"Keep-Alive: 5",),
    (b"Connection: keep-alive, close",),
)

SERVER_DATE: tuple[tuple[bytes, ...], ...] = (
    (b"Server: backend/1.0",),
    (b"Server: one", b"Server: two"),
    (b"Date: Mon, 01 Jan 2024 00:00:00 GMT",),
    (b"Date: a", b"Date: b"),
    (b"Server:",),
    (b"Date:",),
    (b"Server: x", b"Date: y", b"Server: z"),
)

HIDDEN_LINES = (
    b"X-Accel-Redirect: /internal",
    b"X-Accel-Buffering: no",
    b"X-Accel-Expires: 10",
    b"X-Accel-Limit-Rate: 1000000",
    b"X-Accel-Charset: utf-8",
    b"X-Pad: avoid browser bug",
    b"Trailer: X-T",
    b"TE: trailers",
)

FILLS = (3900, 4000, 4090, 4094, 4095, 4096, 4097, 4100, 4200, 8000)

CHUNKED_BODIES: tuple[tuple[bytes, bool], ...] = (
    (b"5;ext=1\r\nhello\r\n0\r\n\r\n", False),
    (b"5;\r\nhello\r\n0\r\n\r\n", False),
    (b"5 \r\nhello\r\n0\r\n\r\n", False),
    (b"5\t;x\r\nhello\r\n0\r\n\r\n", False),
    (b"0005\r\nhello\r\n0\r\n\r\n", False),
    (b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n", False),
    (b"5\r\nhello\r\n0;ext\r\n\r\n", False),
    (b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n", False),
    (b"5\nhello\n0\n\n", False),
    (b"5\r\nhello\n0\r\n\r\n", False),
    (b"z\r\nhello\r\n0\r\n\r\n", False),
    (b"-5\r\nhello\r\n0\r\n\r\n", False),
    (b"0x5\r\nhello\r\n0\r\n\r\n", False),
    (b" 5\r\nhello\r\n0\r\n\r\n", False),
    (b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n", False),
    (b"5\r\nhelloXX\r\n0\r\n\r\n", False),
    (b"5\r\nhel", True),
    (b"5\r\nhello\r\n", True),
    (b"5\r\nhello\r\n0\r\n", True),
    (b"5\r\nhello\r\n0\r\n\r\n", True),
    (b"5\r\nhello\r\n0\r\n\r\nEXTRA", False),
    (b"5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
    (b"", True),
    (b"0\r\n\r\n", False),
    (b"\r\n5\r\nhello\r\n0\r\n\r\n", False),
    (b"5\r\nhello\r\n\r\n0\r\n\r\n", False),
    (b"a\r\nhelloworld\r\n0\r\n\r\n", False),
)

AFTER = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsmugl",
    b"garbage after the end",
    b"\r\n",
)

INTERIM: tuple[tuple[bytes, ...], ...] = (
    (b"HTTP/1.1 100 Continue\r\n\r\n",),
    (b"HTTP/1.1 102 Processing\r\n\r\n",),
    (b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",),
    (b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n"),
    (b"HTTP/1.1 100 Continue\r\nContent-Length: 3\r\n\r\n",),
    (b"HTTP/1.1 199 Odd\r\n\r\n",),
    (b"HTTP/1.0 100 Continue\r\n\r\n",),
)

# name -> (mutation, the bases it is applied to alone)
MUTATIONS: dict[str, tuple[Mutation, tuple[Base, ...]]] = {
    "version": (m_version, ("length", "chunked")),
    "code": (m_code, ("length",)),
    "reason": (m_reason, ("length",)),
    "status-line": (m_status_line, ("length", "eof")),
    "no-colon": (m_line(NO_COLON), ("length",)),
    "space-before-colon": (m_line(SPACE_BEFORE_COLON), ("length",)),
    "empty-name": (m_line(EMPTY_NAME), ("length",)),
    "obs-fold": (m_fold, ("length",)),
    "nul": (m_line(NUL), ("length",)),
    "ctl": (m_line(CTL), ("length",)),
    "high-bytes": (m_line(HIGH), ("length",)),
    "name-chars": (m_line(NAME_CHARS), ("length",)),
    "values": (m_line(VALUES), ("length",)),
    "odd-lines": (m_line(ODD_LINES), ("length",)),
    "content-length": (m_length, ("length", "eof", "head")),
    "transfer-encoding": (m_coding, ("chunked", "head")),
    "connection": (m_connection, ("length", "chunked")),
    "server-date": (m_server_date, ("length",)),
    "hidden": (m_hidden, ("length",)),
    "head-size": (m_fill, ("length",)),
    "many-headers": (m_many, ("length",)),
    "body-length": (m_body_length, ("length", "204", "304", "head")),
    "chunks": (m_chunks, ("chunked", "get10")),
    "after": (m_after, ("length", "chunked", "upgrade", "204", "head")),
    "accept": (m_accept, ("upgrade",)),
    "close": (m_close, ("length", "chunked", "204", "304", "head", "upgrade")),
    "interim": (m_interim, ("length", "upgrade")),
    "line-endings": (m_eol, ("length", "chunked", "interim")),
    "split": (m_split, ("length", "chunked", "upgrade", "interim")),
}


@dataclass(frozen=True, slots=True)
class FuzzCase:
    mark: str  # c000 .. c999: the request path and the X-Case header
    base: Base
    request: Request
    tags: tuple[str, ...]  # what each mutation did
    script: Script

    @property
    def data(self) -> bytes:
        """What the peer sends for this case, all writes together."""
        return b"".join(self.script.writes)


class Nth(random.Random):
    """A generator whose ``choice`` takes option ``n`` (one case per option); the rest is
    seeded randomness."""

    def __init__(self, n: int, seed: int) -> None:
        super().__init__(seed)
        self.n = n
        self.sizes: list[int] = []

    def choice(self, seq: Sequence[T]) -> T:
        self.sizes.append(len(seq))
        return seq[self.n % len(seq)]


def _options(name: str) -> int:
    """How many options the mutation's first choice has (1 if it chooses nothing)."""
    probe = Nth(0, SEED)
    MUTATIONS[name][0](probe, base_length())
    return probe.sizes[0] if probe.sizes else 1


def generate(seed: int = SEED, combined: int = COMBINED) -> list[FuzzCase]:
    """Each option of each mutation alone on each of its bases, then ``combined`` cases of
    two or three mutations on a random base. Cases whose request and bytes are those of an
    earlier case are left out."""
    rng = random.Random(seed)
    plans: list[tuple[Base, list[str], random.Random]] = []
    for name, (_, bases) in MUTATIONS.items():
        for n in range(_options(name)):
            for base in bases:
                plans.append((base, [name], Nth(n, seed + n)))
    for base in BASES:
        plans.append((base, [], rng))
    for _ in range(combined):
        names = rng.sample(sorted(MUTATIONS), rng.choice([2, 2, 3]))
        if "split" in names:  # splitting last cuts the final bytes
            names.remove("split")
            names.append("split")
        plans.append((rng.choice(sorted(BASES)), names, rng))
    cases: list[FuzzCase] = []
    seen: set[tuple[str, bytes, bool, tuple[int, ...]]] = set()
    for base, names, picker in plans:
        make, request = BASES[base]
        reply = make()
        tags = tuple(MUTATIONS[name][0](picker, reply) for name in names)
        writes = reply.writes()
        key = (request, b"".join(writes), reply.close, tuple(len(w) for w in writes))
        if key in seen:
            continue
        seen.add(key)
        mark = f"c{len(cases):03d}"
        cases.append(FuzzCase(mark, base, request, tags, Script(writes, reply.close)))
    return cases


# --- the client -------------------------------------------------------------------------


def request_bytes(case: FuzzCase) -> bytes:
    mark = case.mark.encode()
    if case.request == "ws":
        return (
            b"GET /%s HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
            b"X-Case: %s\r\n\r\n" % (mark, WS_KEY, mark)
        )
    if case.request == "get10":
        return b"GET /%s HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n" % mark
    method = b"HEAD" if case.request == "head" else b"GET"
    return b"%s /%s HTTP/1.1\r\nHost: example.com\r\nX-Case: %s\r\n\r\n" % (method, mark, mark)


PROBE = b"GET /probe/%s HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
PROBE_REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nprobe"

_IMF_FIXDATE = re.compile(rb"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")


def _normal_head(lines: list[bytes]) -> tuple[str, ...]:
    """Header lines with the proxy's own ``Date`` value and server token replaced."""
    out = []
    date_seen = False
    for line in lines:
        name, _, value = line.partition(b":")
        low, value = name.lower(), value.strip()
        if low == b"date" and not date_seen and _IMF_FIXDATE.fullmatch(value):
            date_seen = True
            line = name + b": DATE"
        elif low == b"server" and value in TOKENS:
            line = name + b": SERVER"
        out.append(line.decode("latin-1"))
    return tuple(out)


def _normal_body(body: bytes) -> bytes:
    for token in TOKENS:
        body = body.replace(b"<center>" + token + b"</center>", b"<center>SERVER</center>")
    return body


@dataclass(frozen=True, slots=True)
class Answer:
    events: tuple[str, ...]  # what the client read of this response
    status: int  # 0 when there was no status line
    close: bool  # the proxy will close: "Connection: close", or a body ended by EOF
    broken: bool  # the response ended early (the connection ended inside it)


def _dechunk(data: bytes) -> tuple[bytes, int] | None:
    """The body of a chunked message at the start of ``data`` and the bytes it took, or
    None if it is not complete."""
    body, pos = bytearray(), 0
    while True:
        nl = data.find(b"\r\n", pos)
        if nl < 0:
            return None
        size = int(data[pos:nl].split(b";")[0], 16)
        pos = nl + 2
        if size == 0:
            while True:  # trailer lines, then the blank line
                nl = data.find(b"\r\n", pos)
                if nl < 0:
                    return None
                pos, line = nl + 2, data[pos:nl]
                if not line:
                    return bytes(body), pos
        if len(data) < pos + size + 2:
            return None
        body += data[pos : pos + size]
        pos += size + 2


def parse_answer(data: bytes, method: bytes, end: str | None) -> tuple[Answer, int] | None:
    """One response at the start of ``data`` and the bytes it took, or None when more
    bytes are needed. ``end`` is how the connection ended (``EOF``, ``timeout``), None
    while it may send more."""
    if not data.startswith(b"HTTP/"[: len(data)]) or (len(data) >= 5 and data[:5] != b"HTTP/"):
        if end is None:
            return None
        return Answer((f"no status line: {data[:SHOWN]!r}, then {end}",), 0, True, True), len(data)
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        if end is None:
            return None
        return Answer((f"part of a head: {data[:SHOWN]!r}, then {end}",), 0, True, True), len(data)
    lines = data[:head_end].split(b"\r\n")
    fields = lines[0].split(b" ")
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    close = b"close" in headers.get(b"connection", b"")
    events = [lines[0].decode("latin-1"), "  " + " | ".join(_normal_head(lines[1:]))]
    pos = head_end + 4
    rest = data[pos:]
    complete: tuple[bytes, int] | None
    if 100 <= status < 200 or status in (204, 304) or method == b"HEAD":
        framing, complete = "none", (b"", 0)
    elif b"chunked" in headers.get(b"transfer-encoding", b""):
        framing = "chunked"
        try:
            complete = _dechunk(rest)
        except ValueError:
            framing, complete = "bad chunks", None
    elif b"content-length" in headers:
        if not headers[b"content-length"].isdigit():
            events.append(f"  unframed: {_normal_body(rest)[:SHOWN]!r}")
            return Answer(tuple(events), status, True, True), len(data)
        framing, length = "length", int(headers[b"content-length"])
        complete = (rest[:length], length) if len(rest) >= length else None
    else:
        framing, close = "close", True
        complete = (rest, len(rest)) if end is not None else None
    if complete is None:
        if end is None:
            return None
        shown = _normal_body(rest)[:SHOWN]
        events.append(f"  {framing} body cut short: {shown!r}, then {end}")
        return Answer(tuple(events), status, True, True), len(data)
    body, used = complete
    events.append(f"  {framing}: {_normal_body(body)[:SHOWN]!r}")
    return Answer(tuple(events), status, close, False), pos + used


async def exchange(port: int, case: FuzzCase) -> tuple[str, ...]:
    """Send the case's request on a new connection; the events the client saw."""
    events: list[str] = []
    async with asyncio.timeout(IO_TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=READ_LIMIT)
    method = b"HEAD" if case.request == "head" else b"GET"
    buf = bytearray()
    end: str | None = None  # how the connection ended
    tunnel = probed = False
    deadline = asyncio.get_running_loop().time() + CASE_TIMEOUT
    try:
        writer.write(request_bytes(case))
        while len(events) < MAX_EVENTS:
            parsed = None if tunnel or not buf else parse_answer(bytes(buf), method, end)
            if parsed is None:
                if end is not None:
                    if tunnel:
                        events.append(f"tunnel: {bytes(buf)[:SHOWN]!r}")
                    events.append(end)
                    break
                if asyncio.get_running_loop().time() > deadline:
                    end = "deadline"
                    continue
                try:
                    async with asyncio.timeout(IO_TIMEOUT):
                        data = await reader.read(65536)
                except TimeoutError:
                    end = "timeout"
                except ConnectionResetError:
                    end = "reset"
                else:
                    buf += data
                    end = None if data else "EOF"
                continue
            answer, used = parsed
            del buf[:used]
            events.extend(answer.events)
            if answer.broken:
                break
            if answer.status == 101:
                tunnel = True
            elif answer.status == 0 or 100 <= answer.status < 200 or answer.close or probed:
                pass
            else:
                writer.write(PROBE % case.mark.encode())
                method = b"GET"
                events.append("probe")
                probed = True
    finally:
        writer.close()
        with suppress(OSError, TimeoutError):
            async with asyncio.timeout(IO_TIMEOUT):
                await writer.wait_closed()
    return tuple(events)


# --- one side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    events: tuple[str, ...]
    log: tuple[str, ...]  # the request's [warn] / [error] lines, by message kind


Side = Literal["nginx", "wsgate"]

_LOG_LINE = re.compile(
    r"\[(warn|error|crit|alert)\] \d+#\d+: (?:\*\d+ )?(.*?)(?: while ([a-z ]+))?, client: "
    r'.*?request: "[A-Z]+ /(c\d{3})'
)


def log_kind(message: str) -> str:
    """A message up to its details: ``upstream sent invalid header: "X..."`` and
    ``upstream sent invalid header: <llhttp's reason>`` are the same kind."""
    return message.split(": ", 1)[0]


def read_log(path: Path) -> dict[str, list[str]]:
    """The error log's lines by case mark, as ``[level] kind while action``."""
    out: dict[str, list[str]] = {}
    text = path.read_text("latin-1") if path.exists() else ""
    for line in text.splitlines():
        found = _LOG_LINE.search(line)
        if found is None:
            continue
        level, message, action, mark = found.groups()
        entry = f"[{level}] {log_kind(message)}" + (f" while {action}" if action else "")
        out.setdefault(mark, []).append(entry)
    return out


def conf_text(listen: int, backend: int) -> str:
    return "error_log logs/error.log warn;\n" + differential_conf("seed", listen, backend)


async def serve_all(
    side: Side, cases: Sequence[FuzzCase], tmp: Path, listen: int, backend_port: int
) -> dict[str, Outcome]:
    """Serve the config with one proxy, send every case; outcomes by mark."""
    conf = conf_text(listen, backend_port)
    lanes = asyncio.Semaphore(LANES)
    scripts = {f"/{case.mark}": case.script for case in cases}
    default = Script((PROBE_REPLY,), True)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(ScriptPlayer(scripts, default, backend_port))
        if side == "nginx":
            run = await stack.enter_async_context(run_nginx_async(conf, tmp, [listen]))
            log_path = run.error_log
        else:
            tmp.mkdir(parents=True)
            await stack.enter_async_context(proxy_in_process(conf, tmp))
            log_path = tmp / "logs" / "error.log"

        async def one(case: FuzzCase) -> tuple[str, ...]:
            async with lanes:
                return await exchange(listen, case)

        async with asyncio.timeout(RUN_TIMEOUT):
            events = await asyncio.gather(*(one(case) for case in cases))
    logs = read_log(log_path)  # complete once the proxy stopped
    return {
        case.mark: Outcome(ev, tuple(logs.get(case.mark, ())))
        for case, ev in zip(cases, events, strict=True)
    }


# --- documented differences -------------------------------------------------------------


def _status(events: Sequence[str]) -> int | None:
    """The status of the first response the client read, else None."""
    for event in events[:1]:
        fields = event.split(" ")
        if event.startswith("HTTP/") and len(fields) > 1 and fields[1].isdigit():
            return int(fields[1])
    return None


# The rows of docs/behavior.md's "Known differences from nginx" that the classifier
# cites, by the text their first cell starts with.
ROWS = {
    "status": "| A response without a valid status line ",
    "framing": "| A response's `Content-Length` and `Transfer-Encoding`",
    "chunks": "| Chunk-size lines ",
    "interim": "| Interim responses (`1xx` other than `101`) ",
    "buffering": "| `proxy_buffering on` ",
    "accel": "| `X-Accel-Redirect`, `X-Accel-Charset` ",
    "exact": "| A response head of exactly `proxy_buffer_size` bytes ",
    "upgrades": "| Upgrades |",
}

NO_STATUS = (
    "[error] upstream sent no valid HTTP/1.0 header while reading response header from upstream"
)
# nginx 1.23's words for the framing it refuses (nginx 1.22 logs none of them).
FRAMING_KINDS = (
    "upstream sent duplicate header line",
    'upstream sent invalid "Content-Length" header',
    'upstream sent unknown "Transfer-Encoding"',
    'upstream sent "Content-Length" and "Transfer-Encoding" headers at the same time',
)
PREMATURE = "[error] upstream prematurely closed connection while reading upstream"
INVALID_CHUNKS = "[error] upstream sent invalid chunked response while reading upstream"
# Chunked bodies nginx reads and wsgate refuses (the "Chunk-size lines" row): a space or
# tab after the size, an empty extension, a bare LF, a trailer line without a colon.
LENIENT_CHUNKS = (
    b"5;\r\n",
    b"5 \r\n",
    b"5\t;x\r\n",
    b"5\nhello\n0\n\n",
    b"hello\n0\r\n",
    b"0\r\nbad trailer\r\n",
)
_INTERIM_FIRST = re.compile(rb"HTTP/1\.[01] 1(?!01)[0-9][0-9]")


def _cut_short(events: Sequence[str]) -> str | None:
    """How the connection ended inside a response (``EOF``, ``timeout``), else None."""
    if events and " cut short: " in events[-1]:
        return events[-1].rsplit(", then ", 1)[1]
    return None


def documented(case: FuzzCase, nginx: Outcome, wsgate: Outcome) -> str | None:
    """The documented difference (docs/behavior.md, "Known differences from nginx") that
    explains how wsgate's outcome differs from nginx's for this case, else None.

    Each rule needs both what the row is about in the peer's bytes (or nginx's own log)
    and the shape of the difference that the row describes.
    """
    refused = _status(wsgate.events) == 502
    if NO_STATUS in nginx.log and refused and NO_STATUS in wsgate.log:
        return ROWS["status"]
    framing = [
        k for k in wsgate.log if any(k.split(" while ")[0].endswith(f) for f in FRAMING_KINDS)
    ]
    if refused and framing and not any(f in k for k in nginx.log for f in FRAMING_KINDS):
        return ROWS["framing"]
    if _INTERIM_FIRST.match(case.data) and (
        (_status(nginx.events) or 0) // 100 == 1 or nginx.events in (("timeout",), ("EOF",))
    ):
        return ROWS["interim"]
    if (
        INVALID_CHUNKS in wsgate.log
        and INVALID_CHUNKS not in nginx.log
        and any(
            b"\r\n\r\n" + chunks in case.data or b"\r\n" + chunks in case.data
            for chunks in LENIENT_CHUNKS
        )
    ):
        return ROWS["chunks"]
    if (
        nginx.events in (("timeout",), ("EOF",))
        and nginx.log == wsgate.log
        and (
            _cut_short(wsgate.events) == nginx.events[0]
            or (wsgate.events[-1:] == nginx.events and wsgate.events[-2].startswith("  close: "))
        )
    ):
        return ROWS["buffering"]
    if (
        case.request == "ws"
        and _status(nginx.events) == 101
        and _status(wsgate.events) == 502
        and any(t.startswith("accept=") for t in case.tags)
    ):
        return ROWS["upgrades"]
    if any("X-Accel-Redirect" in t or "X-Accel-Charset" in t for t in case.tags):
        return ROWS["accel"]
    if "head-size=4096" in case.tags and PREMATURE in nginx.log and PREMATURE not in wsgate.log:
        return ROWS["exact"]
    return None


# --- the test ---------------------------------------------------------------------------


Row = fuzz.Row[FuzzCase, Outcome]


@dataclass(frozen=True, slots=True)
class Results:
    cases: list[FuzzCase]
    nginx: dict[str, Outcome]
    wsgate: dict[str, Outcome]

    def differences(self) -> list[Row]:
        return fuzz.differences(self.cases, lambda c: c.mark, self.nginx, self.wsgate, documented)


def table(rows: Sequence[Row]) -> str:
    """The differences, one block per case."""
    out = []
    for row in rows:
        case = row.case
        writes = len(case.script.writes)
        out.append(
            f"--- {case.mark} [{case.base}, {case.request}] {' + '.join(case.tags) or 'as is'}"
            f"  ({row.reason or 'UNDOCUMENTED'})"
        )
        then = "close" if case.script.close else "keep open"
        out.append(f"    peer ({writes} writes, then {then}): {fuzz.shorten(case.data)}")
        for side, outcome in (("nginx", row.nginx), ("wsgate", row.wsgate)):
            out.append(f"    {side:>6}:")
            out.extend(f"        {event}" for event in outcome.events)
            out.extend(f"        log {line}" for line in outcome.log)
    return "\n".join(out)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    assert os.access(NGINX, os.X_OK), f"nginx is needed for this test and not found: {NGINX}"
    cases = generate()
    tmp = tmp_path_factory.mktemp("respfuzz")

    async def both() -> Results:
        listen, backend_port = free_ports(2)
        # One after the other on the same ports: the config text is the same byte for byte.
        nginx = await serve_all("nginx", cases, tmp / "ng", listen, backend_port)
        wsgate = await serve_all("wsgate", cases, tmp / "ws", listen, backend_port)
        return Results(cases, nginx, wsgate)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        found = runner.run(both())
    (tmp / "differences.txt").write_text(table(found.differences()))
    every = [Row(c, found.nginx[c.mark], found.wsgate[c.mark], "-") for c in cases]
    (tmp / "cases.txt").write_text(table(every))
    return found


def test_cases_are_deterministic() -> None:
    first, second = generate(), generate()
    assert [(c.request, c.script) for c in first] == [(c.request, c.script) for c in second]
    assert 300 <= len(first) <= 600, len(first)


def test_nginx_sees_what_the_cases_name(results: Results) -> None:
    """The generator reaches nginx's interesting answers (else it tests nothing)."""
    seen = Counter(_status(results.nginx[case.mark].events) for case in results.cases)
    for status in (101, 200, 204, 304, 502):
        assert seen[status] > 0, f"no case made nginx answer {status}: {seen}"
    kinds = Counter(line for o in results.nginx.values() for line in o.log)
    for kind in (
        "[error] upstream sent invalid header while reading response header from upstream",
        "[error] upstream sent too big header while reading response header from upstream",
        "[error] upstream prematurely closed connection while reading upstream",
        "[error] upstream sent invalid chunked response while reading upstream",
        NO_STATUS,
        '[warn] upstream sent more data than specified in "Content-Length" header while '
        "reading upstream",
        "[warn] upstream sent data after final chunk while reading upstream",
    ):
        assert kinds[kind] > 0, f"nginx never logged {kind!r}: {kinds}"


def test_exclusions_are_documented_and_used(results: Results) -> None:
    """Each row the classifier cites is in docs/behavior.md and still explains a case."""
    fuzz.assert_rows_documented_and_used(ROWS.values(), results.differences())


def test_no_undocumented_difference(results: Results) -> None:
    fuzz.assert_all_documented(len(results.cases), results.differences(), table)
