"""The frame-aware tunnel: the byte relay of ``proxy/tunnel.py`` plus WebSocket frames.

A location gets it when it sets a ``websocket_*`` feature or logs a ``$ws_*`` variable
(``LocationConf.ws_frames``); every other tunnel stays the plain relay, untouched.

Theory of operation (docs/websocket.md):

* Each side's received bytes go through a :class:`~wsgate.http.wsframe.FrameScanner`
  (headers only) before they are written to the other side. Everything passes as it came;
  the scanner only counts messages, notes Close codes, removes the Pongs that answer
  wsgate's own Pings, and lets wsgate put a frame in at a frame boundary.
* Pings (``websocket_ping_interval``): one timer per tunnel. A side that sent nothing
  for an interval gets a Ping; if it still has sent nothing ``websocket_ping_timeout``
  later, it is dead: its connection is aborted (what it would have seen as 1006) and the
  live side gets Close 1001.
* Limits (``websocket_max_frame_size``, ``websocket_max_message_size``): the frame that
  goes over is not passed on; its sender gets Close 1009, the other side Close 1001.
* Drain (``websocket_drain``): the worker calls :meth:`FrameTunnel.drain`; both sides
  get a Close with the drain code.
* Winding down: once wsgate has sent its Close frames it passes nothing more on and
  waits for each side's Close (or end) for at most :data:`CLOSE_GRACE` seconds, then
  closes the tunnel as the plain relay does.
* Half-close: a side that sends EOF after its Close frame has its EOF passed on
  (:meth:`FrameTunnel.half_close`), so the other side's answering Close still reaches it,
  as over a direct connection. The plain relay closes both at the first EOF, as nginx.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from wsgate.conf.model import LocationConf
from wsgate.http.wsframe import (
    CLOSE_GOING_AWAY,
    FrameScanner,
    close_frame,
    ping_frame,
)
from wsgate.proxy.tunnel import IdleSweep, Tunnel, TunnelOwner, TunnelSide

__all__ = ["CLOSE_ABNORMAL", "CLOSE_GRACE", "FrameSide", "FrameTunnel"]

CLOSE_GRACE = 5.0  # seconds a side has to answer wsgate's Close before it is cut
CLOSE_ABNORMAL = 1006  # RFC 6455 §7.1.5: the connection ended without a Close frame


class FrameSide(TunnelSide):
    """One transport of a frame-aware tunnel; its scanner reads what this side sends."""

    __slots__ = ("answered", "next_ping", "ping_deadline", "ping_mark", "scanner", "tick_mark")

    def __init__(
        self,
        tunnel: Tunnel,
        name: str,
        transport: asyncio.Transport,
        peer: asyncio.Transport,
        send_timeout: float,
    ) -> None:
        super().__init__(tunnel, name, transport, peer, send_timeout)
        self.scanner = FrameScanner()
        self.answered = True  # wsgate sent this side no Close, or it has answered it
        self.ping_deadline: float | None = None  # awaiting a Pong (or any byte) until then
        self.ping_mark = 0  # nbytes when the Ping was sent
        self.tick_mark = 0  # nbytes at the last idleness check
        self.next_ping = 0.0

    # The per-chunk path: count, scan, write what passes.
    def data_received(self, data: bytes) -> None:
        self.nbytes += len(data)
        out = self.scanner.feed(data)
        if out:
            self.peer.write(out)

    def eof_received(self) -> bool:
        tunnel = self.tunnel
        assert isinstance(tunnel, FrameTunnel)
        if tunnel.winding:
            tunnel.side_ended(self)
            return False
        if tunnel.half is None and tunnel.half_close(self):
            return True  # the other side may still answer: keep our write side open
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        tunnel = self.tunnel
        assert isinstance(tunnel, FrameTunnel)
        if tunnel.winding and not tunnel.closed:
            # The other side may still owe its Close: do not cut it yet.
            tunnel.side_ended(self)
            tunnel.side_lost()
            return
        super().connection_lost(exc)


class FrameTunnel(Tunnel):
    """A :class:`Tunnel` that follows WebSocket frames for the location's features."""

    __slots__ = (
        "close_code",
        "drain_conf",
        "half",
        "log",
        "ping_interval",
        "ping_timeout",
        "ping_timer",
        "pinged",
        "pings",
        "wind_timer",
        "winding",
    )

    side_class = FrameSide
    client: FrameSide
    upstream: FrameSide

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: asyncio.Transport,
        upstream: asyncio.Transport,
        *,
        loc: LocationConf,
        owner: TunnelOwner,
        sweep: IdleSweep | None,
        log: Callable[[str, str], None],
    ) -> None:
        super().__init__(
            loop,
            client,
            upstream,
            owner=owner,
            sweep=sweep,
            send_timeout=loc.send_timeout,
            proxy_send_timeout=loc.proxy_send_timeout,
        )
        self.log = log  # (level, message): the error log, with the request's context
        self.close_code: int | None = None  # $ws_close_code
        self.drain_conf = loc.websocket_drain
        self.winding = False
        self.half: FrameSide | None = None  # a side that sent its Close, then EOF
        self.wind_timer: asyncio.TimerHandle | None = None
        self.ping_interval = loc.websocket_ping_interval
        self.ping_timeout = loc.websocket_ping_timeout
        self.ping_timer: asyncio.TimerHandle | None = None
        self.pings = 0
        self.pinged: tuple[FrameSide, ...] = ()
        if self.ping_interval > 0:
            self.pinged = (
                (self.client, self.upstream) if loc.websocket_ping_upstream else (self.client,)
            )
        for side in (self.client, self.upstream):
            scanner = side.scanner
            scanner.max_frame = loc.websocket_max_frame_size
            scanner.max_message = loc.websocket_max_message_size
            scanner.on_close = self._close_handler(side)
            scanner.on_violation = self._violation_handler(side)
            scanner.on_pong = self._pong_handler(side)

    def _other(self, side: FrameSide) -> FrameSide:
        return self.upstream if side is self.client else self.client

    def _close_handler(self, side: FrameSide) -> Callable[[int], None]:
        def on_close(code: int) -> None:
            if self.close_code is None:
                self.close_code = code
            if self.winding and not side.answered:
                self.side_ended(side)

        return on_close

    def _violation_handler(self, side: FrameSide) -> Callable[[int, str], None]:
        def on_violation(code: int, why: str) -> None:
            # Called inside feed(): the frames before the one over the limit are written
            # when feed() returns, so the Close frames go out after them.
            self.loop.call_soon(self._too_big, side, code, why)

        return on_violation

    def _too_big(self, side: FrameSide, code: int, why: str) -> None:
        if self.winding or self.closed:
            return
        self.log("error", f"{side.name} sent too large WebSocket {why}")
        if self.close_code is None:
            self.close_code = code
        self.wind_down({side: code, self._other(side): CLOSE_GOING_AWAY}, "message too big")

    # -- start and pings -----------------------------------------------------------------

    def start(self, client_early: bytes, upstream_early: bytes) -> None:
        """Like :meth:`Tunnel.start`, with the early bytes scanned as frames too."""
        c, u = self.client, self.upstream
        c.transport.set_protocol(c)
        u.transport.set_protocol(u)
        if upstream_early:
            u.data_received(upstream_early)
        if client_early:
            c.data_received(client_early)
        super().start(b"", b"")
        if self.pinged and not self.closed:
            now = self.loop.time()
            for side in self.pinged:
                side.tick_mark = side.nbytes
                side.next_ping = now + self.ping_interval
            self.ping_timer = self.loop.call_at(now + self.ping_interval, self._ping_tick)

    def _ping_tick(self) -> None:
        self.ping_timer = None
        if self.closed or self.winding:
            return
        now = self.loop.time()
        wake = now + self.ping_interval
        for side in self.pinged:
            if side.ping_deadline is not None:  # no Pong yet
                if side.nbytes == side.ping_mark:  # ...and not a byte since the Ping
                    if now >= side.ping_deadline - 0.001:
                        self._dead(side)
                        return
                    wake = min(wake, side.ping_deadline)
                    continue
                side.ping_deadline = None  # it sent something: alive
            if now >= side.next_ping - 0.001:
                # Idle: nothing since the last look but the Pong to wsgate's own Ping
                # (its size is added to tick_mark when it comes, see _pong_handler).
                if side.nbytes == side.tick_mark:
                    self._ping(side, now)
                    wake = min(wake, now + self.ping_timeout)
                side.tick_mark = side.nbytes
                side.next_ping = now + self.ping_interval
            wake = min(wake, side.next_ping)
        self.ping_timer = self.loop.call_at(wake, self._ping_tick)

    def _pong_handler(self, side: FrameSide) -> Callable[[int], None]:
        def on_pong(size: int) -> None:
            side.ping_deadline = None
            side.tick_mark += size  # the answer is no traffic of the side's own

        return on_pong

    def _ping(self, side: FrameSide, now: float) -> None:
        """Send ``side`` a Ping at the next frame boundary toward it; its Pong is ours."""
        self.pings += 1
        payload = b"wsgate %d" % self.pings
        data = self._other(side).scanner.inject(ping_frame(payload, side is self.upstream))
        if data is not None:
            side.transport.write(data)
        side.scanner.expect = payload
        side.ping_mark = side.nbytes
        side.ping_deadline = now + self.ping_timeout

    def _dead(self, side: FrameSide) -> None:
        """``side`` sent nothing since its Ping: cut it, Close 1001 to the other side."""
        self.log("info", f"{side.name} did not answer ping")
        if self.close_code is None:
            self.close_code = CLOSE_ABNORMAL
        side.scanner.dropping = True
        self._other(side).scanner.dropping = True
        side.answered = True
        side.transport.abort()
        self.wind_down({self._other(side): CLOSE_GOING_AWAY}, f"{side.name} did not answer ping")

    def half_close(self, side: FrameSide) -> bool:
        """``side`` sent EOF after a Close frame: pass the EOF on (``write_eof``) and keep
        relaying the other way until the other side ends too (for at most CLOSE_GRACE).
        Returns False, for the plain relay's close of both, when ``side`` sent no Close or
        the other transport cannot half-close (TLS).

        RFC 6455 §7.1.1: the server closes the TCP connection first. A server that fails
        the connection may shut down its sending side while still reading the client's
        Close; a direct client's answer reaches it, so through wsgate it must too.
        """
        other = self._other(side)
        if self.closed or side.scanner.close_code is None:
            return False
        if not other.transport.can_write_eof():
            return False
        other.transport.write_eof()
        self.half = side
        self.wind_timer = self.loop.call_later(CLOSE_GRACE, self.close, f"{side.name} closed")
        return True

    # -- winding down with Close frames -------------------------------------------------

    def drain(self, code: int) -> bool:
        """Worker shutdown: Close ``code`` to both sides (once). Returns whether it did."""
        if self.closed or self.winding:
            return False
        if self.close_code is None:
            self.close_code = code
        self.wind_down({self.client: code, self.upstream: code}, "worker is shutting down")
        return True

    def wind_down(self, codes: dict[FrameSide, int], reason: str) -> None:
        """Send each side in ``codes`` wsgate's Close (at a frame boundary toward it), pass
        nothing more on, and close the tunnel once they answered or :data:`CLOSE_GRACE`
        passed."""
        self.winding = True
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        for side, code in codes.items():
            source = self._other(side).scanner
            data = source.inject(close_frame(code, side is self.upstream), final=True)
            if data is not None:
                side.transport.write(data)
            side.answered = False
        self.wind_timer = self.loop.call_later(CLOSE_GRACE, self.close, reason)
        self._maybe_done(reason)

    def side_ended(self, side: FrameSide) -> None:
        """While winding down: ``side`` answered wsgate's Close, or its connection ended."""
        side.answered = True
        self._maybe_done("closed by wsgate")

    def _maybe_done(self, reason: str) -> None:
        if self.client.answered and self.upstream.answered:
            self.close(reason)

    def close(
        self, reason: str, exc: BaseException | None = None, timed_out: str | None = None
    ) -> None:
        if self.closed:
            return
        if self.close_code is None:
            self.close_code = CLOSE_ABNORMAL
        for timer in (self.ping_timer, self.wind_timer):
            if timer is not None:
                timer.cancel()
        self.ping_timer = self.wind_timer = None
        super().close(reason, exc, timed_out)

    @property
    def messages(self) -> tuple[int, int]:
        """``($ws_messages_in, $ws_messages_out)``: messages from and to the client."""
        return self.client.scanner.messages, self.upstream.scanner.messages
