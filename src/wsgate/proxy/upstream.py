"""The peer side of a proxied request: connect, send, read the head, relay the body.

:class:`UpstreamProtocol` is created by ``loop.create_connection`` for one attempt. The
request coroutine (``proxy.downstream``) awaits :attr:`head` (the parsed response head
and the bytes that followed it), then either hands the transport to the tunnel or calls
:meth:`UpstreamProtocol.relay_body`, after which body bytes flow from ``data_received``
straight to the client transport, with back-pressure, until :attr:`done` resolves.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any, cast

from wsgate.errors import HTTPError
from wsgate.http.parser import (
    NO_STATUS_LINE,
    ChunkedDecoder,
    ChunkError,
    ResponseHead,
    bad_status_line,
    find_response_head_end,
    parse_response_head,
)

if TYPE_CHECKING:
    from wsgate.proxy.keepalive import KeepaliveCache

__all__ = [
    "CONNECTING",
    "SSL_HANDSHAKING",
    "TIMED_OUT",
    "BodyMode",
    "UpstreamClosed",
    "UpstreamProtocol",
    "connect_failure",
]

# nginx's words for a failed connect (ngx_http_upstream_connect, ngx_ssl_handshake,
# ngx_http_upstream_next): the proxy and the health checks both log them.
TIMED_OUT = "upstream timed out (110: Connection timed out)"
CONNECTING = "connecting to upstream"
SSL_HANDSHAKING = "SSL handshaking to upstream"


def connect_failure(exc: OSError, tls: bool) -> tuple[str, str]:
    """``(message, action)`` for a connect or TLS handshake to a peer that raised ``exc``
    (``tls``: a handshake was part of it); the caller logs them as ``message while
    action``."""
    if isinstance(exc, TimeoutError):
        return TIMED_OUT, CONNECTING  # proxy_connect_timeout covers both steps
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = f"upstream SSL certificate verify error: ({exc.verify_code}:{exc.verify_message})"
        return message, SSL_HANDSHAKING
    if isinstance(exc, ssl.SSLError):
        return f"SSL_do_handshake() failed ({exc.reason or exc})", SSL_HANDSHAKING
    if exc.errno is None and tls:
        # The loop reports a peer that closed during the TLS handshake as a bare
        # ConnectionResetError; ngx_ssl_handshake says "peer closed connection".
        return "peer closed connection in SSL handshake", SSL_HANDSHAKING
    if exc.errno is None:
        return f"connect() failed ({exc})", CONNECTING
    return f"connect() failed ({exc.errno}: {exc.strerror})", CONNECTING


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Fail a future the request coroutine may no longer await (it was cancelled when the
    client went away): mark the exception as seen so asyncio does not report it."""
    future.set_exception(exc)
    future.exception()


class UpstreamClosed(Exception):
    """The peer closed the connection before the response head was complete."""


class BodyMode:
    """How the response body is framed from the peer and re-framed for the client."""

    NONE = 0  # no body (HEAD, 1xx, 204, 304)
    LENGTH = 1  # Content-Length from the peer
    CHUNKED = 2  # chunked from the peer
    EOF = 3  # until the peer closes


