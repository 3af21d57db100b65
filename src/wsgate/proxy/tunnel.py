"""The upgraded connection: a byte relay between client and peer (nginx-semantics.md §2).

Which relay runs a tunnel:

* **C** (``wsgate._relay``, wrapped by ``proxy/native.py``): every plain tunnel, when the
  extension is built and ``WSGATE_NATIVE_RELAY`` is not ``0``. Both sockets go to the
  worker's relay thread, an epoll loop that reads a side and writes the other without
  calling Python; Python hears of a tunnel only when it ends. The rules below (back-
  pressure, timeouts, closing both sides) are the same there, enforced in C; the
  differences: at most one read (64 KiB) is kept per direction, the idle time is stamped
  once per batch of events and swept at the earliest deadline (a tunnel closes within
  about 10 ms of ``timeout``), the send timeout restarts whenever a blocked write moves
  (nginx's rule), and a side whose send timeout fired is closed at once, not flushed.
* **Python** (this module): tunnels with a TLS side (``listen ... ssl``, ``proxy_pass
  https``), when either transport still had bytes to write at the upgrade, or without
  the extension. ``proxy/wstunnel.py`` subclasses it for the frame-aware tunnel.

Theory of operation of the Python relay (``ngx_http_upstream_upgrade`` /
``ngx_http_upstream_process_upgraded``):

* Both transports get a :class:`TunnelSide` protocol (``transport.set_protocol``). Bytes
  received on one side are written to the other at once; nothing is parsed or copied.
* Back-pressure: when a side's write buffer passes its high-water mark asyncio calls that
  side's ``pause_writing``, which pauses reading on the other transport; ``resume_writing``
  resumes it. So a slow reader holds at most one write buffer plus one read per direction.
* ``proxy_read_timeout`` is an idle timeout in both directions (nginx re-arms its upstream
  read timer on every pass of the relay, §2.2). The per-chunk path only counts bytes. A
  tunnel has no timer of its own: one :class:`IdleSweep` per worker and timeout value
  wakes every step (the timeout divided into 8, into fewer steps when one would be
  shorter than 0.25 s) and compares each of its tunnels' byte counts with its last look.
  A tunnel is closed once they have not moved for ``timeout``, so it ends between
  ``timeout`` and ``timeout`` plus one step after its last byte (nginx: within 0.3 s).
  Measured: reading the clock per chunk cost up to 10% of a worker relaying small
  messages, and a timer per tunnel about 0.5 KB of an idle tunnel's memory.
* ``send_timeout`` / ``proxy_send_timeout`` run only while a side's writes are blocked
  (between ``pause_writing`` and ``resume_writing``).
* Any EOF or error closes both sides (no half-close, §2.3); pending bytes are flushed by
  ``transport.close()``. :meth:`Tunnel.close` runs once and calls the owner's
  ``tunnel_closed``; its ``tunnel_gone`` runs once both transports are closed.
* Memory: an idle tunnel is its two transports, the :class:`Tunnel`, its two
  :class:`TunnelSide` objects (all with ``__slots__``) and what its owner keeps for the
  end (``proxy.downstream.TunnelEnd``); callbacks are methods of the owner, not closures.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["IdleSweep", "Tunnel", "TunnelOwner", "TunnelSide"]

MIN_STEP = 0.25  # seconds: the shortest idle-check step


class TunnelOwner(Protocol):
    """Who is told when a tunnel ends (the client connection's end-of-request work)."""

    def tunnel_closed(
        self, tunnel: Tunnel, reason: str, exc: BaseException | None, timed_out: str | None
    ) -> None:
        """The tunnel closed (once): ``timed_out`` names the side that timed out, if any."""

    def tunnel_gone(self, tunnel: Tunnel) -> None:
        """Both transports are closed and their buffers flushed."""


class TunnelSide(asyncio.Protocol):
    """The protocol of one transport of a tunnel (``client`` or ``upstream``)."""

    __slots__ = ("name", "nbytes", "peer", "send_timeout", "send_timer", "transport", "tunnel")

    def __init__(
        self,
        tunnel: Tunnel,
        name: str,
        transport: asyncio.Transport,
        peer: asyncio.Transport,
        send_timeout: float,
    ) -> None:
        self.tunnel = tunnel
        self.name = name
        self.transport = transport
        self.peer = peer
        self.nbytes = 0  # bytes received on this side (and written to the peer)
        self.send_timeout = send_timeout  # for writes to this side (0: none)
        self.send_timer: asyncio.TimerHandle | None = None

    # The per-chunk path: write to the other side and count. Nothing else.
    def data_received(self, data: bytes) -> None:
        self.peer.write(data)
        self.nbytes += len(data)

    def eof_received(self) -> bool:
        self.tunnel.close(f"{self.name} closed connection")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"{self.name} closed connection" if exc is None else f"{self.name}: {exc}"
        self.tunnel.close(reason, exc)
        self.tunnel.side_lost()

    def pause_writing(self) -> None:
        # Our transport cannot take more: stop reading the side that feeds it.
        self.peer.pause_reading()
        if self.send_timeout > 0 and self.send_timer is None:
            self.send_timer = self.tunnel.loop.call_later(self.send_timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None
        if not self.tunnel.closed:
            self.peer.resume_reading()

    def _send_timed_out(self) -> None:
        self.send_timer = None
        self.tunnel.close(f"{self.name} timed out", TimeoutError(), timed_out=self.name)


class IdleSweep:
    """``proxy_read_timeout`` for all of a worker's tunnels with one timeout: one timer.

    Each step it looks at every tunnel: one whose byte counts moved since the last look
    was active "now"; one that has been idle for ``timeout`` is closed. The timer runs
    only while the sweep has tunnels.
    """

    __slots__ = ("due", "loop", "step", "timeout", "timer", "tunnels")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        # The step divides the timeout, so a tunnel last seen active at a step is closed
        # at the step ``timeout`` later, not one step after that.
        self.step = timeout / max(1, min(8, int(timeout / MIN_STEP)))
        self.tunnels: set[Tunnel] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.due = 0.0

    def add(self, tunnel: Tunnel) -> None:
        """Watch ``tunnel`` (idle since its ``last``)."""
        self.tunnels.add(tunnel)
        if self.timer is None:
            self.due = self.loop.time() + self.step
            self.timer = self.loop.call_at(self.due, self._sweep)

    def discard(self, tunnel: Tunnel) -> None:
        """Stop watching ``tunnel``; the timer stops with the last one."""
        self.tunnels.discard(tunnel)
        if not self.tunnels and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _sweep(self) -> None:
        self.timer = None
        now = self.loop.time()
        limit = self.timeout - 0.001
        idle = []
        for tunnel in self.tunnels:
            total = tunnel.client.nbytes + tunnel.upstream.nbytes
            if total != tunnel.seen:  # bytes moved since the last look: active "now"
                tunnel.seen = total
                tunnel.last = now
            elif now - tunnel.last >= limit:
                idle.append(tunnel)
        for tunnel in idle:
            tunnel.close("upstream timed out", TimeoutError(), timed_out="upstream")
        if self.tunnels:
            self.due += self.step
            if self.due <= now:  # the loop was late: skip the steps it missed
                self.due = now + self.step
            self.timer = self.loop.call_at(self.due, self._sweep)


class Tunnel:
    """Owns the two sides of one upgraded connection and closes them together."""

    side_class: type[TunnelSide] = TunnelSide  # the frame-aware tunnel has its own

    __slots__ = (
        "client",
        "closed",
        "last",
        "loop",
        "lost",
        "owner",
        "seen",
        "started",
        "sweep",
        "upstream",
    )

    client: TunnelSide
    upstream: TunnelSide

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: asyncio.Transport,
        upstream: asyncio.Transport,
        *,
        owner: TunnelOwner,
        sweep: IdleSweep | None,
        send_timeout: float,
        proxy_send_timeout: float,
    ) -> None:
        """``sweep``: the idle check for ``proxy_read_timeout`` (None: no timeout)."""
        self.loop = loop
        self.owner = owner
        self.sweep = sweep
        self.lost = 0  # transports whose connection_lost has come
        self.closed = False
        self.started = loop.time()
        self.last = self.started  # when bytes were last seen moving (by the idle check)
        self.seen = 0
        self.client = self.side_class(self, "client", client, upstream, send_timeout)
        self.upstream = self.side_class(self, "upstream", upstream, client, proxy_send_timeout)

    def start(self, client_early: bytes, upstream_early: bytes) -> None:
        """Switch both transports to the tunnel and forward the bytes that came early.

        ``client_early``: bytes the client sent after its request head; ``upstream_early``:
        bytes the peer sent after its 101 head (nginx sends both on first, §2.1).
        """
        c, u = self.client.transport, self.upstream.transport
        c.set_protocol(self.client)
        u.set_protocol(self.upstream)
        if upstream_early:
            c.write(upstream_early)
            self.upstream.nbytes += len(upstream_early)
        if client_early:
            u.write(client_early)
            self.client.nbytes += len(client_early)
        if c.is_closing() or u.is_closing():
            self.close("connection closed before the tunnel started")
            return
        c.resume_reading()
        u.resume_reading()
        if self.sweep is not None:
            self.seen = self.client.nbytes + self.upstream.nbytes
            self.sweep.add(self)

    def close(
        self, reason: str, exc: BaseException | None = None, timed_out: str | None = None
    ) -> None:
        """End the tunnel: close both transports (flushing), cancel timers, report once."""
        if self.closed:
            return
        self.closed = True
        if self.sweep is not None:
            self.sweep.discard(self)
        for side in (self.client, self.upstream):
            if side.send_timer is not None:
                side.send_timer.cancel()
                side.send_timer = None
            side.transport.close()
        self.owner.tunnel_closed(self, reason, exc, timed_out)
        # close() flushes what is buffered first; a side that never takes it is dropped
        # after its send timeout, so a closed tunnel always ends (and a draining worker
        # can exit).
        grace = max(self.client.send_timeout, self.upstream.send_timeout) or 60.0
        self.loop.call_later(grace, self._drop)

    def _drop(self) -> None:
        if self.lost < 2:
            for side in (self.client, self.upstream):
                side.transport.abort()

    def side_lost(self) -> None:
        """A transport is fully closed; the owner's ``tunnel_gone`` runs once both are
        (buffers flushed)."""
        self.lost += 1
        if self.lost == 2:
            self.owner.tunnel_gone(self)

    def buffered(self) -> int:
        """Bytes waiting in this tunnel's write buffers (for slow readers)."""
        return (
            self.client.transport.get_write_buffer_size()
            + self.upstream.transport.get_write_buffer_size()
        )

    def abort(self) -> None:
        """Fast stop: drop both connections without flushing (TERM/INT)."""
        for side in (self.client, self.upstream):
            side.transport.abort()
        self.close("aborted")
