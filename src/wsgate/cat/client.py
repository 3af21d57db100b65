"""``wsgate cat``: wscat 6.1.0's connect mode (``-c URL``) on ``websockets``' asyncio client.

Strings, exit codes and output rules are wscat's (``bin/wscat`` and the ``ws`` 8.x error texts,
see docs/peers.md section 2 "wscat exact behaviour"). Deliberate differences, all of them fixes
of wscat's known gaps (wscat#4, #141, PR #166):

* ``-x`` does not read stdin at all, so it works with stdin closed, at EOF or on a pipe.
* Lines read from stdin before the connection opens are queued and sent once it is open.
* At stdin EOF the client does not quit at once: it waits until as many messages have arrived
  as lines were sent, or ``-w`` seconds (default 2; ``-1`` holds the connection open), then
  closes with 1000 and exits 0.
* On a TTY, control characters from the peer are escaped (see :mod:`wsgate.cat.terminal`).

Theory of operation: :func:`cat` parses the URL, opens the TCP connection itself (so that the
error texts can name the address, as node does: ``connect ECONNREFUSED 127.0.0.1:8010``) and
hands the socket to ``websockets.asyncio.client.connect``, which therefore follows no redirect
(wscat needs ``-L`` for that) and ignores proxy variables, as wscat does. A session then runs
two tasks: the receiver prints every message until the connection closes, and the driver sends
the ``-x`` messages or the stdin lines. stdin is read by a daemon thread with ``os.read`` and
lines are handed to the event loop with ``call_soon_threadsafe`` (the websockets CLI model;
raw reads keep the thread off ``sys.stdin``'s lock, which a blocked reader would hold at
interpreter exit). Whoever finishes first ends the session; the close code decides the last
line and the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import codecs
import contextlib
import dataclasses
import errno
import io
import os
import re
import signal
import socket
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, Final, TextIO

import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
)
from websockets.frames import Frame, Opcode
from websockets.protocol import Event
from websockets.typing import Data, Origin, Subprotocol
from websockets.uri import WebSocketURI, parse_uri

from wsgate.cat.terminal import Terminal
from wsgate.errors import WsgateError

__all__ = [
    "DEFAULT_WAIT",
    "ERROR_EXIT",
    "HOLD_OPEN",
    "MAX_PAYLOAD",
    "CatError",
    "CatOptions",
    "cat",
    "normalize_url",
    "options_from_args",
    "run",
]

#: wscat's exit code after an error: ``process.exit(-1)``.
ERROR_EXIT: Final = 255
#: Seconds to wait after ``-x`` (and, in wsgate, after stdin EOF) when ``-w`` is not given.
DEFAULT_WAIT: Final = 2.0
#: The ``-w`` value that keeps the connection open.
HOLD_OPEN: Final = -1.0
#: ws' default ``maxPayload`` (100 MiB); websockets' own default of 1 MiB would be stricter.
MAX_PAYLOAD: Final = 100 * 2**20
#: How long Ctrl-C waits for the closing handshake before dropping the TCP connection.
INTERRUPT_CLOSE_TIMEOUT: Final = 1.0

# wscat: a URL that does not start with a scheme gets "ws://" (note that "localhost:8010"
# *does* start with a scheme, "localhost:", and is then refused by ws, as in wscat).
_HAS_SCHEME = re.compile(r"^[a-z][a-z0-9.+-]*:", re.IGNORECASE)
# ws' message for any scheme other than these.
_BAD_PROTOCOL = 'The URL\'s protocol must be one of "ws:", "wss:", "http:", "https:", or "ws+unix:"'
# ws (and the HTTP layer under it) sets these itself; a user -H with the same name is dropped.
_WS_MANAGED_HEADERS = frozenset(
    {
        "connection",
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
    }
)
# websockets' message for a status line it refuses ("... expected HTTP/1.1: HTTP/1.0 404 ...").
_HTTP10_STATUS = re.compile(r"expected HTTP/1\.1: HTTP/1\.0 (\d{3})\b")
# What a node errno looks like for getaddrinfo failures (dns.lookup's error codes).
_GAI_CODES = {
    socket.EAI_NONAME: "ENOTFOUND",
    socket.EAI_AGAIN: "EAI_AGAIN",
}
_NODATA = getattr(socket, "EAI_NODATA", None)
if _NODATA is not None:
    _GAI_CODES[_NODATA] = "ENOTFOUND"


class CatError(WsgateError):
    """A failure wscat reports as ``error: <message>`` before exiting with 255.

    ``message`` is the text after ``error: ``, worded as node's ``ws`` words it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclasses.dataclass(frozen=True, slots=True)
