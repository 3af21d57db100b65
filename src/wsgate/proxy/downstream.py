"""The client side: one :class:`Downstream` protocol per accepted connection.

Theory of operation (states of :attr:`Downstream.state`):

* ``HEAD`` - bytes accumulate in ``buf`` until a blank line ends a request head
  (``client_header_timeout``; between requests ``keepalive_timeout``). The head is parsed
  (``http.parser``), the virtual server and location are chosen (``routing``).
* ``BODY`` - a request body is read into memory (``Content-Length`` or chunked, at most
  ``client_max_body_size``), as nginx's ``proxy_request_buffering on`` does.
* ``WAIT`` - the request coroutine (:meth:`Downstream.handle`) talks to peers. Bytes the
  client sends meanwhile stay in ``buf`` (pipelined requests, or the first frames of a
  WebSocket); past a bound, reading pauses. A client EOF here aborts the request (499).
* ``RESPONSE`` - the response body streams from the peer to the client; the client's
  write-buffer callbacks pause and resume the peer (back-pressure).
* ``TUNNEL`` - after a 101, both transports belong to a :class:`~wsgate.proxy.tunnel.Tunnel`,
  or, for a plain tunnel without TLS, both sockets to the worker's C relay
  (:class:`~wsgate.proxy.native.NativeTunnel`). Its owner, a :class:`TunnelEnd`, keeps
  what the end needs (the peer, the metrics, the access-log lines rendered but for their
  late variables) and takes over this connection's counts; the ``Downstream``, the
  request and its variables are freed, so an idle tunnel costs little memory.
* ``STATUS`` - wsgate answered a ``wsgate_status`` WebSocket itself: a
  :class:`~wsgate.proxy.status.StatusSocket` pushes snapshots and reads the client's Close.
* ``CLOSED``.

After a response the connection goes back to ``HEAD`` (keep-alive) and any pipelined bytes
in ``buf`` are parsed at once. Only a 101 answer to a request carrying ``Upgrade`` opens a
tunnel (nginx-semantics.md §1.6); any other answer keeps the connection in HTTP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from wsgate import status_page
from wsgate.balancer.base import Outcome, PeerState, Pick, RequestInfo
from wsgate.conf.model import LocationConf, NextUpstream, ServerConf
from wsgate.errors import HTTPError
from wsgate.http.parser import (
    ChunkedDecoder,
    RequestHead,
    ResponseHead,
    find_head_end,
    header_buffers_overflow,
    parse_request_head,
)
from wsgate.http.response import build_response_head
from wsgate.http.status import REASONS, error_page
from wsgate.http.upgrade import Upgrade, check_upgrade_response, classify_upgrade
from wsgate.http.upstream_request import build_request_head, escape_uri, valid_header_name
from wsgate.log.error_log import ErrorContext
from wsgate.proxy.metrics import CONTENT_TYPE
from wsgate.proxy.native import NativeRelay, NativeTunnel
from wsgate.proxy.native import available as native_available
from wsgate.proxy.stats import ACTIVE, READING, REQUESTS, WRITING
from wsgate.proxy.status import StatusSocket, handshake
from wsgate.proxy.tunnel import Tunnel
from wsgate.proxy.upstream import (
    TIMED_OUT,
    BodyMode,
    UpstreamClosed,
    UpstreamProtocol,
    connect_failure,
)
from wsgate.proxy.worker import Worker
from wsgate.proxy.wstunnel import FrameTunnel
from wsgate.routing import (
    Found,
    Match,
    find_location,
    normalize_host,
    parse_target,
    regex_captures,
)
from wsgate.vars.compile import Var, to_bytes, wire
from wsgate.vars.registry import TUNNEL_LATE, ConnInfo, RequestVars

__all__ = ["Downstream"]

HEAD, BODY, WAIT, RESPONSE, TUNNEL, CLOSED, STATUS = range(7)

# Bytes a client may send while its request is with a peer before reading pauses
# (pipelined requests or early WebSocket frames); bounds memory per connection.
WAIT_BUFFER_LIMIT = 64 * 1024

# Methods nginx never retries once the request was sent (ngx_http_upstream_next):
_NON_IDEMPOTENT = frozenset({"POST", "LOCK", "PATCH"})


class Rejected(HTTPError):
    """A request refused while reading it; ``stage`` is where nginx stops reading."""

    def __init__(self, message: str, status: int, stage: str) -> None:
        super().__init__(message, status)
        self.stage = stage


def loose_head(raw: bytes) -> RequestHead:
    """A best-effort head for logging a request that failed to parse."""
    lines = raw.split(b"\r\n")
    first = lines[0].decode("latin-1")
    parts = first.split(" ")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return RequestHead(
        method=parts[0],
        target=parts[1] if len(parts) > 1 else "",
        version=parts[2][5:] if len(parts) > 2 else "1.0",
        headers=headers,
        request_line=first,
        content_length=None,
        chunked=False,
        keep_alive=False,
        raw_length=len(raw),
    )


def _offset_after_line(raw: bytes, index: int) -> int:
    """Offset just past line ``index`` (0 = the request line) of ``raw``."""
    pos = 0
    for _ in range(index + 1):
        pos = raw.index(b"\r\n", pos) + 2
    return pos


@dataclass(slots=True)
class Request:
    """One request on its way through the proxy."""

    head: RequestHead
    server: ServerConf
    found: Found
    rv: RequestVars
    ctx: ErrorContext
    upgrade_kind: Upgrade
    body: bytes | None = None
    keep_alive: bool = True
    started: float = 0.0  # loop time of the first attempt (proxy_next_upstream_timeout)
    continue_sent: int = 0  # bytes of an interim "100 Continue" (counted in $bytes_sent)
    limits: list[tuple[str, str]] = field(default_factory=list)  # limit_conn slots held


class Downstream(asyncio.Protocol):
    """A client connection (see the module docstring for the states)."""

    __slots__ = (
        "body_parts",
        "body_remaining",
        "body_size",
        "body_wire",
        "born",
        "buf",
        "client_paused",
        "conn",
        "counted",
        "decoder",
        "default_server",
        "loop",
        "paused_reading",
        "pipelined",
        "request",
        "send_timer",
        "stage",
        "state",
        "status",
        "task",
        "timer",
        "transport",
        "upstream",
        "worker",
    )

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.loop = worker.loop
        self.transport: asyncio.Transport | None = None
        self.state = HEAD
        self.buf = bytearray()
        self.conn: ConnInfo | None = None
        self.born = 0.0  # when the connection was accepted (keepalive_time)
        self.timer: asyncio.TimerHandle | None = None
        self.request: Request | None = None
        self.task: asyncio.Task[None] | None = None
        self.upstream: UpstreamProtocol | None = None
        self.body_parts: list[bytes] = []
        self.body_remaining = 0
        self.body_size = 0
        self.body_wire = 0
        self.decoder: ChunkedDecoder | None = None
        self.paused_reading = False
        self.client_paused = False
        self.send_timer: asyncio.TimerHandle | None = None
        self.default_server: ServerConf | None = None
        self.counted = False  # in stub_status's active connections
        self.stage = 0  # READING, WRITING or 0 (Waiting) for stub_status
        self.pipelined = False  # the next head was already buffered ($pipe)
        self.status: tuple[StatusSocket, Request] | None = None  # state STATUS

    # -- connection lifecycle --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        # TCP_NODELAY (tcp_nodelay on) is set by the event loop on every TCP transport.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        self.born = self.loop.time()  # keepalive_time
        self.conn = ConnInfo(
            remote_addr=str(peer[0]),
            remote_port=int(peer[1]),
            server_addr=str(local[0]),
            server_port=int(local[1]),
            scheme="https" if transport.get_extra_info("ssl_object") is not None else "http",
            number=next(self.worker.counter),
        )
        self.default_server = self.worker.router.select_server(
            self.conn.server_addr, self.conn.server_port, None
        )
        if not self.worker.connection_available():
            self.worker.stats.accepted(handled=False)
            self.state = CLOSED
            self.transport.abort()
            return
        self.worker.stats.accepted(handled=True)
        self.counted = True
        self.worker.connections.add(self)
        self._arm(self.default_server.client_header_timeout, self._header_timed_out)

    def _uncount(self) -> None:
        """The connection is gone: leave the stub_status gauges (once)."""
        if self.counted:
            self.counted = False
            self._stage(0)
            self.worker.stats.add(ACTIVE, -1)

    def _stage(self, stage: int) -> None:
        """Move this connection between stub_status's Reading, Writing and Waiting (0)."""
        stats = self.worker.stats
        if self.stage:
            stats.add(self.stage, -1)
        if stage:
            stats.add(stage, 1)
        self.stage = stage

    def connection_lost(self, exc: Exception | None) -> None:
        if self.status is not None:
            status, request = self.status
            self.status = None
            status.stop()
            self._finalize(request)
        self._uncount()
        prev = self.state
        self.state = CLOSED
        self._disarm()
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None
        if prev in (WAIT, RESPONSE) and self.task is not None and not self.task.done():
            self.task.cancel("client closed connection")
        self.worker.forget(self)

    def eof_received(self) -> bool:
        if self.state in (WAIT, RESPONSE) and self.task is not None and not self.task.done():
            # ngx_http_upstream_check_broken_connection: the client went away (499).
            self.task.cancel("client prematurely closed connection")
        elif self.transport is not None:
            self.transport.close()
        return True

    def shutdown(self) -> None:
        """Graceful stop: close now if idle between requests, else after this request.

        A connection that has not sent its first request yet is left to send it (it is
        answered with ``Connection: close``), as nginx closes only idle keep-alive
        connections (``ngx_close_idle_connections``).
        """
        requests = self.conn.requests if self.conn is not None else 0
        if self.status is not None:
            self.status[0].close()  # a status page is no request to wait for
            return
        if self.state == HEAD and not self.buf and requests > 0 and self.transport is not None:
            self.transport.close()
            self.state = CLOSED
            self.worker.forget(self)

    def abort(self) -> None:
        """Fast stop: drop the connection."""
        if self.transport is not None:
            self.transport.abort()

    # -- timers -----------------------------------------------------------------------------

    def _arm(self, timeout: float, callback: Callable[[], None]) -> None:
        self._disarm()
        if timeout > 0:
            self.timer = self.loop.call_later(timeout, callback)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _header_timed_out(self) -> None:
        self.timer = None
        if self.state != HEAD or self.transport is None:
            return
        if self.buf:
            # nginx: "client timed out (110: Connection timed out) while reading client
            # request headers", answered with 408 only in the log; the connection closes.
            self._log_client(
                "info",
                "client timed out (110: Connection timed out)",
                "reading client request headers",
            )
        self.transport.close()

    def _keepalive_timed_out(self) -> None:
        self.timer = None
        if self.state == HEAD and not self.buf and self.transport is not None:
            self.transport.close()

    def _body_timed_out(self) -> None:
        self.timer = None
        if self.state == BODY and self.transport is not None and self.request is not None:
            self.worker.error_log.log(
                "info",
                "client timed out (110: Connection timed out)",
                self.request.ctx,
                "reading client request body",
            )
            self.request.rv.status = 408
            self._finalize(self.request)
            self.transport.close()

    # -- reading ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state == HEAD:
            if not self.buf and self.stage != READING:
                self._stage(READING)  # the first byte of a request
            if not self.buf and self.default_server is not None:
                # First byte of a request: the keep-alive wait becomes the header timeout.
                self._arm(self.default_server.client_header_timeout, self._header_timed_out)
            self.buf += data
            self._guarded(self._parse_heads)
        elif state == BODY:
            self._guarded(self._feed_body, data)
        elif state == STATUS and self.status is not None:
            self.status[0].feed(data)
        elif state in (WAIT, RESPONSE):
            self.buf += data
            if len(self.buf) > WAIT_BUFFER_LIMIT and not self.paused_reading:
                assert self.transport is not None
                self.transport.pause_reading()
                self.paused_reading = True

    def _guarded(self, step: Callable[..., None], *args: bytes) -> None:
        """Run a parsing step; a bug costs this connection only, never the worker."""
        try:
            step(*args)
        except Exception as exc:
            self._log_client("alert", f"unexpected error: {exc!r}", "reading client request")
            if self.transport is not None:
                self.transport.abort()

    def _resume_reading(self) -> None:
        if self.paused_reading and self.transport is not None:
            self.paused_reading = False
            self.transport.resume_reading()

    def _parse_heads(self) -> None:
        """Parse as many complete heads as ``buf`` holds (one at a time, in order)."""
        assert self.transport is not None and self.conn is not None
        while self.state == HEAD and self.buf:
            if self.buf[0] in b"\r\n":
                # ngx_http_parse_request_line: any CR and LF before a request line are
                # skipped; they are no part of the request ($request_length).
                start = 1
                while start < len(self.buf) and self.buf[start] in b"\r\n":
                    start += 1
                del self.buf[:start]
                continue
            end = find_head_end(self.buf)
            server = self.default_server
            assert server is not None
            # ngx_http_alloc_large_header_buffer: a line must fit in one large buffer with
            # its CRLF, else 414 (request line) or 400 (header line).
            n, size = server.large_client_header_buffers
            first_line_end = self.buf.find(b"\r\n")
            if end < 0:
                if (first_line_end < 0 and len(self.buf) >= size) or (first_line_end + 2 > size):
                    self._too_long_uri(size)
                elif len(self.buf) > n * size:
                    self._reject(494, "client sent too large request")
                return
            if first_line_end + 2 > size:
                self._too_long_uri(size)
                return
            first = server.client_header_buffer_size
            cut = -1 if end <= first else header_buffers_overflow(self.buf[:end], n, size, first)
            if cut >= 0:
                # nginx read the lines before the one that does not fit: they are logged.
                self.conn.requests += 1
                self._reject(494, "client sent too long header line", bytes(self.buf[:cut]))
                return
            head_bytes = bytes(self.buf[:end])
            del self.buf[:end]
            self._disarm()
            self.conn.requests += 1
            try:
                request = self._new_request(head_bytes)
            except Rejected as exc:
                self._reject(exc.status, exc.message, head_bytes, exc.stage)
                return
            except HTTPError as exc:
                self._reject(exc.status, exc.message, head_bytes)
                return
            self.request = request
            self.worker.stats.add(REQUESTS)
            self._stage(WRITING)
            self._start_body(request)

    def _too_long_uri(self, size: int) -> None:
        """414 for a request line longer than a large header buffer. nginx logs it with the
        part of the line that filled the buffer as ``$request`` (ngx_http_process_request_line:
        ``header_in->end - request_start``) and a ``$request_length`` of 0."""
        assert self.conn is not None
        self.conn.requests += 1
        self._reject(414, "client sent too long URI", bytes(self.buf[:size]), "uri")

    def _new_request(self, head_bytes: bytes) -> Request:
        assert self.conn is not None
        head = parse_request_head(head_bytes)
        router = self.worker.router
        server = self.default_server
        assert server is not None
        target = parse_target(head.target)
        if target is None:
            raise Rejected("client sent invalid request", 400, "line")
        uri, args, target_host = target
        hosts = [v for n, v in head.headers if n.lower() == "host"]
        if len(hosts) > 1:
            raise Rejected("client sent duplicate host header", 400, "host")
        raw_host = target_host if target_host is not None else (hosts[0] if hosts else None)
        host: str | None = None
        if raw_host is not None:
            host = normalize_host(raw_host)
            if host is None:
                raise HTTPError("client sent invalid host header", 400)
        elif head.version == "1.1":
            raise HTTPError('client sent HTTP/1.1 request without "Host" header', 400)
        server, by_regex = router.find_server(self.conn.server_addr, self.conn.server_port, host)
        kept = [
            (n, v) for n, v in head.headers if valid_header_name(n, server.underscores_in_headers)
        ]
        if len(kept) != len(head.headers):
            head.headers = kept
        if server.defaults.return_ is not None:
            # A server-level "return" runs before the location search (server rewrite).
            found = Found(None, Match.NONE)
        else:
            found = find_location(server.locations, uri)
        rv = RequestVars(
            head,
            self.conn,
            server,
            self.worker.http.maps,
            host=host if host is not None else server.name,
            uri=uri,
            args=args,
            start=time.time(),
        )
        rv.location = found.location
        rv.pipelined, self.pipelined = self.pipelined, False
        if by_regex is not None:  # a regex server_name's captures, then the location's
            rv.captures, rv.named = regex_captures(by_regex)
        if found.named is not None:
            # Any regex match replaces the captures, even one without groups (then $1 is
            # empty: ngx_http_regex_exec); matched against the decoded $uri, they are
            # kept as wire strings like other values.
            rv.captures = tuple(wire(c) for c in found.captures)
            rv.named.update({k: wire(v) for k, v in found.named.items()})
        ctx = ErrorContext(
            conn=self.conn.number,
            client=self.conn.remote_addr,
            server=server.name,
            request=head.request_line,
            host=raw_host,
        )
        if head.method in ("CONNECT", "TRACE"):
            # ngx_http_process_request_header, after the Host and framing checks.
            raise Rejected(f"client sent {head.method} method", 405, "head")
        allowed = (found.location or server.defaults).proxy_upgrade_protocols
        kind = classify_upgrade(head.method, head.headers, allowed)
        if kind is Upgrade.BAD_KEY:
            raise Rejected('client sent invalid "Sec-WebSocket-Key" header', 400, "head")
        if kind is Upgrade.STRIP:
            # An Upgrade this location does not forward: the peer gets a plain request.
            head.headers = [(n, v) for n, v in head.headers if n.lower() != "upgrade"]
        # ngx_http_set_keepalive's conditions, known before the response is written so
        # that it can say "Connection: close" (the last of keepalive_requests, or
        # keepalive_timeout 0, a connection older than keepalive_time).
        conf = found.location or server.defaults
        keep_alive = (
            head.keep_alive
            and conf.keepalive_timeout > 0
            and self.conn.requests < conf.keepalive_requests
            and self.loop.time() - self.born <= conf.keepalive_time
        )
        return Request(head, server, found, rv, ctx, kind, keep_alive=keep_alive)

    # -- request body ------------------------------------------------------------------------

    def _take_limits(self, request: Request, loc: LocationConf) -> bool:
        """limit_conn (ngx_http_limit_conn_handler): count this request against each zone;
        False (and the refusal answered) when one is full. Slots are given back when the
        request ends (``_finalize``), so a tunnel holds its slot for its whole life."""
        zones = dict(loc.limit_conn_zone)
        for name, limit in loc.limit_conn:
            key = request.rv.evaluate(zones[name])
            if not key or len(key) > 255:  # nginx skips empty keys and keys over 255 bytes
                continue
            counts = self.worker.limit_conn.setdefault(name, {})
            if counts.get(key, 0) >= limit:
                self.worker.error_log.log(
                    loc.limit_conn_log_level,
                    f'limiting connections by zone "{name}"',
                    request.ctx,
                )
                self._respond_error(request, loc.limit_conn_status)
                return False
            counts[key] = counts.get(key, 0) + 1
            request.limits.append((name, key))
        return True

    def _start_body(self, request: Request) -> None:
        head = request.head
        loc = request.found.location or request.server.defaults
        if loc.limit_conn and not self._take_limits(request, loc):
            return
        limit = loc.client_max_body_size
        if head.content_length is not None and limit and head.content_length > limit:
            self.worker.error_log.log(
                "error",
                f"client intended to send too large body: {head.content_length} bytes",
                request.ctx,
            )
            self._respond_error(request, 413)
            return
        found = request.found
        proxied = (
            found.match is not Match.REDIRECT
            and found.location is not None
            and found.location.return_ is None
            and found.location.proxy_pass is not None
        )
        if (
            proxied
            and head.version == "1.1"
            and (head.header("expect") or "").lower() == ("100-continue")
        ):
            # ngx_http_test_expect: the proxy reads the (maybe empty) body of every request
            # it passes on, and first answers "Expect: 100-continue" with an interim 100.
            assert self.transport is not None
            self.transport.write(_CONTINUE)
            request.continue_sent = len(_CONTINUE)
        if head.content_length or head.chunked:
            self.state = BODY
            self.body_parts = []
            self.body_size = 0
            self.body_wire = 0
            self.body_remaining = head.content_length or 0
            self.decoder = ChunkedDecoder() if head.chunked else None
            self._arm(loc.client_body_timeout, self._body_timed_out)
            pending = bytes(self.buf)
            self.buf.clear()
            if pending:
                self._feed_body(pending)
            return
        if head.content_length == 0:
            request.body = b""
        self._dispatch(request)

    def _feed_body(self, data: bytes) -> None:
        request = self.request
        assert request is not None
        loc = request.found.location or request.server.defaults
        if self.decoder is not None:
            try:
                pieces = self.decoder.feed(data)
            except ValueError:
                self._reject(400, "client sent invalid chunked body")
                return
            self.body_parts.extend(pieces)
            self.body_size += sum(len(p) for p in pieces)
            self.body_wire += len(data) - len(self.decoder.leftover)
            limit = loc.client_max_body_size
            if limit and self.body_size > limit:
                self.worker.error_log.log(
                    "error",
                    f"client intended to send too large chunked body: {self.body_size} bytes",
                    request.ctx,
                )
                self._respond_error(request, 413, keep_alive=False)
                return
            if not self.decoder.done:
                return
            self.buf += self.decoder.leftover
        else:
            piece = data[: self.body_remaining]
            self.body_parts.append(piece)
            self.body_remaining -= len(piece)
            self.body_size += len(piece)
            self.body_wire += len(piece)
            if self.body_remaining > 0:
                return
            self.buf += data[len(piece) :]
        self._disarm()
        request.body = b"".join(self.body_parts)
        # $request_length counts the body as it came on the wire (chunk framing included).
        request.rv.request_length = request.head.raw_length + self.body_wire
        self.body_parts = []
        self._dispatch(request)

    # -- handing the request to the coroutine -----------------------------------------------

    def _dispatch(self, request: Request) -> None:
        self.state = WAIT
        self.task = self.loop.create_task(self.handle(request))

    async def handle(self, request: Request) -> None:
        """Answer one request: redirect, ``return``, 404, or proxy it to a peer."""
        try:
            found = request.found
            loc = found.location
            if request.server.defaults.return_ is not None:
                self._return(request, request.server.defaults)
            elif found.match is Match.REDIRECT and loc is not None:
                self._redirect(request, loc)
            elif loc is not None and loc.return_ is not None:
                self._return(request, loc)
            elif loc is not None and loc.stub_status:
                body = self.worker.stats.render()
                self._simple_response(request, 200, body, content_type="text/plain")
            elif loc is not None and loc.wsgate_metrics:
                metrics = self.worker.metrics
                metrics.update_peers(self.worker.metric_groups.values(), self.loop.time())
                self._simple_response(request, 200, metrics.render(), content_type=CONTENT_TYPE)
            elif loc is not None and loc.wsgate_status:
                self._status(request, loc)
            elif loc is None or loc.proxy_pass is None:
                self._respond_error(request, 404)
            elif (
                loc.websocket_drain is not None
                and self.worker.closing
                and request.upgrade_kind in _TUNNEL_KINDS
            ):
                # websocket_drain: no new tunnel on a worker that is going away.
                retry = str(loc.websocket_drain.retry_after)
                self._respond_error(request, 503, headers=(("Retry-After", retry),))
            else:
                await self._proxy(request, loc)
        except asyncio.CancelledError:
            # The client went away while the request was with a peer (nginx: 499).
            self._client_aborted(request)
        except Exception as exc:  # a bug must cost one request, not the worker
            self.worker.error_log.log("alert", f"unexpected error: {exc!r}", request.ctx)
            if self.state in (WAIT,):
                self._respond_error(request, 500, keep_alive=False)
            elif self.transport is not None:
                self.transport.close()

    def _client_aborted(self, request: Request) -> None:
        self.worker.error_log.log(
            "info",
            "client prematurely closed connection, so upstream connection is closed too",
            request.ctx,
            "sending request to upstream",
        )
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.abort()
        if request.rv.status == 0:
            request.rv.status = 499
        self._finalize(request)
        if self.transport is not None:
            self.transport.close()

    # -- simple responses ----------------------------------------------------------------------

    def _server_token(self, loc: LocationConf) -> str:
        return self.worker.server_token if loc.server_tokens else "wsgate"

    def _simple_response(
        self,
        request: Request,
        status: int,
        body: bytes,
        *,
        content_type: str | None = "text/html",
        location: str | None = None,
        keep_alive: bool = True,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        loc = request.found.location or request.server.defaults
        keep = keep_alive and request.keep_alive and not self.worker.closing
        head_lines = [("Content-Type", content_type)] if content_type is not None else []
        head_lines.extend(headers)
        special_location = None
        if location is not None:
            special_location = self._absolute(request, loc, location)
            if special_location is None:
                head_lines.append(("Location", location))
        head_lines.extend(self._added_headers(request, loc, status))
        head = build_response_head(
            status=status,
            reason=None,
            headers=head_lines,
            server=self._server_token(loc),
            # ngx_http_header_filter: a 204 has neither a length nor a type.
            content_length=None if status == 204 else len(body),
            chunked=False,
            connection="keep-alive" if keep else "close",
            keepalive_header=loc.keepalive_header if keep else None,
            location=special_location,
        )
        if request.head.method == "HEAD":
            body = b""
        assert self.transport is not None
        self.transport.write(head + body)
        request.rv.sent_head = head
        request.rv.status = status
        request.rv.bytes_sent = len(head) + len(body)
        request.rv.body_bytes_sent = len(body)
        request.keep_alive = keep
        self._finish_request(request)

    def _added_headers(
        self, request: Request, loc: LocationConf, status: int
    ) -> list[tuple[str, str]]:
        """``add_header`` lines for this response (ngx_http_headers_filter)."""
        if not loc.add_header:
            return []
        ok = status in _ADD_HEADER_STATUSES
        out = []
        for name, value, always in loc.add_header:
            if ok or always:
                text = request.rv.evaluate(value)
                if text:
                    out.append((name, text))
        return out

    def _respond_error(
        self,
        request: Request,
        status: int,
        keep_alive: bool = True,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        # ngx_http_special_response_handler: these statuses never keep the connection.
        if status in (400, 413, 414, 494, 500, 501):
            keep_alive = False
        loc = request.found.location or request.server.defaults
        body = error_page(status, self._server_token(loc))
        self._simple_response(
            request, 400 if status == 494 else status, body, keep_alive=keep_alive, headers=headers
        )

    def _absolute(self, request: Request, loc: LocationConf, location: str) -> str | None:
        """``Location`` as ngx_http_header_filter prints it in its own place: a value that
        starts with "/" gets scheme, host and port (``absolute_redirect``); ``None`` for
        any other value, which stays among the other headers."""
        if not location.startswith("/") or not loc.absolute_redirect:
            return None
        conn = self.conn
        assert conn is not None
        if loc.server_name_in_redirect:
            host = request.server.name
        else:
            # The request's host (request line or Host header), else the local address.
            raw = request.ctx.host
            host = (normalize_host(raw) if raw else None) or conn.server_addr
        port = ""
        default = 443 if conn.scheme == "https" else 80
        if loc.port_in_redirect and conn.server_port != default:
            port = f":{conn.server_port}"
        return f"{conn.scheme}://{host}{port}{location}"

    def _redirect(self, request: Request, loc: LocationConf) -> None:
        # §4.3: 301 to the location name with the query string.
        target = escape_uri(loc.name) + (f"?{request.rv.args}" if request.rv.args else "")
        body = error_page(301, self._server_token(loc))
        self._simple_response(request, 301, body, location=target)

    def _return(self, request: Request, loc: LocationConf) -> None:
        # ngx_http_script_return_code: an error code without text is nginx's error page;
        # anything else goes through ngx_http_send_response (redirect codes: Location).
        assert loc.return_ is not None
        code, text = loc.return_
        if code == 444 and text is None:
            # NGX_HTTP_CLOSE: no response at all; the log says 444.
            request.rv.status = 444
            request.keep_alive = False
            self.state = CLOSED
            self._finalize(request)
            assert self.transport is not None
            self.transport.close()
            return
        if code >= 400 and text is None:
            self._respond_error(request, code)
            return
        value = request.rv.evaluate(text) if text is not None else ""
        if code in (301, 302, 303, 307, 308):
            body = error_page(code, self._server_token(loc))
            self._simple_response(request, code, body, location=value)
        else:
            self._simple_response(
                request,
                code,
                b"" if code == 204 else to_bytes(value),
                content_type=None if code == 204 else _content_type(request.rv.uri, loc),
            )

    def _reject(
        self, status: int, message: str, raw: bytes | None = None, stage: str = "head"
    ) -> None:
        """Answer a request nginx refuses while reading it, then close (400, 414, ...).

        ``raw`` is what nginx had read of the request (the whole head, the lines before a
        line its buffers could not hold, or the start of a too long request line): the
        refusal is then also written to the access log; ``stage`` says where nginx would
        have stopped reading it (``line``, ``host``, ``uri`` or ``head``).
        """
        assert self.conn is not None and self.transport is not None
        server = self.default_server
        assert server is not None
        ctx = ErrorContext(conn=self.conn.number, client=self.conn.remote_addr, server=server.name)
        self.worker.error_log.log("info", message, ctx, "reading client request headers")
        token = self._server_token(server.defaults)
        body = error_page(status, token)
        sent_status = 400 if status == 494 else status
        head = build_response_head(
            status=sent_status,
            reason=REASONS.get(sent_status),
            headers=[("Content-Type", "text/html")],
            server=token,
            content_length=len(body),
            chunked=False,
            connection="close",
        )
        self.transport.write(head + body)
        self.state = CLOSED
        self.transport.close()
        if raw is not None:
            self._log_rejected(server, raw, stage, sent_status, head, len(body))

    def _log_rejected(
        self,
        server: ServerConf,
        raw: bytes,
        stage: str,
        status: int,
        sent_head: bytes,
        body_size: int,
    ) -> None:
        """The access-log line nginx writes for a request it refused while reading it.

        nginx stops at the line it refuses: a bad request line leaves no headers and a
        ``$request_length`` of that line; a second ``Host`` stops after that header.
        """
        assert self.conn is not None
        head = loose_head(raw)
        length = len(raw)
        if stage == "line":
            head.headers = []
            head.target = ""  # no $request_uri: nginx refused the URI before keeping it
            length = raw.find(b"\r\n") + 2
        elif stage == "uri":  # the start of a request line too long to keep
            head.headers = []
            length = 0
        elif stage == "host":
            hosts = [i for i, (n, _) in enumerate(head.headers) if n.lower() == "host"]
            head.headers = head.headers[: hosts[1] + 1]
            length = _offset_after_line(raw, hosts[1] + 1)
        host = head.header("host")
        rv = RequestVars(
            head,
            self.conn,
            server,
            self.worker.http.maps,
            host=(normalize_host(host) if host else None) or server.name,
            uri="",
            args="",
            start=time.time(),
        )
        rv.request_length = length
        rv.status = status
        rv.sent_head = sent_head
        rv.bytes_sent = len(sent_head) + body_size
        rv.body_bytes_sent = body_size
        rv.end_time = time.time()
        self.worker.metrics.on_request(status)
        self.worker.access_logs.write(server.defaults.access_log, rv)

    def _log_client(self, level: str, message: str, action: str) -> None:
        assert self.conn is not None and self.default_server is not None
        ctx = ErrorContext(
            conn=self.conn.number,
            client=self.conn.remote_addr,
            server=self.default_server.name,
        )
        self.worker.error_log.log(level, message, ctx, action)

    # -- proxying ---------------------------------------------------------------------------

    def _upstream_uri(self, request: Request, loc: LocationConf) -> str:
        pp = loc.proxy_pass
        assert pp is not None
        rv = request.rv
        if pp.uri_value is not None:
            # ngx_http_proxy_eval: a URI part with variables is sent as evaluated.
            return rv.evaluate(pp.uri_value)
        if pp.uri is None:
            target = request.head.target
            if not target.startswith("/"):  # absolute-form: keep path and query only
                rest = target.split("//", 1)[-1]
                cut = min(
                    (i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest)
                )
                target = rest[cut:] or "/"
                if target.startswith("?"):
                    target = "/" + target
            return target
        # §4.4: replace the location prefix of the normalized $uri by the URI part.
        tail = rv.uri[len(loc.name) :] if loc.modifier in ("", "^~", "=") else rv.uri
        path = pp.uri + tail
        if "%" in request.head.target.split("?", 1)[0]:
            path = escape_uri(path)
        return wire(path) + (f"?{rv.args}" if rv.args else "")

    async def _proxy(self, request: Request, loc: LocationConf) -> None:
        pp = loc.proxy_pass
        assert pp is not None and self.transport is not None
        worker = self.worker
        rv = request.rv
        head = request.head
        rv.proxy_host = pp.proxy_host
        balancer = worker.balancers[pp.upstream]
        uri = self._upstream_uri(request, loc)
        set_headers = [(n, rv.evaluate(cv)) for n, cv in loc.proxy_set_header]
        body = request.body
        req_bytes = build_request_head(
            method=head.method,
            uri=uri,
            http_version=loc.proxy_http_version,
            set_headers=set_headers,
            client_headers=head.headers,
            proxy_host=pp.proxy_host,
            body_length=len(body) if body is not None else None,
            pass_request_headers=loc.proxy_pass_request_headers,
        )
        if body:
            req_bytes += body
        group = worker.http.upstreams[pp.upstream]
        # The balancer sees the client address (ip_hash) and the evaluated `hash` key.
        key = to_bytes(rv.evaluate(group.hash_key)) if group.hash_key else b""
        pick = balancer.pick(
            RequestInfo(remote_addr=rv.conn.remote_addr, hash_key=key),
            loc.proxy_next_upstream_tries,
        )
        request.started = self.loop.time()
        status = 502
        while True:
            peer = pick.get(self.loop.time())
            if peer is None:
                rv.upstream_addr.append(balancer_name(worker, pp.upstream))
                rv.upstream_status.append("502")
                rv.upstream_response_time.append(0.0)
                rv.upstream_bytes_sent.append(0)
                rv.upstream_bytes_received.append(0)
                request.ctx.upstream = f"{pp.scheme}://{balancer_name(worker, pp.upstream)}{uri}"
                worker.error_log.log(
                    "error", "no live upstreams", request.ctx, "connecting to upstream"
                )
                self._respond_error(request, 502)
                return
            request.ctx.upstream = f"{pp.scheme}://{peer.conf.name}{uri}"
            rv.upstream_addr.append(peer.conf.name)
            outcome = await self._attempt(request, loc, peer, pick, req_bytes)
            if outcome is None:
                return  # answered (response relayed or tunnel opened)
            failure, status, sent = outcome
            if not self._may_retry(request, loc, pick, failure, sent, request.started):
                break
        self._respond_error(request, status)

    def _may_retry(
        self,
        request: Request,
        loc: LocationConf,
        pick: Pick,
        failure: NextUpstream,
        sent: bool,
        started: float,
    ) -> bool:
        # ngx_http_upstream_next: conditions for trying the next peer.
        flags = loc.proxy_next_upstream
        if pick.tries == 0 or flags & NextUpstream.OFF or not flags & failure:
            return False
        if (
            sent
            and request.head.method in _NON_IDEMPOTENT
            and not (flags & NextUpstream.NON_IDEMPOTENT)
        ):
            return False
        timeout = loc.proxy_next_upstream_timeout
        return not (timeout and self.loop.time() - started >= timeout)

    async def _attempt(
        self, request: Request, loc: LocationConf, peer: PeerState, pick: Pick, req_bytes: bytes
    ) -> tuple[NextUpstream, int, bool] | None:
        """Try one peer. ``None``: the request is answered. Otherwise (failure, status,
        request_sent) for the retry decision."""
        t0 = self.loop.time()
        sent = False
        assert loc.proxy_pass is not None
        # keepalive: an idle connection to this peer, if the group caches them
        # (ngx_http_upstream_get_keepalive_peer, after the balancer chose the peer).
        cache = self.worker.keepalive.get(loc.proxy_pass.upstream)
        proto = cache.take(peer.conf.name) if cache is not None else None
        cached = proto is not None
        if proto is None and not self.worker.connection_available():
            # ngx_http_upstream_connect: no free connection is an internal error (500).
            self._release(request, peer, pick, t0, "-", Outcome.NEXT, None)
            self._respond_error(request, 500)
            return None
        self.worker.upstream_attempts += 1
        self.worker.metrics.on_attempt(
            self.worker.metric_groups[loc.proxy_pass.upstream][0], peer.conf.name
        )
        try:
            if proto is None:
                next(self.worker.counter)  # nginx numbers upstream connections ($connection)
                try:
                    async with asyncio.timeout(loc.proxy_connect_timeout or None):
                        _, proto = await self._connect(request, loc, peer)
                except OSError as exc:  # TimeoutError and ssl.SSLError are OSErrors
                    tls = loc.proxy_pass.scheme == "https"
                    return self._failed(request, peer, pick, t0, *_connect_failure(exc, tls), sent)
            else:
                proto.reset()
            assert proto.transport is not None
            proto.requests += 1
            self.upstream = proto
            proto.transport.write(req_bytes)
            proto.sent = len(req_bytes)
            sent = True
            try:
                async with asyncio.timeout(loc.proxy_read_timeout or None):
                    resp, rest = await proto.head
            except (OSError, UpstreamClosed, HTTPError) as exc:
                failed = self._failed(request, peer, pick, t0, *_header_failure(exc), sent, proto)
                if cached and failed[0] is NextUpstream.ERROR:
                    # ngx_http_upstream_next: an error on a cached connection gives the
                    # try back ("TODO: inform balancer instead"); the peer's failure is
                    # still counted by its balancer, as in nginx.
                    pick.tries += 1
                return failed
            status_flag = _STATUS_FLAGS.get(resp.status)
            # An upstream 5xx/403/404/429 moves on only if listed and another try remains.
            if (
                status_flag is not None
                and pick.tries > 1
                and self._may_retry(request, loc, pick, status_flag, True, request.started)
            ):
                outcome = Outcome.NEXT if resp.status in (403, 404) else Outcome.FAILED
                # The round-robin free warns here too, as after any counted failure
                # (ngx_http_upstream_next -> ngx_http_upstream_free_round_robin_peer).
                if self._release(request, peer, pick, t0, str(resp.status), outcome, proto):
                    self.worker.error_log.log(
                        "warn", "upstream server temporarily disabled", request.ctx, _READING_HEADER
                    )
                assert proto.transport is not None
                proto.transport.close()
                return status_flag, resp.status, True
            if resp.status == 101:
                refused = check_upgrade_response(
                    request.upgrade_kind, request.head.headers, resp.headers
                )
                if refused is not None:
                    # A 101 that does not complete the handshake asked for never opens a
                    # tunnel: the peer connection is closed and the client gets 502.
                    return self._failed(
                        request,
                        peer,
                        pick,
                        t0,
                        NextUpstream.INVALID_HEADER,
                        502,
                        refused,
                        _READING_HEADER,
                        sent,
                        proto,
                    )
                self._open_tunnel(request, loc, peer, pick, proto, resp, rest, t0)
                proto = None  # the tunnel owns the transport now
                return None
            await self._relay(request, loc, peer, pick, proto, resp, rest, t0)
            return None
        finally:
            self.worker.upstream_attempts -= 1
            if proto is not None and proto.idle is None and proto.transport is not None:
                proto.transport.close()
            if proto is self.upstream and self.state != TUNNEL:
                self.upstream = None

    async def _connect(
        self, request: Request, loc: LocationConf, peer: PeerState
    ) -> tuple[asyncio.Transport, UpstreamProtocol]:
        """Open the connection to ``peer`` (TLS for ``proxy_pass https://``)."""

        def factory() -> UpstreamProtocol:
            return UpstreamProtocol(self.loop, loc.proxy_buffer_size, peer.conf.name)

        ctx = self.worker.upstream_tls.get(id(loc))
        if ctx is None:
            return await self.loop.create_connection(factory, peer.conf.host, peer.conf.port)
        assert loc.proxy_pass is not None
        name = (
            request.rv.evaluate(loc.proxy_ssl_name)
            if loc.proxy_ssl_name is not None
            else loc.proxy_pass.proxy_host.rsplit(":", 1)[0]
        )
        # SNI only with proxy_ssl_server_name on; Python ties the name check to SNI, so
        # with proxy_ssl_verify on the name is sent as well (docs/behavior.md).
        send = loc.proxy_ssl_server_name or loc.proxy_ssl_verify
        return await self.loop.create_connection(
            factory,
            peer.conf.host,
            peer.conf.port,
            ssl=ctx,
            server_hostname=name if send else "",
            ssl_handshake_timeout=loc.proxy_connect_timeout or None,
        )

    def _failed(
        self,
        request: Request,
        peer: PeerState,
        pick: Pick,
        t0: float,
        failure: NextUpstream,
        status: int,
        message: str,
        action: str,
        sent: bool,
        proto: UpstreamProtocol | None = None,
    ) -> tuple[NextUpstream, int, bool]:
        if proto is not None and proto.transport is not None:
            proto.transport.abort()
        log = self.worker.error_log
        disabled = self._release(request, peer, pick, t0, str(status), Outcome.FAILED, proto)
        if failure is NextUpstream.TIMEOUT:
            if disabled:
                log.log("warn", "upstream server temporarily disabled", request.ctx, action)
            log.log("error", message, request.ctx, action)
        else:
            log.log("error", message, request.ctx, action)
            if disabled:
                log.log("warn", "upstream server temporarily disabled", request.ctx, action)
        return failure, status, sent

    def _release(
        self,
        request: Request,
        peer: PeerState,
        pick: Pick,
        t0: float,
        status: str,
        outcome: Outcome,
        proto: UpstreamProtocol | None,
    ) -> bool:
        """An attempt on ``peer`` is over (not a tunnel's: see ``_open_tunnel``): record it
        for the access log and the metrics, and give the peer back to the balancer. Returns
        True when this failure disabled the peer (the caller logs nginx's warning)."""
        rv = request.rv
        now = self.loop.time()
        rv.upstream_status.append(status)
        rv.upstream_response_time.append(now - t0)
        rv.upstream_bytes_sent.append(proto.sent if proto is not None else 0)
        rv.upstream_bytes_received.append(proto.received if proto is not None else 0)
        disabled = pick.free(peer, outcome, now)
        _peer_metrics(self.worker, request.found.location, peer, outcome, now)
        return disabled

    # -- relaying a response -----------------------------------------------------------------

    async def _relay(
        self,
        request: Request,
        loc: LocationConf,
        peer: PeerState,
        pick: Pick,
        proto: UpstreamProtocol,
        resp: ResponseHead,
        rest: bytes,
        t0: float,
    ) -> None:
        assert self.transport is not None
        head = request.head
        rv = request.rv
        status = resp.status
        if head.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            mode = BodyMode.NONE
        elif resp.chunked:
            mode = BodyMode.CHUNKED
        elif resp.content_length is not None:
            mode = BodyMode.LENGTH
        else:
            mode = BodyMode.EOF
        rechunk = mode in (BodyMode.CHUNKED, BodyMode.EOF) and head.version == "1.1"
        framed = mode in (BodyMode.NONE, BodyMode.LENGTH) or rechunk
        keep = request.keep_alive and framed and not self.worker.closing
        if status == 101:  # a 101 without a client Upgrade: relayed, then closed
            keep = False
        # ngx_http_upstream_process_headers: the peer's length is the response's, for a
        # 204, a 304 or a HEAD too (the header filter prints it; no body follows).
        length = resp.content_length if mode in (BodyMode.LENGTH, BodyMode.NONE) else None
        headers, location = self._rewrite_redirects(request, loc, resp.headers)
        added = self._added_headers(request, loc, status)
        head_bytes = build_response_head(
            status=status,
            reason=None,
            status_text=resp.status_text,
            headers=headers + added if added else headers,
            server=self._server_token(loc),
            content_length=length,
            chunked=rechunk,
            connection="keep-alive" if keep else "close",
            keepalive_header=loc.keepalive_header if keep else None,
            location=location,
        )
        self.transport.write(head_bytes)
        rv.sent_head = head_bytes
        rv.upstream_headers = resp.headers
        rv.status = status
        request.keep_alive = keep
        self.state = RESPONSE
        proto.buf[:0] = rest
        proto.relay_body(self.transport, mode, resp.content_length, rechunk)
        if self.client_paused:
            proto.pause()
        ok = await self._wait_body(request, loc, proto)
        if ok and proto.extra and mode != BodyMode.EOF and head.method != "HEAD":
            # ngx_http_proxy_copy_filter, ngx_http_proxy_chunked_filter: bytes after the
            # body's end in what was read are dropped, with a warning (a HEAD's response
            # is finished with its head, before any body is read).
            self.worker.error_log.log(
                "warn",
                "upstream sent data after final chunk"
                if mode == BodyMode.CHUNKED
                else 'upstream sent more data than specified in "Content-Length" header',
                request.ctx,
                "reading upstream",
            )
        rv.bytes_sent = len(head_bytes) + proto.body_bytes
        rv.body_bytes_sent = proto.body_bytes
        self._release(request, peer, pick, t0, str(status), Outcome.SUCCESS, proto)
        if not ok:
            request.keep_alive = False
        elif mode != BodyMode.EOF and status != 101:
            self._keep_upstream(loc, proto, resp)
        self._finish_request(request)

    def _keep_upstream(
        self, loc: LocationConf, proto: UpstreamProtocol, resp: ResponseHead
    ) -> None:
        """Cache the peer connection of a response that ended cleanly and was framed, if
        its group has ``keepalive`` (ngx_http_upstream_free_keepalive_peer with the
        proxy module's ``u->keepalive``). As in nginx, the request's version and headers
        play no part: a peer asked in HTTP/1.0 that answers in HTTP/1.1 without
        ``Connection: close`` is cached, and dropped when its close arrives."""
        assert loc.proxy_pass is not None
        cache = self.worker.keepalive.get(loc.proxy_pass.upstream)
        transport = proto.transport
        if (
            cache is None
            or transport is None
            or transport.is_closing()
            or proto.eof
            or proto.extra
            or self.worker.closing
            # ngx_http_proxy_process_status_line: a response older than HTTP/1.1 is
            # connection_close; so is any "Connection" line holding "close".
            or resp.http_version < 1001
            or _says_close(resp.headers)
            or transport.get_write_buffer_size()  # the request was not all sent
            or not cache.reusable(proto)
        ):
            return
        cache.put(proto)

    def _rewrite_redirects(
        self, request: Request, loc: LocationConf, headers: list[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], str | None]:
        """The peer's ``Location`` and ``Refresh`` through ``proxy_redirect``
        (ngx_http_upstream_rewrite_location / _refresh); also the ``Location`` printed in
        its own place, made absolute, when the last one rewritten starts with "/"."""
        if not loc.proxy_redirect:
            return headers, None
        out = list(headers)
        last = -1
        for index, (name, value) in enumerate(out):
            low = name.lower()
            if low == "location" and value:
                new = self._redirect_rule(request, loc, value, 0)
                if new is not None:
                    out[index] = (name, new)
                    last = index
            elif low == "refresh":
                at = value.lower().find("url=")
                if at >= 0:
                    new = self._redirect_rule(request, loc, value, at + 4)
                    if new is not None:
                        out[index] = (name, new)
        if last < 0:
            return out, None
        location = self._absolute(request, loc, out[last][1])
        if location is not None:
            del out[last]
        return out, location

    @staticmethod
    def _redirect_rule(request: Request, loc: LocationConf, value: str, at: int) -> str | None:
        """``value`` with its part from ``at`` rewritten by the first rule that applies
        (ngx_http_proxy_rewrite_redirect), or ``None``."""
        rv = request.rv
        rest = value[at:]
        for rule in loc.proxy_redirect:
            if rule.prefix is not None:
                pattern = rv.evaluate(rule.prefix)
                if rest.startswith(pattern):
                    return value[:at] + rv.evaluate(rule.replacement) + rest[len(pattern) :]
            elif rule.regex is not None:
                m = rule.regex.search(rest)
                if m is not None:
                    # The whole rest is replaced; the match's captures become the
                    # request's (ngx_http_regex_exec), as for any regex in nginx.
                    rv.captures, named = regex_captures(m)
                    rv.named.update(named)
                    return value[:at] + rv.evaluate(rule.replacement)
        return None

    async def _wait_body(
        self, request: Request, loc: LocationConf, proto: UpstreamProtocol
    ) -> bool:
        """Wait for the body relay; ``proxy_read_timeout`` between reads (not while the
        client holds the peer paused). False if the body was cut short."""
        timeout = loc.proxy_read_timeout
        done = proto.done
        while not done.done():
            if timeout <= 0 or self.client_paused:
                await asyncio.wait([done])
                continue
            remaining = proto.last_read + timeout - self.loop.time()
            if remaining <= 0:
                self.worker.error_log.log("error", TIMED_OUT, request.ctx, "reading upstream")
                return False
            await asyncio.wait([done], timeout=remaining)
        exc = done.exception()
        if exc is not None:
            message = (
                "upstream prematurely closed connection"
                if isinstance(exc, UpstreamClosed)
                else str(exc)
            )
            self.worker.error_log.log("error", message, request.ctx, "reading upstream")
            return False
        return True

    # flow control for responses: the client's transport calls these
    def pause_writing(self) -> None:
        self.client_paused = True
        if self.upstream is not None:
            self.upstream.pause()
        request = self.request
        if request is not None and self.send_timer is None and self.state != CLOSED:
            loc = request.found.location or request.server.defaults
            if loc.send_timeout > 0:
                self.send_timer = self.loop.call_later(loc.send_timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        self.client_paused = False
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None
        if self.upstream is not None:
            self.upstream.last_read = self.loop.time()
            self.upstream.resume()

    def _send_timed_out(self) -> None:
        self.send_timer = None
        if self.state == CLOSED:
            return
        if self.request is not None:
            self.worker.error_log.log(
                "info",
                "client timed out (110: Connection timed out)",
                self.request.ctx,
                "sending to client",
            )
        if self.transport is not None:
            self.transport.abort()

    # -- the tunnel ----------------------------------------------------------------------------

    def _switch_protocols(
        self,
        request: Request,
        loc: LocationConf,
        status_text: str | None,
        headers: list[tuple[str, str]],
        content_length: int | None = None,
    ) -> bytes:
        """Write a 101 head to the client (a tunnel, or the status page's own socket) and
        record it for the access log; return the head's bytes. ``status_text``: the
        peer's status line from the code on (None: nginx's own); ``content_length``: the
        peer's, which nginx prints in a 101 too."""
        assert self.transport is not None
        head = build_response_head(
            status=101,
            reason=None,
            status_text=status_text,
            headers=headers,
            server=self._server_token(loc),
            content_length=content_length,
            chunked=False,
            connection="upgrade",
        )
        self.transport.write(head)
        request.rv.sent_head = head
        request.rv.status = 101
        return head

    def _open_tunnel(
        self,
        request: Request,
        loc: LocationConf,
        peer: PeerState,
        pick: Pick,
        proto: UpstreamProtocol,
        resp: ResponseHead,
        rest: bytes,
        t0: float,
    ) -> None:
        assert self.transport is not None and proto.transport is not None
        headers = resp.headers
        head_bytes = self._switch_protocols(
            request, loc, resp.status_text, headers, resp.content_length
        )
        request.rv.upstream_headers = headers
        self.state = TUNNEL
        # The request coroutine ends once the tunnel runs: drop it, the request and the
        # UpstreamProtocol with its futures; the tunnel's end keeps what it needs.
        self.upstream = None
        self.task = None
        self.request = None
        client_early = bytes(self.buf)
        self.buf.clear()
        self.paused_reading = False
        upstream_early = rest + bytes(proto.buf)
        proto.buf.clear()
        worker = self.worker
        # The tunnel's end takes over this connection's stub_status counts (active and
        # writing) and its place among the worker's connections (a tunnel counts as two):
        # this object, its buffers and its ConnInfo are then freed.
        assert self.counted and self.stage == WRITING
        self.counted = False
        self.stage = 0
        worker.connections.discard(self)
        end = TunnelEnd(
            worker,
            request,
            loc,
            peer,
            pick,
            t0,
            header_size=len(head_bytes),
            # The peer's 101 head (and any interim answer); its later bytes are the tunnel's.
            upstream_head=proto.received - len(upstream_early),
            request_sent=proto.sent,
            frames=loc.ws_frames,
        )
        native = None if loc.ws_frames else self._native_relay(proto.transport)
        if native is not None:
            # The plain relay in C (proxy/native.py): no transport is kept here.
            ntunnel = native.open(
                self.transport,
                proto.transport,
                client_early,
                upstream_early,
                read_timeout=loc.proxy_read_timeout,
                send_timeout=loc.send_timeout,
                proxy_send_timeout=loc.proxy_send_timeout,
                on_close=end.tunnel_closed,
                on_gone=end.tunnel_gone,
            )
            self.transport = None
            peer.tunnels += 1
            worker.tunnels.add(ntunnel)
            worker.metrics.on_tunnel_open(ntunnel.started - t0)
            worker.tunnels_opened += 1
            return
        sweep = worker.idle_sweep(loc.proxy_read_timeout)
        tunnel: Tunnel
        if loc.ws_frames:
            tunnel = FrameTunnel(
                self.loop,
                self.transport,
                proto.transport,
                loc=loc,
                owner=end,
                sweep=sweep,
                log=end.log,
            )
        else:
            tunnel = Tunnel(
                self.loop,
                self.transport,
                proto.transport,
                owner=end,
                sweep=sweep,
                send_timeout=loc.send_timeout,
                proxy_send_timeout=loc.proxy_send_timeout,
            )
        peer.tunnels += 1
        worker.tunnels.add(tunnel)
        worker.metrics.on_tunnel_open(tunnel.started - t0)
        worker.tunnels_opened += 1
        tunnel.start(client_early, upstream_early)

    def _native_relay(self, upstream: asyncio.Transport) -> NativeRelay | None:
        """The worker's C relay, when this tunnel may use it: the extension is there and
        not turned off, neither side is TLS, and both write buffers are empty (the 101
        head has gone out), so the sockets can change hands without losing a byte."""
        client = self.transport
        if client is None or not native_available():
            return None
        for transport in (client, upstream):
            if (
                transport.get_extra_info("ssl_object") is not None
                or transport.get_extra_info("socket") is None
                or transport.get_write_buffer_size()
            ):
                return None
        return self.worker.native_relay()

    # -- the status page -------------------------------------------------------------------------

    def _status(self, request: Request, loc: LocationConf) -> None:
        """``wsgate_status``: the page for a plain request; a WebSocket upgrade is answered
        here with a 101 and becomes a :class:`StatusSocket` (state ``STATUS``) until either
        side closes; its access-log line is written then, with status 101."""
        headers = handshake(request.head.method, request.head.headers)
        if headers is None:
            self._simple_response(
                request, 200, status_page.PAGE, content_type="text/html; charset=utf-8"
            )
            return
        assert self.transport is not None
        head = self._switch_protocols(request, loc, None, headers)
        request.rv.bytes_sent = len(head)
        self.state = STATUS
        self.task = None
        self.request = None
        early = bytes(self.buf)
        self.buf.clear()
        self._resume_reading()
        status = StatusSocket(self.worker, self.transport)
        self.status = (status, request)
        status.start()
        if early:
            status.feed(early)

    # -- end of a request ----------------------------------------------------------------------

    def _finalize(self, request: Request) -> None:
        """Write the access-log line (once per request)."""
        if request.rv.end_time:
            return
        if self.stage == WRITING:
            self._stage(0)
        loc = request.found.location or request.server.defaults
        _request_over(self.worker, request.rv, loc, request.limits, request.continue_sent, None)

    def _finish_request(self, request: Request) -> None:
        """The response is written: log, then keep-alive or close."""
        self._finalize(request)
        self.request = None
        self.task = None
        if self.state == CLOSED or self.transport is None:
            return
        loc = request.found.location or request.server.defaults
        assert self.conn is not None
        keep = (
            request.keep_alive
            and not self.worker.closing
            and loc.keepalive_timeout > 0
            and self.conn.requests < loc.keepalive_requests
        )
        if not keep:
            self.state = CLOSED
            self.transport.close()
            return
        self.state = HEAD
        self._resume_reading()
        if self.buf:
            self._arm(request.server.client_header_timeout, self._header_timed_out)
            self.pipelined = True
            self._parse_heads()
        else:
            self._arm(loc.keepalive_timeout, self._keepalive_timed_out)


def _peer_metrics(
    worker: Worker, loc: LocationConf | None, peer: PeerState, outcome: Outcome, now: float
) -> None:
    """Count a failure of ``peer`` and refresh its group's ``wsgate_upstream_peer_up``
    (after ``pick.free``, which may have disabled it)."""
    assert loc is not None and loc.proxy_pass is not None
    group = worker.metric_groups[loc.proxy_pass.upstream]
    failed = outcome is Outcome.FAILED
    if failed:
        worker.metrics.on_failure(group[0], peer.conf.name)
    worker.metrics.on_released(group, failed, now)


def _request_over(
    worker: Worker,
    rv: RequestVars,
    loc: LocationConf,
    limits: list[tuple[str, str]] | None,
    continue_sent: int,
    lines: tuple[tuple[str | Var, ...], ...] | None,
) -> None:
    """A request is over (its stub_status stage already left): give back its limit_conn
    slots, count it and write its access-log lines (``lines``: rendered ahead, a tunnel's)."""
    rv.end_time = time.time()
    if limits:
        for name, key in limits:
            counts = worker.limit_conn[name]
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]
        limits.clear()
    rv.bytes_sent += continue_sent
    rv.body_bytes_sent += continue_sent
    worker.metrics.on_request(rv.status)
    if lines is None:
        worker.access_logs.write(loc.access_log, rv)
    else:
        worker.access_logs.write_parts(loc.access_log, lines, rv)


_UPGRADED = "proxying upgraded connection"


class TunnelEnd:
    """What the end of a tunnel needs of its request; the tunnel's owner.

    At the end come the error-log line of a timeout or a failed read, the peer given back
    to the balancer, the metrics and the access-log lines. An idle tunnel holds this, not
    its request. The access-log lines are rendered when the tunnel opens, except for the
    variables that keep changing until it ends (``TUNNEL_LATE``: byte counts, times).
    Those are filled in at the end from a :meth:`RequestVars.totals`. So the request's
    headers, its ``RequestVars`` and the peer's response headers are freed at the 101. The
    error-log context is kept only when the error log writes info lines (a timeout is an
    info line) or the tunnel follows frames. When a log format has a map that reads a late
    variable, the line cannot be split: the whole request is kept and its lines are
    rendered at the end, like those of any other request.
    """

    __slots__ = (
        "continue_sent",
        "ctx",
        "header_size",
        "limits",
        "lines",
        "loc",
        "peer",
        "pick",
        "prior",
        "request",
        "request_length",
        "request_sent",
        "server",
        "start",
        "t0",
        "upstream_head",
        "worker",
    )

    def __init__(
        self,
        worker: Worker,
        request: Request,
        loc: LocationConf,
        peer: PeerState,
        pick: Pick,
        t0: float,
        *,
        header_size: int,
        upstream_head: int,
        request_sent: int,
        frames: bool,
    ) -> None:
        """``header_size``: the 101 head sent to the client; ``upstream_head``: bytes the
        peer sent before the tunnel's; ``request_sent``: the request's bytes to the peer;
        ``frames``: a frame-aware tunnel (it logs errors)."""
        self.worker = worker
        self.loc = loc
        self.peer = peer
        self.pick = pick
        self.t0 = t0
        self.header_size = header_size
        self.upstream_head = upstream_head
        self.request_sent = request_sent
        self.ctx = request.ctx if frames or worker.error_log.enabled("info") else None
        rv = request.rv
        self.server = request.server
        self.start = rv.start
        self.request_length = rv.request_length
        self.continue_sent = request.continue_sent
        self.limits = request.limits or None
        # Earlier attempts' figures (a failed peer before this one), if any.
        self.prior: tuple[list[str], list[float], list[int], list[int]] | None = None
        if rv.upstream_status:
            self.prior = (
                rv.upstream_status,
                rv.upstream_response_time,
                rv.upstream_bytes_sent,
                rv.upstream_bytes_received,
            )
        self.request: Request | None = None
        self.lines: tuple[tuple[str | Var, ...], ...] | None = None
        if worker.renders_tunnel_logs(loc):
            self.lines = tuple(
                rv.prerender_log(al.format.template, al.format.escape, TUNNEL_LATE)
                for al in loc.access_log
            )
        else:
            self.request = request

    def log(self, level: str, message: str) -> None:
        """An error-log line with the request's context (the frame-aware tunnel's)."""
        assert self.ctx is not None
        self.worker.error_log.log(level, message, self.ctx, _UPGRADED)

    def tunnel_closed(
        self,
        tunnel: Tunnel | NativeTunnel,
        reason: str,
        exc: BaseException | None,
        timed_out: str | None,
    ) -> None:
        """The tunnel closed: log, free the peer, count and write the access-log lines."""
        worker = self.worker
        if self.ctx is not None:
            if timed_out is not None:
                who = "upstream" if timed_out == "upstream" else "client"
                self.log("info", f"{who} timed out (110: Connection timed out)")
            elif isinstance(exc, OSError):
                self.log("info", f"recv() failed ({exc.errno}: {exc.strerror})")
        now = worker.loop.time()
        from_client, from_upstream = tunnel.client.nbytes, tunnel.upstream.nbytes
        request = self.request
        if request is not None:
            rv = request.rv
        else:
            rv = RequestVars.totals(
                self.server, start=self.start, request_length=self.request_length
            )
            rv.status = 101
            if self.prior is not None:
                (
                    rv.upstream_status,
                    rv.upstream_response_time,
                    rv.upstream_bytes_sent,
                    rv.upstream_bytes_received,
                ) = self.prior
        rv.body_bytes_sent = from_upstream
        rv.bytes_sent = self.header_size + from_upstream
        rv.upstream_status.append("101")
        rv.upstream_response_time.append(now - self.t0)
        rv.upstream_bytes_sent.append(self.request_sent + from_client)
        rv.upstream_bytes_received.append(self.upstream_head + from_upstream)
        rv.tunnel_time = now - tunnel.started
        rv.tunnel_received = from_client
        if isinstance(tunnel, FrameTunnel):
            rv.ws_messages_in, rv.ws_messages_out = tunnel.messages
            rv.ws_close_code = tunnel.close_code
        worker.metrics.on_tunnel_closed(rv.tunnel_time, from_client, from_upstream)
        self.pick.free(self.peer, Outcome.SUCCESS, now)
        _peer_metrics(worker, self.loc, self.peer, Outcome.SUCCESS, now)
        self.peer.tunnels -= 1
        worker.stats.add(WRITING, -1)  # the request is over
        _request_over(worker, rv, self.loc, self.limits, self.continue_sent, self.lines)

    def tunnel_gone(self, tunnel: Tunnel | NativeTunnel) -> None:
        """Both sockets are closed and their last bytes (a Close frame) written: only now
        may a draining worker count this connection as finished."""
        self.worker.stats.add(ACTIVE, -1)
        self.worker.forget_tunnel(tunnel)


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_READING_HEADER = "reading response header from upstream"


_TUNNEL_KINDS = frozenset({Upgrade.WEBSOCKET, Upgrade.OTHER, Upgrade.ANY})


def _connect_failure(exc: OSError, tls: bool) -> tuple[NextUpstream, int, str, str]:
    """(failure kind, status, message, action) for a failed connect or TLS handshake."""
    message, action = connect_failure(exc, tls)
    if isinstance(exc, TimeoutError):
        return NextUpstream.TIMEOUT, 504, message, action
    return NextUpstream.ERROR, 502, message, action


def _says_close(headers: list[tuple[str, str]]) -> bool:
    """Whether a peer's ``Connection`` line contains "close", in any case
    (ngx_http_upstream_process_connection)."""
    return any(n.lower() == "connection" and "close" in v.lower() for n, v in headers)


def _header_failure(exc: Exception) -> tuple[NextUpstream, int, str, str]:
    """The same for a failure while waiting for the response head
    (ngx_http_upstream_process_header)."""
    if isinstance(exc, TimeoutError):
        return NextUpstream.TIMEOUT, 504, TIMED_OUT, _READING_HEADER
    if isinstance(exc, UpstreamClosed):
        message = "upstream prematurely closed connection"
        return NextUpstream.ERROR, 502, message, _READING_HEADER
    if isinstance(exc, HTTPError):
        return NextUpstream.INVALID_HEADER, 502, exc.message, _READING_HEADER
    assert isinstance(exc, OSError)
    message = f"recv() failed ({exc.errno}: {exc.strerror})"
    return NextUpstream.ERROR, 502, message, _READING_HEADER


# ngx_http_core_default_types: the types nginx knows without a "types" block.
_DEFAULT_TYPES = {"html": "text/html", "gif": "image/gif", "jpg": "image/jpeg"}


def _content_type(uri: str, loc: LocationConf) -> str:
    """The type of a ``return`` text (ngx_http_set_content_type): by the extension of
    ``$uri``'s last segment in ``types``, else ``default_type``."""
    last = uri[uri.rfind("/") + 1 :]
    dot = last.rfind(".")
    if dot > 0:
        types = loc.types if loc.types is not None else _DEFAULT_TYPES
        known = types.get(last[dot + 1 :].lower())
        if known is not None:
            return known
    return loc.default_type


_ADD_HEADER_STATUSES = frozenset({200, 201, 204, 206, 301, 302, 303, 304, 307, 308})

_STATUS_FLAGS = {
    500: NextUpstream.HTTP_500,
    502: NextUpstream.HTTP_502,
    503: NextUpstream.HTTP_503,
    504: NextUpstream.HTTP_504,
    403: NextUpstream.HTTP_403,
    404: NextUpstream.HTTP_404,
    429: NextUpstream.HTTP_429,
}


def balancer_name(worker: Worker, key: str) -> str:
    """The upstream group's name as written (for "no live upstreams" and $upstream_addr)."""
    return worker.http.upstreams[key].name
