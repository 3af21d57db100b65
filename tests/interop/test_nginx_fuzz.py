"""Differential fuzz: malformed and unusual request heads, real nginx vs wsgate.

A fixed seed generates a few hundred requests by mutating a valid ``GET`` or WebSocket
handshake head: the request line (methods, odd targets, versions, separators), header
lines (no colon, space before the colon, folding, bad bytes, ``Host``, ``Content-Length``,
``Transfer-Encoding``, ``Connection`` / ``Upgrade``, underscores, lines near
``large_client_header_buffers``) and line endings. The differential config
(:func:`tests.support.confs.differential_conf`, the seed article's location) is served by
nginx, every request is sent, then the same config on the same ports is served by wsgate
and the same bytes are sent again, each request on its own connection.

What the client sees is recorded as a list of events: each response's status line, ``EOF``
when the proxy closed, ``timeout`` when it said nothing for :data:`IO_TIMEOUT`. After a
response that keeps the connection alive, a probe request (``Connection: close``) is sent
on the same connection, so a proxy that reads the rest of the bytes as another request (a
smuggled one) shows it, and every connection ends deterministically. The backend records
the request heads it receives; each is attributed to its case by an ``X-Case`` header
(or the case's mark in the target).

Per case, the events and the heads must be equal, unless :func:`documented` names the
documented difference (docs/behavior.md) that explains that very difference. The table of
all differences is written to ``differences.txt`` in the test's temporary directory, and
the undocumented ones are in the failure message. Cases run a few at a time (each on its
own connection, told apart at the backend by their mark), so that those that wait for
:data:`IO_TIMEOUT` do not add up.
"""

from __future__ import annotations

import asyncio
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
from tests.support.backend import RecordingBackend
from tests.support.confs import differential_conf
from tests.support.nginx import NGINX, run_nginx_async
from tests.support.ports import free_ports
from tests.support.wsgate import proxy_in_process

SEED = 0x5EED_F022
COMBINED = 150  # cases with two or three mutations, after one case per option
IO_TIMEOUT = 2.0  # seconds without an answer before a case records "timeout"
LANES = 8  # connections in flight at once (each case has its own)
RUN_TIMEOUT = 50.0  # seconds for all cases on one side
MAX_EVENTS = 8
READ_LIMIT = 1 << 20

WS_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
WS_FAMILIES = frozenset({"method", "upgrade", "connection", "expect"})
T = TypeVar("T")
_MARK = re.compile(rb"(?:X-Case: |/)(c\d{3}(?:-probe|-smuggled)?)\b")


# --- requests ---------------------------------------------------------------------------


@dataclass(slots=True)
class Head:
    """A request head being mutated; :meth:`render` makes the bytes."""

    method: bytes
    target: bytes
    version: bytes | None  # None: an HTTP/0.9 request line (no version)
    headers: list[bytes]  # header lines without their line ending
    eol: bytes = b"\r\n"
    sep: bytes = b" "  # between the parts of the request line
    prefix: bytes = b""  # bytes before the request line
    end: bytes | None = None  # the blank line (default: eol)
    body: bytes = b""
    no_blank: bool = False  # no blank line (a bare HTTP/0.9 request line)
    fill: tuple[Literal["line", "header", "total"], int] | None = None
    edits: list[Callable[[bytes], bytes]] = field(default_factory=list)

    def render(self, mark: str) -> bytes:
        headers = [*self.headers, b"X-Case: " + mark.encode()]
        line = self.method + self.sep + self.target.replace(b"MARK", mark.encode())
        if self.version is not None:
            line += self.sep + self.version
        if self.fill is not None:
            kind, size = self.fill
            if kind == "line":  # the request line (without its line ending) is `size` bytes
                line = line.replace(b"/FILL", b"/" + b"a" * (size - len(line) + 4), 1)
            elif kind == "header":
                name = b"X-Fill: "
                headers.insert(0, name + b"b" * (size - len(name)))
            else:  # the whole head, blank line included, is `size` bytes
                base = self._join(line, headers)
                filler, count = [], (size - len(base)) // 4000 + 1
                rest = size - len(base)
                for index in range(count):
                    name = b"X-Fill-%d: " % index
                    take = min(rest - len(self.eol), 4000)
                    filler.append(name + b"b" * max(take - len(name), 0))
                    rest -= len(filler[-1]) + len(self.eol)
                headers = filler + headers
        data = self._join(line, headers) + self.body.replace(b"MARK", mark.encode())
        for edit in self.edits:
            data = edit(data)
        return data

    def _join(self, line: bytes, headers: list[bytes]) -> bytes:
        if self.no_blank:
            return self.prefix + line + self.eol
        end = self.eol if self.end is None else self.end
        return self.prefix + line + self.eol + b"".join(h + self.eol for h in headers) + end