class CatOptions:
    """Everything ``wsgate cat`` needs, decoupled from argparse (see :func:`options_from_args`).

    ``wait`` is ``None`` when ``-w`` was not given (then :data:`DEFAULT_WAIT` applies) and
    :data:`HOLD_OPEN` to keep the connection open. ``headers`` are ``(name, value)`` pairs.
    """

    url: str
    execute: tuple[str, ...] = ()
    wait: float | None = None
    headers: tuple[tuple[str, str], ...] = ()
    origin: str | None = None
    host: str | None = None
    subprotocols: tuple[str, ...] = ()
    color: bool = True
    show_ping_pong: bool = False
    slash: bool = False
    check: bool = True
    auth: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    passphrase: str | None = None

    @property
    def wait_seconds(self) -> float:
        """``-w`` in seconds: :data:`HOLD_OPEN`, or a delay >= 0 (wscat treats < 0 as 0)."""
        if self.wait is None:
            return DEFAULT_WAIT
        if self.wait == HOLD_OPEN:
            return HOLD_OPEN
        return max(self.wait, 0.0)


def options_from_args(args: argparse.Namespace) -> CatOptions:
    """Build :class:`CatOptions` from the namespace :func:`wsgate.cli.cat.add_arguments` fills."""
    return CatOptions(
        url=args.connect,
        execute=tuple(args.execute or ()),
        wait=args.wait,
        headers=tuple(args.header or ()),
        origin=args.origin,
        host=args.host,
        subprotocols=tuple(args.subprotocol or ()),
        color=args.color,
        show_ping_pong=args.show_ping_pong,
        slash=args.slash,
        check=args.check,
        auth=args.auth,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        passphrase=args.passphrase,
    )


def normalize_url(url: str) -> str:
    """Prefix ``ws://`` when ``url`` has no scheme, exactly as wscat decides it."""
    return url if _HAS_SCHEME.match(url) else f"ws://{url}"


@dataclasses.dataclass(frozen=True, slots=True)
class _Target:
    """Where to connect (``uri``) and what to put in the handshake (``handshake_uri``)."""

    uri: WebSocketURI
    handshake_uri: str


def _parse_target(options: CatOptions) -> _Target:
    """Validate the URL the way ws' ``initAsClient`` does; raise :class:`CatError` if bad."""
    url = normalized = normalize_url(options.url)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise CatError(f"Invalid URL: {normalized}") from None
    scheme = parts.scheme.lower()
    # ws: http: and https: are accepted and mean ws: and wss:.
    scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    if scheme not in ("ws", "wss"):
        raise CatError(_BAD_PROTOCOL)
    if parts.fragment or url.endswith("#"):
        raise CatError("The URL contains a fragment identifier")
    url = urllib.parse.urlunsplit((scheme, *parts[1:]))
    try:
        uri = parse_uri(url)
    except (InvalidURI, ValueError):
        raise CatError(f"Invalid URL: {normalized}") from None

    # The Host header comes from the URI websockets is given, while the socket goes to `uri`:
    # so --host (or -H Host:...) is applied by rewriting the authority of the handshake URI.
    host_header = options.host
    if host_header is None:
        host_header = next((v for k, v in options.headers if k.lower() == "host"), None)
    authorization = options.auth is not None or any(
        k.lower() == "authorization" for k, _ in options.headers
    )
    netloc = parts.netloc
    if authorization:
        # node's http: an explicit Authorization header wins over URL credentials.
        netloc = netloc.rpartition("@")[2]
    if host_header is not None:
        userinfo, at, _ = netloc.rpartition("@")
        netloc = f"{userinfo}{at}{host_header}"
    handshake_uri = urllib.parse.urlunsplit((scheme, netloc, parts.path, parts.query, ""))
    try:
        parse_uri(handshake_uri)
    except (InvalidURI, ValueError):
        raise CatError(f"Invalid URL: {handshake_uri}") from None
    return _Target(uri, handshake_uri)


