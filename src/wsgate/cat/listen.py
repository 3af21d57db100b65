"""``wsgate cat -l PORT``: wscat 6.1.0's listen mode, on ``websockets``' asyncio server.

What wscat does (``bin/wscat``, the ``programOptions.listen`` branch), and so what this does:

* listen on every address (node's ``ws.Server({port})`` binds ``::``), print ``Listening on
  port N (press CTRL+C to quit)`` and clear the line; a port in use is ``error: listen
  EADDRINUSE: address already in use :::N`` and exit code 255;
* one client at a time: a second one is dropped right after its handshake, as ws'
  ``terminate()`` drops it (the client sees 1006);
* ``Client connected`` when a client arrives; each message is shown as in connect mode; stdin
  lines go to the client; ``Disconnected (code: N, reason: "...")`` when it leaves, then the
  next client is accepted. The server picks the first subprotocol the client offers and does
  not offer permessage-deflate (ws' server defaults); errors from the peer are shown as
  ``error: ...`` and do not end the listener;
* while no client is connected, what is typed on a terminal is erased from the screen at once.

Differences, for stdin that is not a terminal (wscat quits as soon as stdin ends, wscat#141):
lines read while no client is connected are queued for the next one. At the end of input,
the listener stops once nothing is left to deliver: at once if no client is connected and no
line waits; otherwise after the client got the queued lines and, as in connect mode, as many
messages as lines were sent arrived (or ``-w`` seconds passed; ``-w -1`` waits for the client
to leave), and was then closed with 1000. On a terminal, Ctrl-C or Ctrl-D ends the listener at
once, closing the client's connection, as in wscat.

``-x``, ``-P`` and ``--slash`` are connect-mode flags in wscat and are ignored here; the new
display flags (``-b``, ``--binary-display``, ``--json``, ``--timestamps``, ``--ping-interval``)
apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Sequence
from typing import Any, Final

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from wsgate.cat.connector import frame_error, peer_failure
from wsgate.cat.input import LineQueue
from wsgate.cat.options import ERROR_EXIT, MAX_PAYLOAD, CatOptions
from wsgate.cat.session import Session
from wsgate.cat.terminal import Terminal

__all__ = ["listen"]

#: How long Ctrl-C waits for the client's closing handshake before dropping it.
INTERRUPT_CLOSE_TIMEOUT: Final = 1.0


def _first_offered(
    connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """ws' server without ``handleProtocols``: accept the first subprotocol offered."""
    return offered[0] if offered else None


class _Listener:
    """State of listen mode: the one client being served, if any.

    :meth:`handle` is the ``websockets`` connection handler; :attr:`changed` is set whenever a
    client arrives or leaves.
    """

    def __init__(self, options: CatOptions, terminal: Terminal, lines: LineQueue) -> None:
        self.options = options
        self.terminal = terminal
        self.lines = lines
        self.session: Session | None = None
        #: Set whenever a client arrives or leaves.
        self.changed = asyncio.Event()
        #: Ctrl-C: wscat exits at once, so the client's departure is not shown.
        self.quitting = False

    async def handle(self, connection: ServerConnection) -> None:
        """Serve one client until it leaves; a client arriving meanwhile is dropped."""
        if self.session is not None:
            connection.transport.abort()  # ws' terminate(): no closing handshake
            return
        session = Session(self.options, self.terminal, connection, slash=False)
        self.session = session
        self.changed.set()
        self.terminal.hidden = False
        self.terminal.prompt()
        self.terminal.control("Client connected")
        receiver = asyncio.ensure_future(session.receive())
        driver = asyncio.ensure_future(self._drive(session))
        tasks = [receiver, driver]
        if self.options.ping_interval is not None:
            tasks.append(asyncio.ensure_future(session.ping_loop(self.options.ping_interval)))
        try:
            await asyncio.wait({receiver, driver}, return_when=asyncio.FIRST_COMPLETED)
            await connection.wait_closed()
            await asyncio.wait({receiver})
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not self.quitting:
                failure = peer_failure(connection)
                if failure is not None:
                    self.terminal.error(frame_error(failure))
                code = connection.close_code
                reason = connection.close_reason or ""
                self.terminal.control(f'Disconnected (code: {code}, reason: "{reason}")')
                self.terminal.clear()
                self.terminal.hidden = True
            self.session = None
            self.changed.set()

    async def _drive(self, session: Session) -> None:
        """Send queued lines to this client; at the end of input, linger and close it."""
        while True:
            line = await self.lines.get()
            if line is None:
                await session.linger(wait_for_replies=True)
                return
            try:
                await session.send(line)
            except ConnectionClosed:
                self.lines.unget(line)  # for the next client
                return
            self.terminal.prompt()

    async def interrupt(self) -> None:
        """Ctrl-C: close the client's connection, if any (briefly waiting for the handshake)."""
        self.quitting = True
        session = self.session
        if session is None:
            return
        session.closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(INTERRUPT_CLOSE_TIMEOUT):
                await session.connection.close()
        session.connection.transport.abort()


def _listen_error(exc: OSError, port: int) -> str:
    """node's ``server.listen`` failure text: ``listen EADDRINUSE: address already in use :::N``."""
    code = errno.errorcode.get(exc.errno or 0, "UNKNOWN")
    # asyncio rewords strerror ("error while attempting to bind on address ..."): use libc's.
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"listen {code}: {reason[:1].lower()}{reason[1:]} :::{port}"


async def listen(
    options: CatOptions, terminal: Terminal, *, lines: LineQueue, stop: asyncio.Event
) -> int:
    """Run listen mode on ``options.listen`` until ``stop`` is set or input is done with.

    Call it inside a running event loop with ``lines`` fed by the caller (see
    :mod:`wsgate.cat.input`). Returns 0, or 255 when the port cannot be bound.
    """
    port = options.listen
    assert port is not None
    listener = _Listener(options, terminal, lines)
    try:
        server = await serve(
            listener.handle,
            None,
            port,
            compression=None,
            max_size=MAX_PAYLOAD,
            ping_interval=None,
            select_subprotocol=_first_offered,
            server_header=None,
        )
    except OSError as exc:
        terminal.error(_listen_error(exc, port))
        return ERROR_EXIT
    async with server:
        bound = port or int(server.sockets[0].getsockname()[1])
        terminal.control(f"Listening on port {bound} (press CTRL+C to quit)")
        terminal.clear()
        terminal.hidden = True
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stopper.done():
                if lines.exhausted and listener.session is None:
                    return 0  # input ended and nothing is left to deliver
                listener.changed.clear()
                waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(listener.changed.wait())}
                if not lines.ended:
                    waiters.add(asyncio.ensure_future(lines.wait_ended()))
                await asyncio.wait({stopper, *waiters}, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
            await listener.interrupt()
            return 0
        finally:
            stopper.cancel()