def base_get() -> Head:
    return Head(b"GET", b"/fuzz/MARK?q=1", b"HTTP/1.1", [b"Host: example.com", b"User-Agent: f"])


def base_ws() -> Head:
    return Head(
        b"GET",
        b"/ws/MARK",
        b"HTTP/1.1",
        [
            b"Host: example.com",
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Key: " + WS_KEY,
            b"Sec-WebSocket-Version: 13",
        ],
    )


Mutation = Callable[[random.Random, Head], str]


def _set(head: Head, name: bytes, value: bytes | None) -> None:
    """Replace every ``name`` line by one with ``value`` (or remove them if None)."""
    low = name.lower() + b":"
    kept = [h for h in head.headers if not h.lower().startswith(low)]
    head.headers = kept if value is None else [*kept, name + b": " + value]


def _insert(rng: random.Random, head: Head, *lines: bytes) -> None:
    at = rng.randrange(len(head.headers) + 1)
    head.headers[at:at] = lines


def _choose(options: Sequence[bytes]) -> Callable[[random.Random], bytes]:
    return lambda rng: rng.choice(options)


def m_method(options: Sequence[bytes]) -> Mutation:
    def mutate(rng: random.Random, head: Head) -> str:
        head.method = rng.choice(options)
        return f"method={head.method.decode('latin-1')[:12]}"

    return mutate


def m_target(rng: random.Random, head: Head) -> str:
    head.target = rng.choice(TARGETS)
    return f"target={head.target.decode('latin-1')!r}"


def m_version(rng: random.Random, head: Head) -> str:
    head.version = rng.choice(VERSIONS)
    return f"version={head.version.decode('latin-1')!r}"


def m_http09(rng: random.Random, head: Head) -> str:
    head.version = None
    head.no_blank = rng.random() < 0.5
    return "http09" + ("-bare" if head.no_blank else "")


def m_sep(rng: random.Random, head: Head) -> str:
    choice = rng.choice(["double", "tab", "trailing", "leading-crlf", "leading-space"])
    if choice == "double":
        head.sep = b"  "
    elif choice == "tab":
        head.sep = b"\t"
    elif choice == "trailing":
        head.version = (head.version or b"HTTP/1.1") + b" "
    elif choice == "leading-crlf":
        head.prefix = b"\r\n"
    else:
        head.prefix = b" "
    return f"sep={choice}"


def m_line(lines: Sequence[bytes]) -> Mutation:
    def mutate(rng: random.Random, head: Head) -> str:
        line = rng.choice(lines)
        _insert(rng, head, line)
        return f"header={line.decode('latin-1')!r}"

    return mutate


def m_fold(rng: random.Random, head: Head) -> str:
    first = rng.random() < 0.3
    if first:
        head.headers.insert(0, b" X-Lead: v")
    else:
        _insert(rng, head, b"X-Fold: a", rng.choice([b" folded", b"\tfolded"]))
    return "obs-fold" + ("-first" if first else "")


def m_host(rng: random.Random, head: Head) -> str:
    value = rng.choice(HOSTS)
    _set(head, b"Host", value)
    return f"host={value.decode('latin-1')[:24]!r}"


def m_host_dup(rng: random.Random, head: Head) -> str:
    value = rng.choice([b"example.com", b"other.test", b""])
    _insert(rng, head, b"Host: " + value)
    return f"host-dup={value.decode()!r}"


def m_host_missing(rng: random.Random, head: Head) -> str:
    _set(head, b"Host", None)
    return "host-missing"


def m_cl(rng: random.Random, head: Head) -> str:
    choice = rng.choice(["valid", "zero", "dup-same", "dup-diff", "list", "big", "extra"])
    if choice == "valid":
        _set(head, b"Content-Length", b"3")
        head.body = b"abc"
    elif choice == "zero":
        _set(head, b"Content-Length", b"0")
    elif choice == "dup-same":
        _insert(rng, head, b"Content-Length: 3", b"Content-Length: 3")
        head.body = b"abc"
    elif choice == "dup-diff":
        _insert(rng, head, b"Content-Length: 3", b"Content-Length: 5")
        head.body = b"abcde"
    elif choice == "list":
        _set(head, b"Content-Length", b"3, 3")
        head.body = b"abc"
    elif choice == "big":
        _set(head, b"Content-Length", b"2000000")
    else:  # a body followed by another request
        _set(head, b"Content-Length", b"3")
        head.body = b"abc" + SMUGGLED
    return f"cl={choice}"