class UpstreamProtocol(asyncio.Protocol):
    """One connection to a peer, for one request at a time: with ``keepalive`` in the
    group it may be cached between requests (``proxy.keepalive``) and :meth:`reset`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_head: int, peer: str = "") -> None:
        self.loop = loop
        self.max_head = max_head
        self.transport: asyncio.Transport | None = None
        self.peer = peer  # the PeerConf name, the key of the keepalive cache
        self.born = loop.time()  # for keepalive_time
        self.requests = 0  # requests sent on this connection (keepalive_requests)
        self.idle: KeepaliveCache | None = None  # the cache holding it while idle
        self._clear()

    def _clear(self) -> None:
        loop = self.loop
        self.buf = bytearray()
        self.head: asyncio.Future[tuple[ResponseHead, bytes]] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.client: asyncio.Transport | None = None
        self.mode = BodyMode.NONE
        self.remaining = 0
        self.decoder: ChunkedDecoder | None = None
        self.rechunk = False
        self.body_bytes = 0  # body bytes written to the client (after framing)
        self.sent = 0  # request bytes written to the peer ($upstream_bytes_sent)
        self.received = 0  # bytes read from the peer, head included ($upstream_bytes_received)
        self.last_read = loop.time()
        self.eof = False
        self.extra = False  # bytes came after the response's end: never cached

    def reset(self) -> None:
        """Make a cached connection ready for its next request."""
        self._clear()

    def go_idle(self, cache: KeepaliveCache) -> None:
        """Called by the cache: the connection now waits, idle, for another request."""
        self.idle = cache
        self.client = None
        if self.transport is not None:
            self.transport.resume_reading()  # to see the peer close it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    # -- reading the head ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        self.received += len(data)
        if self.client is not None:
            self._relay(data)
            return
        if self.head.done():
            if self.idle is not None:  # an idle cached connection must not speak
                self.idle.drop(self)
                return
            self.buf += data  # after the head, before relay_body: keep for the caller
            return
        start = max(0, len(self.buf) - 2)
        self.buf += data
        while True:
            end = find_response_head_end(self.buf, start)
            if end < 0 or end > self.max_head:
                # ngx_http_upstream_process_header: the head must fit in proxy_buffer_size;
                # ngx_http_parse_status_line gives up at the first byte that does not fit.
                if bad_status_line(self.buf):
                    _fail(self.head, HTTPError(NO_STATUS_LINE, 502))
                elif end > self.max_head or len(self.buf) >= self.max_head:
                    _fail(self.head, HTTPError("upstream sent too big header", 502))
                return
            try:
                head = parse_response_head(bytes(self.buf[:end]))
            except HTTPError as exc:
                _fail(self.head, exc)
                return
            if 100 <= head.status < 200 and head.status != 101:
                # An interim response (100 Continue): skipped, the next head is read
                # (nginx 1.22 sends it as the response: docs/behavior.md).
                del self.buf[:end]
                start = 0
                continue
            rest = bytes(self.buf[end:])
            self.buf.clear()
            self.head.set_result((head, rest))
            return

    def _closed_before_head(self) -> Exception:
        if self.buf and bad_status_line(self.buf):
            return HTTPError(NO_STATUS_LINE, 502)
        return UpstreamClosed()

    def eof_received(self) -> bool:
        self.eof = True
        if not self.head.done():
            _fail(self.head, self._closed_before_head())
        elif self.client is not None:
            self._finish_eof()
        elif self.idle is not None:
            self.idle.drop(self)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            _fail(self.head, self._closed_before_head() if exc is None else exc)
        elif self.client is not None and not self.done.done():
            self._finish_eof()
        elif self.idle is not None:
            self.idle.drop(self)

    # -- relaying the body ---------------------------------------------------------------

    def relay_body(
        self, client: asyncio.Transport, mode: int, length: int | None, rechunk: bool
    ) -> None:
        """Start relaying the body to ``client``; the caller then awaits :attr:`done`.

        Args:
            mode: a :class:`BodyMode` value.
            length: the peer's Content-Length when ``mode`` is LENGTH.
            rechunk: encode the body as chunks for an HTTP/1.1 client (unknown length).
        """
        self.client = client
        self.mode = mode
        self.rechunk = rechunk
        if mode == BodyMode.NONE or (mode == BodyMode.LENGTH and not length):
            self.done.set_result(None)
            if self.buf:
                self.extra = True
                self.buf.clear()
            return
        if mode == BodyMode.LENGTH:
            self.remaining = length or 0
        if mode == BodyMode.CHUNKED:
            self.decoder = ChunkedDecoder()
        pending = bytes(self.buf)
        self.buf.clear()
        if pending:
            self._relay(pending)
        if self.eof and not self.done.done():
            self._finish_eof()

    def _write(self, data: bytes) -> None:
        assert self.client is not None
        if self.rechunk:
            framed = b"%x\r\n%b\r\n" % (len(data), data)
            self.client.write(framed)
            self.body_bytes += len(framed)  # $body_bytes_sent counts the chunk framing
        else:
            self.client.write(data)
            self.body_bytes += len(data)

    def _relay(self, data: bytes) -> None:
        if self.done.done() or not data:
            if data:
                self.extra = True
            return
        if self.mode == BodyMode.LENGTH:
            piece = data[: self.remaining]
            self.remaining -= len(piece)
            self._write(piece)
            if self.remaining == 0:
                self.extra = len(data) > len(piece)
                self.done.set_result(None)
        elif self.mode == BodyMode.CHUNKED:
            assert self.decoder is not None
            try:
                pieces = self.decoder.feed(data)
            except ChunkError as exc:
                # ngx_http_proxy_chunked_filter: what came before the fault is passed on.
                for piece in exc.pieces:
                    if piece:
                        self._write(piece)
                _fail(self.done, HTTPError(f"upstream sent invalid chunked response: {exc}", 502))
                return
            for piece in pieces:
                if piece:
                    self._write(piece)
            if self.decoder.done:
                self.extra = bool(self.decoder.leftover)
                self._end_chunks()
                self.done.set_result(None)
        else:
            self._write(data)

    def _end_chunks(self) -> None:
        if self.rechunk and self.client is not None:
            self.client.write(b"0\r\n\r\n")
            self.body_bytes += 5

    def _finish_eof(self) -> None:
        if self.done.done():
            return
        if self.mode == BodyMode.EOF:
            self._end_chunks()
            self.done.set_result(None)
        else:
            _fail(self.done, UpstreamClosed())

    # -- flow control: the client's transport drives these through the downstream ------

    def pause(self) -> None:
        """The client cannot take more: stop reading the peer."""
        if self.transport is not None:
            self.transport.pause_reading()

    def resume(self) -> None:
        """The client drained: read the peer again."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