def _handshake_headers(options: CatOptions) -> list[tuple[str, str]]:
    """The -H headers (plus --auth) that websockets should add to its handshake request."""
    dropped = set(_WS_MANAGED_HEADERS) | {"host"}
    if options.subprotocols:
        dropped.add("sec-websocket-protocol")
    if options.origin is not None:
        dropped.add("origin")
    if options.auth is not None:
        dropped.add("authorization")
    headers = [(k, v) for k, v in options.headers if k.lower() not in dropped]
    if options.auth is not None:
        token = base64.b64encode(options.auth.encode()).decode()
        headers.append(("Authorization", f"Basic {token}"))
    return headers


def _ssl_context(options: CatOptions) -> ssl.SSLContext:
    """TLS settings for ``wss://``: --ca, --cert/--key/--passphrase, -n/--no-check."""
    context = ssl.create_default_context()
    if not options.check:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    path = options.ca
    try:
        if options.ca is not None:
            context.load_verify_locations(cafile=options.ca)
        if options.cert is not None:
            path = options.cert
            context.load_cert_chain(options.cert, options.key, password=options.passphrase)
    except ssl.SSLError as exc:
        raise CatError(exc.reason or str(exc)) from exc
    except OSError as exc:
        # node's fs.readFileSync wording: "ENOENT: no such file or directory, open 'x'"
        reason = (exc.strerror or str(exc)).lower()
        raise CatError(f"{_node_code(exc)}: {reason}, open '{exc.filename or path}'") from exc
    return context


def _node_code(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "UNKNOWN")


async def _open_socket(host: str, port: int) -> socket.socket:
    """Connect to the first address of ``host`` that accepts, like node's ``net.connect``.

    Raises:
        CatError: ``getaddrinfo ENOTFOUND <host>`` or ``connect E... <address>:<port>``,
            naming the first address that failed, as node does.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        code = _GAI_CODES.get(exc.errno or 0, str(exc.errno))
        raise CatError(f"getaddrinfo {code} {host}") from exc
    first: tuple[OSError, str, int] | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            if first is None:
                first = (exc, str(address[0]), int(address[1]))
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # ws sets noDelay too
        return sock
    if first is None:  # getaddrinfo returned nothing at all
        raise CatError(f"getaddrinfo ENOTFOUND {host}")
    error, failed_host, failed_port = first
    raise CatError(f"connect {_node_code(error)} {failed_host}:{failed_port}") from error


def _handshake_error(exc: BaseException) -> str:
    """ws' wording for a failed opening handshake, from the exception websockets raised."""
    cause = exc.__cause__
    if isinstance(exc, ValueError) and isinstance(cause, InvalidStatus):
        exc = cause  # a redirect that websockets refused to follow: wscat has no -L here
    if isinstance(exc, InvalidStatus):
        return f"Unexpected server response: {exc.response.status_code}"
    if isinstance(exc, InvalidUpgrade):
        return "Invalid Upgrade header"
    if isinstance(exc, InvalidHeader):
        if exc.name == "Sec-WebSocket-Accept":
            return "Invalid Sec-WebSocket-Accept header"
        if exc.name == "Sec-WebSocket-Protocol":
            return "Server sent an invalid subprotocol"
        if exc.name == "Sec-WebSocket-Extensions":
            return "Invalid Sec-WebSocket-Extensions header"
    if isinstance(exc, NegotiationError):
        text = str(exc)
        if text == "no subprotocols supported":
            return "Server sent a subprotocol but none was requested"
        if text.startswith("unsupported subprotocol"):
            return "Server sent an invalid subprotocol"
        if text == "no extensions supported":
            return "Server sent a Sec-WebSocket-Extensions header but no extension was requested"
        if text.startswith("Unsupported extension"):
            return "Server indicated an extension that was not requested"
        return "Invalid Sec-WebSocket-Extensions header"
    if isinstance(exc, InvalidMessage):
        if isinstance(cause, EOFError):
            return "socket hang up"  # node's http client, when the server closes first
        # websockets refuses HTTP/1.0 responses; node reads their status like any other.
        http10 = _HTTP10_STATUS.search(str(cause))
        if http10 is not None:
            return f"Unexpected server response: {int(http10.group(1))}"
        return f"Parse Error: {cause or exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or str(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"read {_node_code(exc)}"
    return str(exc) or type(exc).__name__