def m_cl_invalid(rng: random.Random, head: Head) -> str:
    value = rng.choice(BAD_LENGTHS)
    _set(head, b"Content-Length", value)
    head.body = b"abc"
    return f"cl-invalid={value.decode()!r}"


def m_te(rng: random.Random, head: Head) -> str:
    value = rng.choice(CODINGS)
    _set(head, b"Transfer-Encoding", value)
    head.body = rng.choice(CHUNKED_BODIES)
    return f"te={value.decode('latin-1')!r}"


def m_te_framing(rng: random.Random, head: Head) -> str:
    choice = rng.choice(["dup", "gzip-then-chunked", "with-cl", "cl-first", "smuggle", "http10"])
    body = b"3\r\nabc\r\n0\r\n\r\n"
    if choice == "dup":
        _insert(rng, head, b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked")
    elif choice == "gzip-then-chunked":
        _insert(rng, head, b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked")
    elif choice == "with-cl":
        _insert(rng, head, b"Transfer-Encoding: chunked", b"Content-Length: 3")
    elif choice == "cl-first":
        _insert(rng, head, b"Content-Length: 13", b"Transfer-Encoding: chunked")
    elif choice == "smuggle":
        _set(head, b"Transfer-Encoding", b"chunked")
        body = b"0\r\n\r\n" + SMUGGLED
    else:
        head.version = b"HTTP/1.0"
        _set(head, b"Transfer-Encoding", b"chunked")
    head.body = body
    return f"te-framing={choice}"


def m_bad_chunks(rng: random.Random, head: Head) -> str:
    body = rng.choice(BAD_CHUNKED_BODIES)
    _set(head, b"Transfer-Encoding", b"chunked")
    head.body = body
    return f"bad-chunks={body[:12].decode('latin-1')!r}"


def m_connection(rng: random.Random, head: Head) -> str:
    value = rng.choice(CONNECTIONS)
    _set(head, b"Connection", value)
    return f"connection={value.decode()!r}"


def m_connection_dup(rng: random.Random, head: Head) -> str:
    _insert(rng, head, b"Connection: keep-alive", b"Connection: close")
    return "connection-dup"


def m_upgrade(rng: random.Random, head: Head) -> str:
    value = rng.choice(UPGRADES)
    _set(head, b"Upgrade", value)
    if rng.random() < 0.5:
        _set(head, b"Connection", b"Upgrade")
    return f"upgrade={value.decode()!r}"


def m_ws_key(rng: random.Random, head: Head) -> str:
    choice = rng.choice(["missing", "short", "not-base64", "dup", "padded"])
    if choice == "missing":
        _set(head, b"Sec-WebSocket-Key", None)
    elif choice == "short":
        _set(head, b"Sec-WebSocket-Key", b"c2hvcnQ=")
    elif choice == "not-base64":
        _set(head, b"Sec-WebSocket-Key", b"!!not base64 at all!!")
    elif choice == "dup":
        _insert(rng, head, b"Sec-WebSocket-Key: " + WS_KEY)
    else:
        _set(head, b"Sec-WebSocket-Key", b"  " + WS_KEY + b"  ")
    return f"ws-key={choice}"


def m_ws_version(rng: random.Random, head: Head) -> str:
    value = rng.choice([b"8", b"", b"13, 8", None])
    _set(head, b"Sec-WebSocket-Version", value)
    return f"ws-version={value!r}"


def m_many(rng: random.Random, head: Head) -> str:
    count = rng.choice([50, 100, 200])
    _insert(rng, head, *(b"X-Many-%d: v" % i for i in range(count)))
    return f"many-headers={count}"


def m_long_line(rng: random.Random, head: Head) -> str:
    size = rng.choice(range(8188, 8197))
    head.target = b"/FILL?x"
    head.fill = ("line", size)
    return f"long-request-line={size}"


def m_long_header(rng: random.Random, head: Head) -> str:
    size = rng.choice(range(8188, 8197))
    head.fill = ("header", size)
    return f"long-header-line={size}"


def m_big_head(rng: random.Random, head: Head) -> str:
    size = rng.choice([16000, 24000, 30000, 32000, 32768 - 200, 32768 + 100, 40000])
    head.fill = ("total", size)
    return f"big-head={size}"


def m_eol(rng: random.Random, head: Head) -> str:
    choice = rng.choice(["lf", "one-lf", "final-lf", "line-lf", "cr-only", "cr-cr-lf"])
    if choice == "lf":
        head.eol = b"\n"
    elif choice == "final-lf":
        head.end = b"\n"
    else:
        index = rng.randrange(len(head.headers) + 1) if choice != "line-lf" else 0
        bad = {"one-lf": b"\n", "line-lf": b"\n", "cr-only": b"\r", "cr-cr-lf": b"\r\r\n"}[choice]
        head.edits.append(lambda data: _replace_eol(data, index, bad))
    return f"eol={choice}"


def _replace_eol(data: bytes, index: int, new: bytes) -> bytes:
    """Replace the CRLF that ends line ``index`` (0: the request line)."""
    pos = -1
    for _ in range(index + 1):
        pos = data.find(b"\r\n", pos + 1)
        if pos < 0:
            return data
    return data[:pos] + new + data[pos + 2 :]


def m_expect(rng: random.Random, head: Head) -> str:
    value = rng.choice([b"100-continue", b"100-Continue", b"200-ok"])
    _set(head, b"Expect", value)
    return f"expect={value.decode()}"


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: example.com\r\nX-Case: MARK-smuggled\r\n\r\n"

TARGETS = (
    b"/a%zz",
    b"/a%2",
    b"/a%",
    b"/%00",
    b"/a%2fb",
    b"/a%2Fb?x=%2F",
    b"//a//b",
    b"/./a/./b",
    b"/../a",
    b"/a/../../b",
    b"/a/..",
    b"/a/%2e%2e/%2e%2e/x",
    b"/%2e%2e/x",
    b"/a#frag",
    b"/a?x#frag",
    b"/a?b=%zz",
    b"/a\x01b",
    b"/a\x7fb",
    b"/a\tb",
    b"/caf\xc3\xa9",
    b"/\xff",
    b"*",
    b"/MARK*",
    b"http://example.com/abs/MARK",
    b"http://other.test:8080/abs/MARK",
    b"https://example.com/abs/MARK",
    b"HTTP://EXAMPLE.COM/abs/MARK",
    b"http://example.com",
    b"http://example.com?x=1",
    b"http://ex ample.com/",
    b"http://[::1]:80/abs/MARK",
    b"http://user@example.com/abs/MARK",
    b"ftp://example.com/abs/MARK",
    b"example.com/abs/MARK",
    b"fuzz/MARK",
    b"/p1",
    b"/p1/../p1/MARK",
    b"/p1/%2e%2e/MARK",
    b"/ws/MARK?x=1",
    b"/?",
    b"/MARK?a b",
    b"/MARK\\x",
)

VERSIONS = (
    b"HTTP/1.0",
    b"HTTP/1.1",
    b"HTTP/2.0",
    b"HTTP/0.9",
    b"HTTP/1.2",
    b"HTTP/1.10",
    b"HTTP/1.99",
    b"HTTP/1.100",
    b"HTTP/01.1",
    b"HTTP/1.01",
    b"http/1.1",
    b"HTTP/1",
    b"HTTP/1.",
    b"HTTP/3.0",
    b"HTTP/9.9",
    b"HTTP/10.0",
    b"HTTP/1.1x",
    b"HTTPS/1.1",
    b"HTTP/1.1 x",
    b"HTTP /1.1",
    b"HTTP/",
    b"",
)

HOSTS = (
    b"example.com:8080",
    b"EXAMPLE.COM",
    b"example.com.",
    b"exa mple.com",
    b"exa/mple.com",
    b"exa\\mple.com",
    b"ex..com",
    b".example.com",
    b"[::1]",
    b"[::1]:8080",
    b"[::1",
    b"[::1]x",
    b"",
    b"example.com:abc",
    b"example.com:",
    b"user@example.com",
    b"exa_mple.com",
    b"\xc3\xa9.test",
    b"a" * 300,
    b"example.com:99999",
    b"  example.com  ",
    b"example.com:80:80",
    b"example.com\x01",
    b"example.com\x7f",
    b"ex%41mple.com",
)

BAD_LENGTHS = (
    b"abc",
    b"-1",
    b"+3",
    b" 3 ",
    b"3 3",
    b"0x3",
    b"",
    b"99999999999999999999",
    b"3.0",
    b"1e3",
    b"03",
)

CODINGS = (
    b"chunked",
    b"Chunked",
    b"CHUNKED",
    b" chunked",
    b"chunked ",
    b"gzip, chunked",
    b"chunked, gzip",
    b"identity",
    b"gzip",
    b"chunked;x=1",
    b"xchunked",
    b"",
    b"identity, chunked",
    b"chunked, chunked",
    b"chunked,",
)

CHUNKED_BODIES = (
    b"3\r\nabc\r\n0\r\n\r\n",
    b"3;ext=1\r\nabc\r\n0\r\n\r\n",
    b"0\r\n\r\n",
    b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
)

BAD_CHUNKED_BODIES = (
    b"3 \r\nabc\r\n0\r\n\r\n",
    b"-3\r\nabc\r\n0\r\n\r\n",
    b"0x3\r\nabc\r\n0\r\n\r\n",
    b"3\nabc\n0\n\n",
    b"3\r\nabcd\r\n0\r\n\r\n",
    b"fffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    b"3;\r\nabc\r\n0\r\n\r\n",
    b"3\r\nabc\r\n0\r\n\r\n\r\n",
    b"z\r\nabc\r\n0\r\n\r\n",
)

CONNECTIONS = (
    b"close",
    b"keep-alive",
    b"Upgrade",
    b"close, upgrade",
    b"keep-alive, close",
    b"CLOSE",
    b"foo",
    b"Keep-Alive",
    b"upgrade, keep-alive",
    b"",
    b"closed",
)

UPGRADES = (
    b"websocket",
    b"WebSocket",
    b"h2c",
    b"websocket, foo",
    b"",
    b"foo",
    b" websocket ",
    b"websocket/13",
)

# name -> (mutation, family); the family is what the classifier of documented
# differences looks at.
MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "method-case": (m_method([b"get", b"Get", b"gET"]), "method"),
    "method-unknown": (m_method([b"FOO", b"BREW", b"XYZZY", b"GE_T", b"A" * 40]), "method"),
    "method-known": (
        m_method([b"DELETE", b"OPTIONS", b"PATCH", b"PUT", b"POST", b"PROPFIND", b"MKCOL"]),
        "method",
    ),
    "method-odd": (m_method([b"TRACE", b"CONNECT", b"M-SEARCH", b"PRI", b"SEARCH"]), "method"),
    "method-bad": (m_method([b"GE\x00T", b"G\xc3\xa9T", b"GET\x7f", b"GE:T", b"(GET)"]), "method"),
    "target": (m_target, "target"),
    "version": (m_version, "version"),
    "http09": (m_http09, "version"),
    "separators": (m_sep, "line"),
    "no-colon": (m_line([b"X-NoColon value", b"X-NoColon", b"Host example.com"]), "header"),
    "space-before-colon": (m_line([b"X-Sp : v", b"X-Tab\t: v", b"Host : example.com"]), "header"),
    "obs-fold": (m_fold, "header"),
    "empty-name": (m_line([b": v", b":", b" : v"]), "header"),
    "high-bytes": (m_line([b"X-High: caf\xc3\xa9", b"X-Caf\xc3\xa9: v", b"\xff: v"]), "header"),
    "nul": (m_line([b"X-Nul: a\x00b", b"X-N\x00ul: v", b"X-Nul: \x00"]), "header"),
    "ctl": (m_line([b"X-Ctl: a\x01b", b"X-Del: a\x7fb", b"X-D\x7fel: v", b"X-Cr: a\rb"]), "header"),
    "name-chars": (
        m_line([b"X@Y: v", b"X.Y: v", b"X/Y: v", b"X{Y}: v", b'X"Y: v', b"X Y: v", b"X=Y: v"]),
        "header",
    ),
    "underscore": (m_line([b"X_Under: 1", b"_: x", b"x_: y", b"Host_X: y"]), "header"),
    "values": (
        m_line([b"X-Empty:", b"X-Sp:   ", b"X-Ws: \t v \t", b"X-Long: " + b"v" * 900]),
        "header",
    ),
    "host": (m_host, "host"),
    "host-dup": (m_host_dup, "host"),
    "host-missing": (m_host_missing, "host"),
    "content-length": (m_cl, "length"),
    "content-length-invalid": (m_cl_invalid, "length"),
    "transfer-encoding": (m_te, "coding"),
    "te-framing": (m_te_framing, "coding"),
    "bad-chunks": (m_bad_chunks, "coding"),
    "connection": (m_connection, "connection"),
    "connection-dup": (m_connection_dup, "connection"),
    "upgrade": (m_upgrade, "upgrade"),
    "ws-key": (m_ws_key, "upgrade"),
    "ws-version": (m_ws_version, "upgrade"),
    "expect": (m_expect, "expect"),
    "many-headers": (m_many, "size"),
    "long-request-line": (m_long_line, "size"),
    "long-header-line": (m_long_header, "size"),
    "big-head": (m_big_head, "size"),
    "line-endings": (m_eol, "eol"),
}


@dataclass(frozen=True, slots=True)
class FuzzCase:
    mark: str  # c000 .. c999: in the target and the X-Case header
    base: Literal["get", "ws"]
    tags: tuple[str, ...]  # what each mutation did
    families: frozenset[str]
    data: bytes


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
    MUTATIONS[name][0](probe, base_get())
    return probe.sizes[0] if probe.sizes else 1


def generate(seed: int = SEED, combined: int = COMBINED) -> list[FuzzCase]:
    """Each option of each mutation alone on the GET head (and, for the families that
    matter to a handshake, on the WebSocket head), then ``combined`` cases of two or three
    mutations. Cases that send the same bytes as an earlier one are left out."""
    rng = random.Random(seed)
    plans: list[tuple[Literal["get", "ws"], list[str], random.Random]] = []
    for name, (_, family) in MUTATIONS.items():
        for n in range(_options(name)):
            plans.append(("get", [name], Nth(n, seed + n)))
            if family in WS_FAMILIES:
                plans.append(("ws", [name], Nth(n, seed + n)))
    for _ in range(combined):
        names = rng.sample(sorted(MUTATIONS), rng.choice([2, 2, 3]))
        plans.append((rng.choice(["get", "get", "ws"]), names, rng))
    cases: list[FuzzCase] = []
    seen: set[bytes] = set()
    for base, names, picker in plans:
        mark = f"c{len(cases):03d}"
        head = base_get() if base == "get" else base_ws()
        tags = tuple(MUTATIONS[name][0](picker, head) for name in names)
        families = frozenset(MUTATIONS[name][1] for name in names)
        data = head.render(mark)
        if data.replace(mark.encode(), b"MARK") in seen:
            continue
        seen.add(data.replace(mark.encode(), b"MARK"))
        cases.append(FuzzCase(mark, base, tags, families, data))
    return cases


PROBE = (
    b"GET /probe/%s HTTP/1.1\r\nHost: example.com\r\nX-Case: %s-probe\r\nConnection: close\r\n\r\n"
)


# --- the client -------------------------------------------------------------------------


class _Eof(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Answer:
    line: str  # the status line, or "no status line: ..." for other bytes
    status: int  # 0 when there was no status line
    close: bool  # the proxy will close: "Connection: close", or a body ended by EOF


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    """Read one response (head and framed body) or, for bytes that are no response, all."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _Eof from None
        return Answer(f"no status line: {exc.partial[:40]!r}", 0, True)
    if not head.startswith(b"HTTP/"):
        await reader.read()
        return Answer(f"no status line: {head[:40]!r}", 0, True)
    lines = head[:-4].split(b"\r\n")
    fields = lines[0].split(b" ")
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    close = b"close" in headers.get(b"connection", b"")
    if 100 <= status < 200 or status in (204, 304):
        pass
    elif b"chunked" in headers.get(b"transfer-encoding", b""):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2) if size else None
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                break
    elif b"content-length" in headers:
        await reader.readexactly(int(headers[b"content-length"]))
    else:
        await reader.read()
        close = True
    return Answer(lines[0].decode("latin-1"), status, close)


async def exchange(port: int, case: FuzzCase) -> tuple[str, ...]:
    """Send the case's bytes on a new connection; the events the client saw."""
    events: list[str] = []
    async with asyncio.timeout(IO_TIMEOUT):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=READ_LIMIT)
    try:
        writer.write(case.data)
        probed = False
        while len(events) < MAX_EVENTS:
            try:
                async with asyncio.timeout(IO_TIMEOUT):
                    answer = await read_answer(reader)
            except _Eof:
                events.append("EOF")
                break
            except TimeoutError:
                events.append("timeout")
                break
            except asyncio.IncompleteReadError:
                events.append("EOF inside a response")
                break
            except ConnectionResetError:
                events.append("reset")
                break
            events.append(answer.line)
            if answer.status == 101:
                events.append("tunnel")
                break
            if answer.status == 0 or 100 <= answer.status < 200 or answer.close or probed:
                continue
            writer.write(PROBE % (case.mark.encode(), case.mark.encode()))
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
    heads: tuple[bytes, ...]  # request heads the backend received for this case


Side = Literal["nginx", "wsgate"]


async def serve_all(
    side: Side, cases: Sequence[FuzzCase], tmp: Path, listen: int, backend_port: int
) -> dict[str, Outcome]:
    """Serve the config with one proxy, send every case; outcomes by mark (plus
    ``unattributed`` for heads without a mark)."""
    conf = differential_conf("seed", listen, backend_port)
    lanes = asyncio.Semaphore(LANES)
    async with AsyncExitStack() as stack:
        backend = await stack.enter_async_context(RecordingBackend("b1", backend_port))
        if side == "nginx":
            await stack.enter_async_context(run_nginx_async(conf, tmp, [listen]))
        else:
            tmp.mkdir(parents=True)
            await stack.enter_async_context(proxy_in_process(conf, tmp))

        async def one(case: FuzzCase) -> tuple[str, ...]:
            async with lanes:
                return await exchange(listen, case)

        async with asyncio.timeout(RUN_TIMEOUT):
            events = await asyncio.gather(*(one(case) for case in cases))
        heads: dict[str, list[bytes]] = {}
        for head in backend.heads:
            found = _MARK.search(head)
            key = found[1].decode().split("-")[0] if found else "unattributed"
            heads.setdefault(key, []).append(head)
    outcomes = {
        case.mark: Outcome(ev, tuple(heads.get(case.mark, ())))
        for case, ev in zip(cases, events, strict=True)
    }
    outcomes["unattributed"] = Outcome((), tuple(heads.get("unattributed", ())))
    return outcomes


# --- documented differences -------------------------------------------------------------


def _status(events: Sequence[str]) -> int | None:
    """The first final status the client read, else None."""
    for event in events:
        fields = event.split(" ")
        if not (event.startswith("HTTP/") and len(fields) > 1 and fields[1].isdigit()):
            continue
        if not 100 <= int(fields[1]) < 200 or fields[1] == "101":
            return int(fields[1])
    return None


# The rows of docs/behavior.md's "Known differences from nginx" that the classifier
# cites, by the text their first cell starts with.
ROWS = {
    "methods": "| Methods |",
    "eol": "| Line endings |",
    "http09": "| HTTP/0.9 ",
    "versions": "| HTTP/1.x versions other than 1.0 and 1.1 ",
    "values": "| Spaces after the version in the request line; control bytes ",
    "chunks": "| Chunk-size lines ",
    "lingering": "| After an error answered before reading a request body ",
    "faults": "| A head with several faults |",
    "upgrades": "| Upgrades |",
}

# The methods llhttp parses in HTTP/1.x (PRI only as the HTTP/2 preface).
LLHTTP_METHODS = frozenset(
    [
        "DELETE",
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "CONNECT",
        "OPTIONS",
        "TRACE",
        "COPY",
        "LOCK",
        "MKCOL",
        "MOVE",
        "PROPFIND",
        "PROPPATCH",
        "SEARCH",
        "UNLOCK",
        "BIND",
        "REBIND",
        "UNBIND",
        "ACL",
        "REPORT",
        "MKACTIVITY",
        "CHECKOUT",
        "MERGE",
        "M-SEARCH",
        "NOTIFY",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "PATCH",
        "PURGE",
        "MKCALENDAR",
        "LINK",
        "UNLINK",
        "SOURCE",
        "QUERY",
    ]
)
_NGINX_METHOD = re.compile(rb"[A-Z_-]+")
_CTL_VALUE = re.compile(rb"\r\n[^:\r\n]*:[^\r\n]*[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BODY = re.compile(rb"(?i)\r\n(?:content-length: *[1-9]|transfer-encoding:)")
_BARE_EOL = re.compile(rb"(?<!\r)\n|\r(?!\n)")


def _refused(outcome: Outcome) -> bool:
    """The proxy forwarded nothing and answered no success (an error status, or nothing)."""
    status = _status(outcome.events)
    return not outcome.heads and (status is None or status >= 400)


def _without_upgrade(head: bytes) -> bytes:
    """A head as sent when the client's ``Upgrade`` is removed: no ``Upgrade`` line, and
    the seed config's ``Connection: $connection_upgrade`` gives ``close``."""
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"Upgrade:")]
    return b"\r\n".join(lines).replace(b"\r\nConnection: upgrade\r\n", b"\r\nConnection: close\r\n")


