"""Plain tunnels relayed in C (``wsgate._relay``), one relay thread per worker process.

Theory of operation:

* :meth:`NativeRelay.open` takes a tunnel whose transports are plain sockets (no TLS) and
  have nothing left in their write buffers: the C relay duplicates both file descriptors,
  then the uvloop transports are dropped with ``abort()``. uvloop closes its own
  descriptor only (no ``shutdown()``), so the connections stay open on the duplicates and
  neither peer sees a FIN. The bytes that came early (after the request head, after the
  101 head) are handed to C, which writes them first.
* From then on the per-chunk path is C (``_relay.c``): read a side, write the other,
  back-pressure, the idle and send timeouts. Python hears of a tunnel only when it ends:
  the relay's eventfd is an ``add_reader`` of the event loop, and each wake-up takes the
  records of every tunnel that ended meanwhile (one for "closed", one for "gone" once its
  last bytes are written; often both at once). The "gone" record gives the sockets back:
  Python closes them after the ``on_close`` callback (the access-log line), then runs
  ``on_gone``, in the order the Python relay has.
* A :class:`NativeTunnel` stands for each tunnel in ``worker.tunnels``: it has the
  attributes the rest of the proxy reads (``client.nbytes``, ``upstream.nbytes``,
  ``started``, ``closed``, :meth:`NativeTunnel.abort`). The byte counts are filled in when
  the tunnel closes.
* The relay's thread starts with the first native tunnel of a worker (after the master
  forked it) and is joined by :meth:`NativeRelay.stop` when the worker stops.

``WSGATE_NATIVE_RELAY=0`` in the environment keeps every tunnel on the Python relay
(``proxy/tunnel.py``); so does a build without the extension.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import os
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsgate import _relay as _relay_module


def _load() -> ModuleType | None:
    try:
        return importlib.import_module("wsgate._relay")
    except ImportError:  # built without a compiler: the Python relay only
        return None


_relay = _load()

__all__ = ["READ_SIZE", "NativeRelay", "NativeSide", "NativeTunnel", "available"]


def available() -> bool:
    """Whether plain tunnels go to the C relay (the extension is built and
    ``WSGATE_NATIVE_RELAY`` is not ``0``)."""
    return _relay is not None and os.environ.get("WSGATE_NATIVE_RELAY", "1") != "0"


class NativeSide:
    """One side's byte count (bytes received from it), known once the tunnel closed."""

    __slots__ = ("name", "nbytes")

    def __init__(self, name: str, nbytes: int) -> None:
        self.name = name
        self.nbytes = nbytes


class NativeTunnel:
    """A tunnel relayed by the C thread, as the rest of the proxy sees it."""

    __slots__ = ("client", "closed", "id", "on_close", "on_gone", "relay", "started", "upstream")

    def __init__(
        self,
        relay: NativeRelay,
        ident: int,
        started: float,
        client_early: int,
        upstream_early: int,
        on_close: Callable[[NativeTunnel, str, BaseException | None, str | None], None],
        on_gone: Callable[[NativeTunnel], None],
    ) -> None:
        self.relay = relay
        self.id = ident
        self.started = started
        self.client = NativeSide("client", client_early)
        self.upstream = NativeSide("upstream", upstream_early)
        self.closed = False
        self.on_close = on_close
        self.on_gone = on_gone

    def abort(self) -> None:
        """Fast stop: close both sockets now, without flushing (TERM/INT)."""
        self.relay.abort(self)

    def buffered(self) -> int:
        """Bytes the relay keeps for slow readers now (all of the worker's tunnels)."""
        return self.relay.relay.buffered


def _ended(reason: int, err: int) -> tuple[str, BaseException | None, str | None]:
    """``Tunnel.close``'s arguments (reason, exception, side timed out) for a record."""
    r = _relay
    assert r is not None
    if reason == r.EOF_CLIENT:
        return "client closed connection", None, None
    if reason == r.EOF_UPSTREAM:
        return "upstream closed connection", None, None
    if reason in (r.ERROR_CLIENT, r.ERROR_UPSTREAM):
        name = "client" if reason == r.ERROR_CLIENT else "upstream"
        exc = OSError(err, os.strerror(err))
        return f"{name}: {exc}", exc, None
    if reason == r.IDLE:
        return "upstream timed out", TimeoutError(), "upstream"
    if reason in (r.SEND_CLIENT, r.SEND_UPSTREAM):
        name = "client" if reason == r.SEND_CLIENT else "upstream"
        return f"{name} timed out", TimeoutError(), name
    return "aborted", None, None


