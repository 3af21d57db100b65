"""The WebSocket a ``wsgate_status`` page listens to: wsgate pushes one snapshot a second.

:class:`Downstream` answers a valid WebSocket upgrade to a ``wsgate_status`` location
itself with :func:`handshake`, writes the 101, then hands every byte the client sends to
:meth:`StatusSocket.feed` and calls :meth:`StatusSocket.stop` when the connection is lost.
The socket only writes text frames and reads only far enough to find the client's Close
(``http/wsframe.py``); peers and tunnels are never involved.
"""

from __future__ import annotations

import asyncio
import os
import time

from wsgate.balancer.state import snapshot
from wsgate.http.upgrade import Upgrade, accept_value, classify_upgrade
from wsgate.http.wsframe import CLOSE_GOING_AWAY, ClientFrames, close_frame, text_frame
from wsgate.proxy.worker import Worker
from wsgate.status_page import snapshot_json

__all__ = ["INTERVAL", "StatusSocket", "handshake"]

INTERVAL = 1.0  # seconds between two snapshots


def handshake(method: str, headers: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """The 101's headers for a valid WebSocket handshake, or ``None`` for any other request.

    Call it for a request to a ``wsgate_status`` location: ``None`` means serve the HTML
    page; otherwise write a 101 with these headers and start a :class:`StatusSocket`.
    """
    if classify_upgrade(method, headers, ("websocket",)) is not Upgrade.WEBSOCKET:
        return None
    key = next(v for n, v in headers if n.lower() == "sec-websocket-key")
    return [("Upgrade", "websocket"), ("Sec-WebSocket-Accept", accept_value(key))]


def render(worker: Worker) -> str:
    """The snapshot the worker would send now (JSON text)."""
    now = worker.loop.time()
    return snapshot_json(
        totals=worker.stats.table.totals(),
        upstreams=[(b.name, snapshot(b, now)) for b in worker.balancers.values()],
        now=now,
        wall=time.time(),
        pid=os.getpid(),
        tunnels=len(worker.tunnels),
        tunnels_opened=worker.tunnels_opened,
    )


class StatusSocket:
    """One open status WebSocket (see the module docstring).

    Call :meth:`start` right after writing the 101. The owner keeps the connection's
    protocol: it passes client bytes to :meth:`feed`, calls :meth:`close` on a graceful
    stop and :meth:`stop` from ``connection_lost``, then writes its access-log line.
    """

    def __init__(self, worker: Worker, transport: asyncio.Transport) -> None:
        self.worker = worker
        self.transport = transport
        self.frames = ClientFrames()
        self.timer: asyncio.TimerHandle | None = None
        self.done = False

    def start(self) -> None:
        """Send the first snapshot now and one every :data:`INTERVAL` from then on."""
        self._tick()

    def _tick(self) -> None:
        self.timer = None
        if self.done or self.transport.is_closing():
            return
        # A client that does not read gets no more than what it has not read yet: skip
        # a beat rather than queue snapshots without bound.
        if self.transport.get_write_buffer_size() < 1 << 20:
            self.transport.write(text_frame(render(self.worker)))
        self.timer = self.worker.loop.call_later(INTERVAL, self._tick)

    def feed(self, data: bytes) -> None:
        """Bytes from the client: close when they hold a Close frame or break the protocol."""
        if self.done:
            return
        result = self.frames.feed(data)
        if result is not None:
            self.close(result.code)

    def close(self, code: int = CLOSE_GOING_AWAY) -> None:
        """Send a Close frame with ``code`` and close the connection (graceful stop: 1001)."""
        if self.done:
            return
        self.stop()
        if not self.transport.is_closing():
            self.transport.write(close_frame(code))
            self.transport.close()

    def stop(self) -> None:
        """The connection is gone (or going): send nothing more."""
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