def documented(case: FuzzCase, nginx: Outcome, wsgate: Outcome) -> str | None:
    """The documented difference (docs/behavior.md, "Known differences from nginx") that
    explains how wsgate's outcome differs from nginx's for this case, else None.

    Each rule needs both what the row is about in the request and the shape of the
    difference that the row describes: the same answers but for nginx's lingering close;
    wsgate stricter (it refused, and the backend received nothing from it); or the same
    requests forwarded but for the client's ``Upgrade``.
    """
    head = case.data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    method = case.data.lstrip(b"\r\n").split(b" ", 1)[0]
    tags = " ".join(case.tags)
    upgrade = re.search(rb"\r\nUpgrade:([^\r\n]*)", head)
    if (
        nginx.heads == wsgate.heads
        and nginx.events[:-1] == wsgate.events[:-1]
        and (nginx.events[-1:], wsgate.events[-1:]) == (("timeout",), ("EOF",))
        and (_status(nginx.events) or 0) >= 400
        and _BODY.search(head) is not None  # a body nginx did not read
    ):
        return ROWS["lingering"]
    if _refused(wsgate):
        if _NGINX_METHOD.fullmatch(method) and method.decode() not in LLHTTP_METHODS:
            return ROWS["methods"]
        if _BARE_EOL.search(head[:-4]) or "eol=" in tags:
            return ROWS["eol"]
        if "http09" in tags or "version=''" in tags:
            return ROWS["http09"]
        if re.search(r"version='HTTP/1\.(?:[2-9]|0\d|\d\d+)'", tags):
            return ROWS["versions"]
        if "sep=trailing" in tags or _CTL_VALUE.search(head):
            return ROWS["values"]
        if "bad-chunks=" in tags:
            return ROWS["chunks"]
        if upgrade is not None and upgrade[1].strip().lower() == b"websocket" and method == b"GET":
            return ROWS["upgrades"]
        if _refused(nginx) and len(case.tags) > 1:
            return ROWS["faults"]
    if upgrade is not None and nginx.heads and len(wsgate.heads) >= len(nginx.heads):
        stripped = [_without_upgrade(h) for h in nginx.heads]
        extra = wsgate.heads[len(nginx.heads) :]
        if list(wsgate.heads[: len(nginx.heads)]) == stripped and all(
            b"-probe\r\n" in h for h in extra
        ):
            return ROWS["upgrades"]
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
        out.append(
            f"--- {case.mark} [{case.base}] {' + '.join(case.tags)}"
            f"  ({row.reason or 'UNDOCUMENTED'})"
        )
        out.append(f"    request: {fuzz.shorten(case.data)}")
        for side, outcome in (("nginx", row.nginx), ("wsgate", row.wsgate)):
            out.append(f"    {side:>6}: {' | '.join(outcome.events)}")
        ng, ws = row.nginx.heads, row.wsgate.heads
        if ng != ws:
            for index in range(max(len(ng), len(ws))):
                for side, heads in (("nginx", ng), ("wsgate", ws)):
                    head = fuzz.shorten(heads[index]) if index < len(heads) else "<none>"
                    out.append(f"    {side:>6} upstream[{index}]: {head}")
    return "\n".join(out)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    assert os.access(NGINX, os.X_OK), f"nginx is needed for this test and not found: {NGINX}"
    cases = generate()
    tmp = tmp_path_factory.mktemp("fuzz")

    async def both() -> Results:
        listen, backend_port = free_ports(2)
        # One after the other on the same ports: the config text is the same byte for byte.
        nginx = await serve_all("nginx", cases, tmp / "ng", listen, backend_port)
        wsgate = await serve_all("wsgate", cases, tmp / "ws", listen, backend_port)
        return Results(cases, nginx, wsgate)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        found = runner.run(both())
    (tmp / "differences.txt").write_text(table(found.differences()))
    return found