def _frame_error(exc: Exception) -> str:
    """ws' wording for a connection failed because of what the peer sent."""
    if isinstance(exc, PayloadTooBig):
        return "Max payload size exceeded"
    if isinstance(exc, UnicodeDecodeError):
        return "Invalid WebSocket frame: invalid UTF-8 sequence"
    if isinstance(exc, ProtocolError):
        return f"Invalid WebSocket frame: {exc}"
    return str(exc) or type(exc).__name__


class _CatConnection(ClientConnection):
    """A ``ClientConnection`` that reports every ping and pong it receives (for ``-P``).

    websockets answers pings itself and exposes no event for them, so the notice is taken
    where frames enter the connection. Set :attr:`on_control` once the handshake is done.
    """

    on_control: Callable[[Opcode, bytes], None] | None = None

    def process_event(self, event: Event) -> None:
        if (
            self.on_control is not None
            and isinstance(event, Frame)
            and event.opcode in (Opcode.PING, Opcode.PONG)
        ):
            self.on_control(event.opcode, bytes(event.data))
        super().process_event(event)


async def _connect(options: CatOptions, target: _Target) -> _CatConnection:
    """Open the TCP connection and perform the opening handshake.

    Returns the open connection; the caller must close it. Raises :class:`CatError`.
    """
    tls: dict[str, Any] = {}
    if target.uri.secure:
        tls = {"ssl": _ssl_context(options), "server_hostname": target.uri.host}
    sock = await _open_socket(target.uri.host, target.uri.port)
    try:
        connection = await connect(
            target.handshake_uri,
            sock=sock,
            origin=None if options.origin is None else Origin(options.origin),
            subprotocols=[Subprotocol(p) for p in options.subprotocols] or None,
            additional_headers=_handshake_headers(options) or None,
            user_agent_header=None,  # ws sends no User-Agent
            open_timeout=None,  # nor does it time out the handshake
            ping_interval=None,  # nor send keepalive pings (they would show up with -P)
            max_size=MAX_PAYLOAD,
            create_connection=_CatConnection,
            **tls,
        )
    except asyncio.CancelledError:
        sock.close()
        raise
    except Exception as exc:
        sock.close()
        raise CatError(_handshake_error(exc)) from exc
    assert isinstance(connection, _CatConnection)
    if options.subprotocols and connection.subprotocol is None:
        connection.transport.abort()
        raise CatError("Server sent no subprotocol")
    return connection


def _start_line_reader(fd: int, deliver: Callable[[str | None], bool]) -> threading.Thread:
    """Read lines from ``fd`` in a daemon thread; pass each to ``deliver``, then ``None``.

    Lines lose their ``\\n`` / ``\\r\\n``; a last line without a newline is still delivered,
    as node's readline does. ``deliver`` returns ``False`` when nobody listens any more, and
    the thread then stops. Invalid UTF-8 becomes U+FFFD.
    """

    def read() -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            pending += decoder.decode(chunk, final=not chunk)
            *complete, pending = pending.split("\n")
            for line in complete:
                if not deliver(line.removesuffix("\r")):
                    return
            if not chunk:
                if pending and not deliver(pending):
                    return
                deliver(None)
                return

    thread = threading.Thread(target=read, name="wsgate-cat-stdin", daemon=True)
    thread.start()
    return thread


def _parse_int(text: str) -> int | None:
    """JavaScript's ``parseInt(text)`` for base 10, with ``None`` for ``NaN``."""
    match = re.match(r"\s*([+-]?\d+)", text)
    return None if match is None else int(match.group(1))


