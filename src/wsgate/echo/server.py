"""``wsgate echo``: the seed article's node ``ws`` echo server, rebuilt on ``websockets``.

The article's ``server.js`` prints ``Server started``, logs ``Received from client: <msg>`` for
every message and answers ``Server received from client: <msg>``. This module keeps those
strings and adds what the proxy's tests and benchmarks need: several ports in one process, a
plain echo mode, a discard mode, a quiet switch, a message size limit, TLS (``wss://``) and
subprotocol selection.

The log, on stdout, one line per event (``--quiet`` turns all but ``Server started`` off)::

    Server started
    Client connected: 127.0.0.1:50522 /chat (subprotocol: chat)
    Received from client: Hello
    Received from client: <binary 256 bytes>
    Client disconnected: 127.0.0.1:50522 (code: 1000, reason: "bye")

The article's server logs no connection; these two lines are wsgate's, worded like wscat's
listen mode (``Client connected``, ``Disconnected (code: N, reason: "...")``) plus the client's
address, so that lines of concurrent clients can be told apart. ``Client connected`` gives the
request path, and the subprotocol when one was chosen; ``Client disconnected`` gives the close
code the client sent (1005 for none, 1006 when the TCP connection was lost) and its reason.
Message lines stay exactly the article's.

Subprotocols: with ``--subprotocol NAME`` (repeatable) the server picks the *first subprotocol
the client offers* that is in its own list; a client offering none of them is accepted without
a subprotocol (ws' and wscat's clients then fail with ``Server sent no subprotocol``). Without
the flag no subprotocol is ever chosen.

Theory of operation: :func:`open_echo_server` opens one ``websockets`` server per port (each
binds every address ``host`` resolves to, as node's ``ws`` listens on ``::``), and every
connection runs :class:`_EchoHandler` until the peer closes. :func:`serve_echo` wraps that in a
coroutine that runs until it is cancelled or a ``stop`` event is set; :func:`run` is the
command-line entry point, which adds signal handling and exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import io
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TextIO

import uvloop
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Data, Subprotocol

from wsgate.errors import WsgateError

__all__ = [
    "ARTICLE_PORT",
    "DEFAULT_HOST",
    "DEFAULT_MAX_SIZE",
    "REPLY_PREFIX",
    "EchoServer",
    "ListenError",
    "Mode",
    "open_echo_server",
    "run",
    "serve_echo",
    "server_ssl_context",
]

#: The port of the article's ``server.js`` (``new WebSocketServer({port: 8010})``).
ARTICLE_PORT = 8010
#: ``localhost`` binds every loopback address it resolves to (IPv4 and IPv6 where present).
DEFAULT_HOST = "localhost"
#: Largest incoming message accepted by default; bigger ones close the connection with 1009.
DEFAULT_MAX_SIZE = 16 * 2**20
#: What the article's server puts before every message it sends back.
REPLY_PREFIX = "Server received from client: "
_REPLY_PREFIX_BYTES = REPLY_PREFIX.encode()


class Mode(enum.StrEnum):
    """What the server answers to each message."""

    #: ``Server received from client: <msg>``, as the article's ``server.js`` does.
    ARTICLE = "article"
    #: The message itself, unchanged (for benchmarks).
    ECHO = "echo"
    #: Nothing.
    DISCARD = "discard"


class ListenError(WsgateError):
    """A port could not be bound; ``host`` and ``port`` say which one."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {reason}")
        self.host = host
        self.port = port
        self.reason = reason