def test_cases_are_deterministic() -> None:
    first, second = generate(), generate()
    assert [c.data for c in first] == [c.data for c in second]
    assert 300 <= len(first) <= 2 * COMBINED + sum(map(_options, MUTATIONS)) * 2
    assert len({c.data for c in first}) == len(first), "two cases send the same bytes"


def test_nginx_sees_what_the_cases_name(results: Results) -> None:
    """The generator reaches nginx's interesting answers (else it tests nothing)."""
    statuses = Counter(_status(results.nginx[c.mark].events) for c in results.cases)
    for status in (101, 200, 400, 405, 413, 414, 501, 505):
        assert statuses[status] > 0, f"no case made nginx answer {status}: {statuses}"
    refused = sum(1 for c in results.cases if not results.nginx[c.mark].heads)
    forwarded = len(results.cases) - refused
    assert refused > 50 and forwarded > 50, (refused, forwarded)
    assert results.nginx["unattributed"].heads == ()


def test_exclusions_are_documented_and_used(results: Results) -> None:
    """Each row the classifier cites is in docs/behavior.md and still explains a case."""
    fuzz.assert_rows_documented_and_used(ROWS.values(), results.differences())


def test_no_undocumented_difference(results: Results) -> None:
    fuzz.assert_all_documented(len(results.cases), results.differences(), table)
    assert results.wsgate["unattributed"] == results.nginx["unattributed"]