class _Session:
    """One open connection: print what arrives, send what the user asked for.

    Call :meth:`receive` and :meth:`drive` as two tasks; the first to finish ends the
    session. ``lines`` is the stdin queue (``None`` item = EOF); it is unused with ``-x``.
    """

    def __init__(
        self,
        options: CatOptions,
        terminal: Terminal,
        connection: _CatConnection,
        lines: asyncio.Queue[str | None],
    ) -> None:
        self.options = options
        self.terminal = terminal
        self.connection = connection
        self.lines = lines
        self.sent = 0
        self.received = 0
        self.arrived = asyncio.Event()
        if options.show_ping_pong:
            connection.on_control = self._show_control

    def _show_control(self, opcode: Opcode, data: bytes) -> None:
        name = "ping" if opcode is Opcode.PING else "pong"
        self.terminal.incoming(f'Received {name} (data: "{data.decode(errors="replace")}")')

    async def receive(self) -> None:
        """Print every message until the connection closes (for any reason), then return."""
        message: Data
        try:
            async for message in self.connection:
                if isinstance(message, str):
                    self.terminal.incoming(message)
                else:
                    # node turns a Buffer into text when wscat concatenates it: UTF-8, lossy.
                    self.terminal.incoming(message.decode(errors="replace"))
                self.received += 1
                self.arrived.set()
        except ConnectionClosed:
            pass

    async def drive(self) -> None:
        """Send the ``-x`` messages or the stdin lines; return once the connection is closing."""
        try:
            if self.options.execute:
                await self._execute()
            else:
                await self._interact()
        except ConnectionClosed:
            pass  # the receiver sees the close too and ends the session

    async def _execute(self) -> None:
        for message in self.options.execute:
            await self.connection.send(message)
        await self._linger(wait_for_replies=False)

    async def _interact(self) -> None:
        while (line := await self.lines.get()) is not None:
            if not await self._handle_line(line):
                return  # /close: the closing handshake is under way
            self.terminal.prompt()
        await self._linger(wait_for_replies=True)

    async def _linger(self, *, wait_for_replies: bool) -> None:
        """Wait ``-w`` seconds (or for the replies, see the module docstring), then close."""
        wait = self.options.wait_seconds
        if wait == HOLD_OPEN:
            await self.connection.wait_closed()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                if wait_for_replies:
                    while self.received < self.sent:
                        self.arrived.clear()
                        await self.arrived.wait()
                else:
                    await self.connection.wait_closed()
        await self.connection.close()

    async def _handle_line(self, line: str) -> bool:
        """Send one stdin line, or run it as a slash command; ``False`` after ``/close``."""
        if not (self.options.slash and line.startswith("/")):
            await self.connection.send(line)
            self.sent += 1
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
            code = 1000 if len(tokens) < 2 else _parse_int(tokens[1])
            reason = " ".join(tokens[2:])
            if code is None:
                self.terminal.error("First argument must be a valid error code number")
                return True
            if len(reason.encode()) > 123:  # RFC 6455 section 5.5: 125 bytes with the code
                self.terminal.error("The message must not be greater than 123 bytes")
                return True
            try:
                await self.connection.close(code, reason)
            except ProtocolError:
                self.terminal.error("First argument must be a valid error code number")
                return True
            return False
        else:
            self.terminal.error("Unrecognized slash command.")
        return True


async def _race(task: asyncio.Future[Any], stop: asyncio.Event) -> bool:
    """Wait for ``task`` or ``stop``; return ``True`` if ``stop`` came first."""
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    return not task.done()


