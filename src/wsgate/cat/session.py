"""One open WebSocket connection of ``wsgate cat``, in either mode: show what arrives, send lines.

:class:`Session` wraps a ``websockets`` connection (client side for ``-c``, server side for
``-l``). The caller runs :meth:`Session.receive` as a task, which shows every message until the
connection closes, and sends with :meth:`Session.send_line` (or :meth:`Session.execute` for
``-x``). :meth:`Session.linger` implements what happens once there is nothing left to send:
wait ``-w`` seconds, or (stdin at EOF) until as many messages arrived as lines were sent, then
close with 1000. :attr:`Session.closing` tells whether this side started the close, which is
how ``--reconnect`` tells a drop from the end of the session. :meth:`Session.ping_loop` is the
``--ping-interval`` task.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConcurrencyError, ConnectionClosed, ProtocolError
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.typing import Data

from wsgate.cat.connector import CatConnection
from wsgate.cat.display import format_binary, pretty_json
from wsgate.cat.options import HOLD_OPEN, CatOptions
from wsgate.cat.terminal import Terminal

__all__ = ["Session", "parse_int"]

# RFC 6455 section 5.5: a close frame's payload is at most 125 bytes, 2 of them for the code.
MAX_CLOSE_REASON = 123


def parse_int(text: str) -> int | None:
    """JavaScript's ``parseInt(text)`` for base 10, with ``None`` for ``NaN``."""
    match = re.match(r"\s*([+-]?\d+)", text)
    return None if match is None else int(match.group(1))


class Session:
    """Show and send for one connection; see the module docstring for the call order.

    Args:
        options: The run's options (display flags, ``-b``, ``-w``, ``--slash``, ``-P``...).
        terminal: Where everything is shown.
        connection: An open connection; the session closes it (:meth:`close`, :meth:`linger`).
        slash: Run ``/ping``, ``/pong`` and ``/close`` lines as commands (``--slash``, which
            wscat honours in connect mode only).
    """

    def __init__(
        self,
        options: CatOptions,
        terminal: Terminal,
        connection: Connection,
        *,
        slash: bool,
    ) -> None:
        self.options = options
        self.terminal = terminal
        self.connection = connection
        self.slash = slash
        self.sent = 0
        self.received = 0
        #: True once this side started the closing handshake (not the peer, not a drop).
        self.closing = False
        self._arrived = asyncio.Event()
        if options.show_ping_pong and isinstance(connection, CatConnection):
            connection.on_control = self._show_control

    def _show_control(self, opcode: Opcode, data: bytes) -> None:
        name = "ping" if opcode is Opcode.PING else "pong"
        self.terminal.incoming(f'Received {name} (data: "{data.decode(errors="replace")}")')

    def show(self, message: Data) -> None:
        """Show one message as wscat does, or as ``--json`` / ``--binary-display`` ask."""
        if isinstance(message, str):
            pretty = pretty_json(message) if self.options.json else None
            if pretty is not None:
                self.terminal.incoming(pretty, block=True)
            else:
                self.terminal.incoming(message)
        else:
            self.terminal.incoming(format_binary(bytes(message), self.options.binary_display))

    async def receive(self) -> None:
        """Show every message until the connection closes (for any reason), then return."""
        message: Data
        try:
            async for message in self.connection:
                self.show(message)
                self.received += 1
                self._arrived.set()
        except ConnectionClosed:
            pass

    async def send(self, message: str) -> None:
        """Send ``message``: a text frame, or its UTF-8 bytes in a binary frame with ``-b``.

        Raises:
            ConnectionClosed: the connection is closing or closed.
        """
        await self.connection.send(message.encode() if self.options.binary else message)
        self.sent += 1

    async def execute(self) -> None:
        """Send the ``-x`` messages, then linger for ``-w`` seconds and close (wscat)."""
        for message in self.options.execute:
            await self.send(message)
        await self.linger(wait_for_replies=False)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start (and wait for) the closing handshake from this side.

        When the peer already closed (or the connection was lost), this only waits: the
        session then still counts as ended by the peer (:attr:`closing` stays ``False``).
        """
        if self.connection.state is State.OPEN:
            self.closing = True
        await self.connection.close(code, reason)

    async def linger(self, *, wait_for_replies: bool) -> None:
        """Wait ``-w`` seconds, or until the replies arrived (see the module docstring); close.

        With ``-w -1`` the connection stays open until the peer closes it.
        """
        wait = self.options.wait_seconds
        if wait == HOLD_OPEN:
            await self.connection.wait_closed()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                if wait_for_replies:
                    while self.received < self.sent:
                        self._arrived.clear()
                        await self._arrived.wait()
                else:
                    await self.connection.wait_closed()
        await self.close()

    async def send_line(self, line: str) -> bool:
        """Send one input line, or run it as a slash command; ``False`` after ``/close``.

        Raises:
            ConnectionClosed: the connection is closing or closed.
        """
        if not (self.slash and line.startswith("/")):
            await self.send(line)
            return True
        # wscat splits on /\s+/ and keeps empty tokens, e.g. "/ping " -> ["/ping", ""].
        tokens = re.split(r"\s+", line)
        command = tokens[0][1:]
        data = tokens[1] if len(tokens) >= 2 else ""
        if command == "ping":
            # ConcurrencyError: the same payload still waits for its pong. ws would send it
            # again; websockets refuses, and the ping is skipped.
            with contextlib.suppress(ConcurrencyError):
                _ = await self.connection.ping(data)  # the pong waiter is not needed
        elif command == "pong":
            await self.connection.pong(data)
        elif command == "close":
            return await self._slash_close(tokens)
        else:
            self.terminal.error("Unrecognized slash command.")
        return True

    async def _slash_close(self, tokens: list[str]) -> bool:
        code = 1000 if len(tokens) < 2 else parse_int(tokens[1])
        reason = " ".join(tokens[2:])
        if code is None:
            self.terminal.error("First argument must be a valid error code number")
            return True
        if len(reason.encode()) > MAX_CLOSE_REASON:
            self.terminal.error("The message must not be greater than 123 bytes")
            return True
        try:
            await self.close(code, reason)
        except ProtocolError:
            self.closing = False
            self.terminal.error("First argument must be a valid error code number")
            return True
        return False

    async def ping_loop(self, interval: float) -> None:
        """Ping every ``interval`` seconds and show each round-trip time (``--ping-interval``).

        A pong that does not come within ``interval`` is reported, and the next ping is sent.
        Returns when the connection closes.
        """
        count = 0
        try:
            while True:
                await asyncio.sleep(interval)
                count += 1
                waiter = await self.connection.ping(f"wsgate-{count}")
                try:
                    async with asyncio.timeout(interval):
                        latency = await waiter
                except TimeoutError:
                    self.terminal.notice(f"No pong within {interval:g} s")
                    continue
                self.terminal.notice(f"Round-trip time: {latency * 1000:.3f} ms")
        except ConnectionClosed:
            return