def _address(connection: ServerConnection) -> str:
    """``host:port`` of the client (``[v6]:port`` for IPv6)."""
    try:
        host, port = connection.remote_address[:2]
    except (TypeError, ValueError):
        return "unknown"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class _EchoHandler:
    """Per-connection loop: log the connection and each message (unless quiet), answer each
    message according to ``mode``."""

    def __init__(self, mode: Mode, quiet: bool, out: TextIO) -> None:
        self.mode = mode
        self.quiet = quiet
        self.out = out

    async def __call__(self, connection: ServerConnection) -> None:
        """Serve one connection until the peer closes it; websockets then closes the socket."""
        address = _address(connection)
        if not self.quiet:
            path = connection.request.path if connection.request is not None else "/"
            chosen = connection.subprotocol
            suffix = f" (subprotocol: {chosen})" if chosen else ""
            self._write(f"Client connected: {address} {path}{suffix}")
        try:
            async for message in connection:
                if not self.quiet:
                    self._log(message)
                reply = self._reply(message)
                if reply is not None:
                    await connection.send(reply)
        except ConnectionClosed:
            # A peer that vanishes (1006) or closes with an error code is routine for an echo
            # server; websockets would otherwise log "connection handler failed".
            pass
        finally:
            if not self.quiet:
                await connection.wait_closed()
                received = connection.protocol.close_rcvd
                code = 1006 if received is None else received.code
                reason = "" if received is None else received.reason
                self._write(f'Client disconnected: {address} (code: {code}, reason: "{reason}")')

    def _write(self, line: str) -> None:
        try:
            self.out.write(f"{line}\n")
            self.out.flush()
        except BrokenPipeError:
            # Whoever read the log went away (`wsgate echo | head`): keep serving, unlogged.
            self.quiet = True

    def _log(self, message: Data) -> None:
        # server.js: console.log('Received from client: %s', message)
        shown = message if isinstance(message, str) else f"<binary {len(message)} bytes>"
        self._write(f"Received from client: {shown}")

    def _reply(self, message: Data) -> Data | None:
        if self.mode is Mode.DISCARD:
            return None
        if self.mode is Mode.ECHO:
            return message
        # server.js: ws.send('Server received from client: ' + message). Binary stays binary
        # here, so that arbitrary bytes come back intact.
        if isinstance(message, str):
            return REPLY_PREFIX + message
        return _REPLY_PREFIX_BYTES + bytes(message)