async def _finish(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait for them; re-raise the first unexpected error."""
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result


async def cat(
    options: CatOptions,
    terminal: Terminal,
    *,
    stdin_fd: int | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run one ``wsgate cat -c`` session and return the exit code (0, or 255 after an error).

    Call it inside a running event loop; :func:`run` does that for the command line. Output
    goes through ``terminal``. Lines are read from ``stdin_fd`` unless ``-x`` was given; with
    ``stdin_fd=None`` stdin counts as already at EOF. Setting ``stop`` acts as Ctrl-C: the
    connection is closed and 0 returned without a ``Disconnected`` line (wscat prints none).
    """
    stop = asyncio.Event() if stop is None else stop
    try:
        target = _parse_target(options)
    except CatError as exc:
        terminal.error(exc.message)
        return ERROR_EXIT

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def deliver(item: str | None) -> bool:
        try:
            loop.call_soon_threadsafe(lines.put_nowait, item)
        except RuntimeError:  # the loop is closed: the session is over
            return False
        return True

    if not options.execute:
        if stdin_fd is None:
            lines.put_nowait(None)
        else:
            _start_line_reader(stdin_fd, deliver)

    connecting = asyncio.ensure_future(_connect(options, target))
    if await _race(connecting, stop):
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError, CatError):
            await connecting
        return 0
    try:
        connection = connecting.result()
    except CatError as exc:
        terminal.error(exc.message)
        return ERROR_EXIT

    session = _Session(options, terminal, connection, lines)
    if not options.execute:
        terminal.control("Connected (press CTRL+C to quit)")
    receiver = asyncio.ensure_future(session.receive())
    driver = asyncio.ensure_future(session.drive())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({receiver, driver, stopper}, return_when=asyncio.FIRST_COMPLETED)
    interrupted = stopper.done() and not receiver.done() and not driver.done()
    if interrupted:
        driver.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(INTERRUPT_CLOSE_TIMEOUT):
                await connection.close()
        connection.transport.abort()
    else:
        # Idempotent: a no-op when the peer or the driver closed the connection; otherwise a
        # task failed (say, stdout became a broken pipe) and its error is re-raised below.
        await connection.close()
    await connection.wait_closed()
    await asyncio.wait({receiver})
    await _finish([receiver, driver, stopper])

    if interrupted:
        terminal.clear()
        return 0
    failure = connection.protocol.parser_exc
    if failure is not None:
        terminal.error(_frame_error(failure))
        return ERROR_EXIT
    if not options.execute:
        code = connection.close_code
        reason = connection.close_reason or ""
        terminal.control(f'Disconnected (code: {code}, reason: "{reason}")')
    terminal.clear()
    return 0


def _reserve_standard_fds() -> None:
    """Point closed descriptors 0-2 at /dev/null, so that no socket is given one of them.

    Run with ``<&-``, the first socket would otherwise become fd 0, and the event loop (uvloop
    asserts ``fd > STDERR_FILENO``) or a later write to "stdout" would misbehave.
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

    Characters the stream's encoding cannot represent are written as backslash escapes
    instead of failing the session.
    """
    if stream is None:  # fd was closed at startup; _reserve_standard_fds reopened it
        return open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="backslashreplace")
    return stream


def _stdin_fd() -> int | None:
    if sys.stdin is None:  # started with fd 0 closed
        return None
    try:
        return sys.stdin.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


async def _main(options: CatOptions, terminal: Terminal, stdin_fd: int | None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        return await cat(options, terminal, stdin_fd=stdin_fd, stop=stop)
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def run(args: argparse.Namespace) -> int:
    """Run ``wsgate cat`` with options parsed by :func:`wsgate.cli.cat.add_arguments`.

    Uses the process' stdin, stdout and stderr and handles Ctrl-C; returns the exit code for
    ``sys.exit``. Call it with no event loop running; inside a loop, call :func:`cat`.
    """
    options = options_from_args(args)
    stdin_fd = _stdin_fd()  # before fd 0 may be reopened on /dev/null: closed stdin is EOF
    _reserve_standard_fds()
    stdout = _output_stream(sys.stdout, 1)
    stderr = _output_stream(sys.stderr, 2)
    try:
        tty = os.isatty(stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        tty = False
    terminal = Terminal(stdout, stderr, tty=tty, color=options.color, execute=bool(options.execute))
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_main(options, terminal, stdin_fd))
    except BrokenPipeError:
        # stdout's reader went away (`wsgate cat ... | head -1`): end quietly, and keep the
        # interpreter's final flush from failing again.
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stdout.fileno())
        os.close(null)
        return 0