class NativeRelay:
    """A worker's C relay: hands tunnels over and turns its records into callbacks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        assert _relay is not None
        self.loop = loop
        self.relay: _relay_module.Relay = _relay.Relay()
        self.tunnels: dict[int, NativeTunnel] = {}
        self.ids = itertools.count(1)
        self.opened = 0  # tunnels handed to C (tests look at it)
        self.fd = self.relay.fileno()
        loop.add_reader(self.fd, self._dispatch)

    def open(
        self,
        client: asyncio.Transport,
        upstream: asyncio.Transport,
        client_early: bytes,
        upstream_early: bytes,
        *,
        read_timeout: float,
        send_timeout: float,
        proxy_send_timeout: float,
        on_close: Callable[[NativeTunnel, str, BaseException | None, str | None], None],
        on_gone: Callable[[NativeTunnel], None],
    ) -> NativeTunnel:
        """Hand both connections to C and drop their transports.

        ``client_early`` goes to the peer and ``upstream_early`` to the client before
        anything else; they count as relayed bytes, as in ``Tunnel.start``.

        Raises:
            OSError: a descriptor could not be duplicated (the transports are untouched).
        """
        ident = next(self.ids)
        grace = max(send_timeout, proxy_send_timeout) or 60.0
        self.relay.add(
            ident,
            client.get_extra_info("socket").fileno(),
            upstream.get_extra_info("socket").fileno(),
            upstream_early,
            client_early,
            read_timeout,
            send_timeout,
            proxy_send_timeout,
            grace,
        )
        for transport in (client, upstream):
            # No callbacks from here on: the tunnel is C's. abort() closes uvloop's
            # descriptor only; the connection lives on in the relay's duplicate.
            transport.set_protocol(_Detached())
            transport.abort()
        tunnel = NativeTunnel(
            self,
            ident,
            self.loop.time(),
            len(client_early),
            len(upstream_early),
            on_close,
            on_gone,
        )
        self.tunnels[ident] = tunnel
        self.opened += 1
        return tunnel

    def _dispatch(self) -> None:
        for ident, event, from_client, from_upstream, reason, err, *fds in self.relay.take():
            tunnel = self.tunnels.get(ident)
            if tunnel is not None and event & _CLOSED and not tunnel.closed:
                tunnel.closed = True
                tunnel.client.nbytes += from_client
                tunnel.upstream.nbytes += from_upstream
                why, exc, timed_out = _ended(reason, err)
                tunnel.on_close(tunnel, why, exc, timed_out)
            if event & _GONE:
                # The thread is done with the sockets; closing them here, after the
                # access-log line, sends the FINs (as transport.close() does).
                for fd in fds:
                    os.close(fd)
                if tunnel is not None:
                    del self.tunnels[ident]
                    tunnel.on_gone(tunnel)

    def abort(self, tunnel: NativeTunnel) -> None:
        """Close one tunnel at once and run its callbacks before returning."""
        self.relay.abort(tunnel.id)
        self._dispatch()

    def abort_all(self) -> None:
        """Close every tunnel at once (one round trip to the thread) and run the callbacks."""
        if self.tunnels:
            self.relay.abort_all()
        self._dispatch()

    def stop(self) -> None:
        """Close what is left, join the thread, leave the event loop."""
        self.abort_all()
        self.loop.remove_reader(self.fd)
        self.relay.stop()
        self._dispatch()


_CLOSED = _relay.CLOSED if _relay is not None else 1
_GONE = _relay.GONE if _relay is not None else 2
READ_SIZE: int = _relay.READ_SIZE if _relay is not None else 65536  # at most kept per direction


class _Detached(asyncio.Protocol):
    """The protocol of a transport whose connection the C relay took over."""

    __slots__ = ()