def _subprotocol_selector(
    supported: Sequence[str],
) -> Callable[[ServerConnection, Sequence[Subprotocol]], Subprotocol | None]:
    """``select_subprotocol`` for ``websockets.serve``: the first offered that is supported."""
    accepted = frozenset(supported)

    def select(connection: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        return next((protocol for protocol in offered if protocol in accepted), None)

    return select


def server_ssl_context(cert: str, key: str | None = None) -> ssl.SSLContext:
    """TLS settings for ``wss://`` from a PEM certificate chain and its key.

    ``key`` may be ``None`` when ``cert`` holds the key too.

    Raises:
        OSError: a file cannot be read.
        ssl.SSLError: the files do not hold a usable certificate and key.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class EchoServer:
    """Handle on running echo servers, one ``websockets`` server per requested port.

    Obtain it from :func:`open_echo_server`; it is valid until that context exits.
    """

    def __init__(self, host: str, servers: Sequence[Server]) -> None:
        self.host = host
        self.servers = tuple(servers)

    @property
    def ports(self) -> list[int]:
        """The TCP ports actually bound, in request order (useful when port 0 was asked for).

        With port 0 and a host that resolves to several addresses, each address gets its own
        port, so one requested port can yield several entries.
        """
        found: list[int] = []
        for server in self.servers:
            for sock in server.sockets:
                port = int(sock.getsockname()[1])
                if port not in found:
                    found.append(port)
        return found


@asynccontextmanager
async def open_echo_server(
    host: str = DEFAULT_HOST,
    ports: Sequence[int] = (ARTICLE_PORT,),
    *,
    mode: Mode = Mode.ARTICLE,
    quiet: bool = False,
    max_size: int | None = DEFAULT_MAX_SIZE,
    compression: bool = True,
    out: TextIO | None = None,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
) -> AsyncIterator[EchoServer]:
    """Listen on every port in ``ports`` and serve echo connections until the context exits.

    Use this when the caller needs the bound ports or wants to run its own code while the
    server is up; otherwise call :func:`serve_echo`. Nothing is printed on start. On exit, open
    connections are closed with 1001 (going away) and their handlers are awaited.

    Args:
        host: Name or address to bind; every address it resolves to is bound.
        ports: TCP ports, one server each (0 picks a free port).
        mode: What to answer, see :class:`Mode`.
        quiet: Log nothing (no connection and no message lines).
        max_size: Largest incoming message in bytes; ``None`` disables the limit.
        compression: Offer permessage-deflate (RFC 7692).
        out: Where log lines go; defaults to ``sys.stdout`` at call time.
        ssl_context: Serve ``wss://`` with these TLS settings (see
            :func:`server_ssl_context`); ``None`` serves plain ``ws://``.
        subprotocols: Subprotocols the server may choose (see the module docstring).

    Raises:
        ListenError: A port could not be bound (the ports already bound are closed again).
    """
    handler = _EchoHandler(mode, quiet, sys.stdout if out is None else out)
    async with AsyncExitStack() as stack:
        servers: list[Server] = []
        for port in ports:
            try:
                server = await stack.enter_async_context(
                    serve(
                        handler,
                        host,
                        port,
                        max_size=max_size,
                        compression="deflate" if compression else None,
                        ssl=ssl_context,
                        select_subprotocol=_subprotocol_selector(subprotocols),
                    )
                )
            except OSError as exc:
                raise ListenError(host, port, exc.strerror or str(exc)) from exc
            servers.append(server)
        yield EchoServer(host, servers)


async def serve_echo(
    host: str = DEFAULT_HOST,
    ports: Sequence[int] = (ARTICLE_PORT,),
    *,
    mode: Mode = Mode.ARTICLE,
    quiet: bool = False,
    max_size: int | None = DEFAULT_MAX_SIZE,
    compression: bool = True,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    out: TextIO | None = None,
    ssl_context: ssl.SSLContext | None = None,
    subprotocols: Sequence[str] = (),
) -> None:
    """Run the article's echo server until cancelled, or until ``stop`` is set.

    Call this from a task (tests, ``wsgate demo``): once every port listens it prints
    ``Server started`` to ``out`` and sets ``ready``, so the caller awaits ``ready.wait()``
    before connecting. To shut down, set ``stop`` (the coroutine then returns) or cancel the
    task; either way open connections get a 1001 close first. The other arguments are those
    of :func:`open_echo_server`.

    Raises:
        ListenError: A port could not be bound; ``ready`` is not set in that case.
    """
    stream = sys.stdout if out is None else out
    async with open_echo_server(
        host,
        ports,
        mode=mode,
        quiet=quiet,
        max_size=max_size,
        compression=compression,
        out=stream,
        ssl_context=ssl_context,
        subprotocols=subprotocols,
    ):
        stream.write("Server started\n")
        stream.flush()
        if ready is not None:
            ready.set()
        if stop is None:
            await asyncio.Future()  # forever, until cancelled
        else:
            await stop.wait()


async def _main(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    max_size: int = args.max_size
    try:
        context = None if args.cert is None else server_ssl_context(args.cert, args.key)
    except (OSError, ssl.SSLError) as exc:
        err.write(f"wsgate echo: cannot load the certificate: {exc}\n")
        err.flush()
        return 1
    try:
        await serve_echo(
            args.host,
            args.port or (ARTICLE_PORT,),
            mode=Mode(args.mode),
            quiet=args.quiet,
            max_size=max_size or None,
            compression=args.compression,
            stop=stop,
            out=out,
            ssl_context=context,
            subprotocols=args.subprotocol or (),
        )
    except ListenError as exc:
        err.write(f"wsgate echo: {exc}\n")
        err.flush()
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0


def _reserve_standard_fds() -> None:
    """Point closed descriptors 0-2 at /dev/null before any socket can be given one of them.

    uvloop asserts ``fd > STDERR_FILENO`` when it closes a socket, so a server started with
    ``<&-`` would otherwise abort on its first close.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _output_stream(stream: TextIO | None, fd: int) -> TextIO:
    """``sys.stdout``/``sys.stderr``, or a stream on ``fd`` when Python started without one.

    A text message the encoding cannot represent is written with backslash escapes rather
    than failing the connection handler.
    """
    if stream is None:  # fd was closed at startup; _reserve_standard_fds reopened it
        return open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="backslashreplace")
    return stream


def run(args: argparse.Namespace) -> int:
    """Run ``wsgate echo`` with options parsed by :func:`wsgate.cli.echo.add_arguments`.

    Blocks until SIGINT or SIGTERM, then closes connections (1001) and returns 0. Returns 1
    when a port cannot be bound or the certificate cannot be loaded. Call it from the main
    thread with no event loop running; to run the server inside an existing loop use
    :func:`serve_echo` instead.
    """
    _reserve_standard_fds()
    out = _output_stream(sys.stdout, 1)
    err = _output_stream(sys.stderr, 2)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_main(args, out, err))
