"""Opening a ``wsgate cat -c`` connection the way node's ``ws`` client opens it for wscat.

Call :func:`open_connection` with the run's :class:`~wsgate.cat.options.CatOptions`; it returns
an open :class:`CatConnection` (the caller closes it) or raises :class:`CatError` worded as ws
words the failure (``connect ECONNREFUSED 127.0.0.1:8010``, ``Unexpected server response:
404``...). What it does, in order, for each request of a redirect chain:

1. validate the URL as ws' ``initAsClient`` does (``http:``/``https:`` mean ``ws:``/``wss:``);
2. open the TCP connection itself, so that errors name the address as node does; with
   ``--proxy``, connect to the proxy instead and ask it for a tunnel with ``CONNECT
   host:port`` (https-proxy-agent's request: ``Host`` and ``Proxy-Connection: close``, plus
   ``Proxy-Authorization`` from the proxy URL's credentials); any status but 200 fails as
   ``Unexpected server response: N``, because the agent hands that response to ws;
3. for ``wss:``, TLS over that socket (``--ca``, ``--cert``/``--key``/``--passphrase``, ``-n``);
4. the opening handshake on ``websockets``' sans-I/O client, with ``Sec-WebSocket-Version``
   from ``-p`` (8 or 13; with 8 the origin goes in ``Sec-WebSocket-Origin``, as in ws);
5. a 3xx response with a ``Location`` is followed only with ``-L``, at most
   ``--max-redirects`` times (then ``Maximum redirects exceeded``). On a redirect to another
   host, or from ``wss:`` to ``ws:``, the ``Authorization`` and ``Cookie`` headers are dropped,
   and ``Host`` too when the host changed (ws follows curl 7.77.0 here).

``websockets.asyncio.client.connect`` is not used: it follows redirects by its own rules and
cannot send another protocol version. The connection object is still ``websockets``' own.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import errno
import re
import socket
import ssl
import urllib.parse
from collections.abc import Callable
from typing import Any, Final

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.connection import Connection
from websockets.client import ClientProtocol
from websockets.exceptions import (
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
)
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import Event
from websockets.typing import Subprotocol
from websockets.uri import WebSocketURI, parse_uri

from wsgate.cat.options import MAX_PAYLOAD, CatError, CatOptions, normalize_url, protocol_version

__all__ = [
    "CatConnection",
    "connect_request",
    "frame_error",
    "node_code",
    "open_connection",
    "open_socket",
    "peer_failure",
]

# ws' message for any scheme other than these.
_BAD_PROTOCOL: Final = (
    'The URL\'s protocol must be one of "ws:", "wss:", "http:", "https:", or "ws+unix:"'
)
# ws (and the HTTP layer under it) sets these itself; a user -H with the same name is dropped.
_WS_MANAGED_HEADERS: Final = frozenset(
    {
        "connection",
        "upgrade",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
    }
)
# websockets' message for a status line it refuses ("... expected HTTP/1.1: HTTP/1.0 404 ...").
_HTTP10_STATUS: Final = re.compile(r"expected HTTP/1\.1: HTTP/1\.0 (\d{3})\b")
# The status line of a proxy's answer to CONNECT.
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?")
#: Largest CONNECT response head read from a proxy.
PROXY_HEAD_LIMIT: Final = 64 * 1024
# What a node errno looks like for getaddrinfo failures (dns.lookup's error codes).
_GAI_CODES: dict[int, str] = {
    socket.EAI_NONAME: "ENOTFOUND",
    socket.EAI_AGAIN: "EAI_AGAIN",
}
_NODATA = getattr(socket, "EAI_NODATA", None)
if _NODATA is not None:
    _GAI_CODES[_NODATA] = "ENOTFOUND"


class CatConnection(ClientConnection):
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


class _CatProtocol(ClientProtocol):
    """websockets' client protocol, sending ``Sec-WebSocket-Version: version`` (ws' ``-p``)."""

    def __init__(self, uri: WebSocketURI, *, version: int, **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)
        self.version = version

    def connect(self) -> Request:
        request = super().connect()
        if self.version != 13:
            del request.headers["Sec-WebSocket-Version"]
            request.headers["Sec-WebSocket-Version"] = str(self.version)
        return request


def node_code(exc: OSError) -> str:
    """node's name for an ``OSError``'s errno (``ECONNREFUSED``...)."""
    return errno.errorcode.get(exc.errno or 0, "UNKNOWN")


@dataclasses.dataclass(frozen=True, slots=True)
class _Hop:
    """One request of a redirect chain: where to connect and what to send.

    ``uri`` is where the socket goes; ``handshake_uri`` decides the request target, the
    ``Host`` header and URL credentials; ``headers`` are the extra request headers.
    """

    url: str
    uri: WebSocketURI
    handshake_uri: str
    headers: tuple[tuple[str, str], ...]


def _split_url(url: str) -> urllib.parse.SplitResult:
    """Validate ``url`` as ws does and return it with a ``ws``/``wss`` scheme."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        raise CatError(f"Invalid URL: {url}") from None
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in ("ws", "wss"):
        raise CatError(_BAD_PROTOCOL)
    if parts.fragment or url.endswith("#"):
        raise CatError("The URL contains a fragment identifier")
    return parts._replace(scheme=scheme)


def _host_key(parts: urllib.parse.SplitResult) -> str:
    """WHATWG ``URL.host``: host and port, the scheme's default port left out."""
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    default = 443 if parts.scheme == "wss" else 80
    return host if port in (None, default) else f"{host}:{port}"


def _initial_headers(options: CatOptions) -> dict[str, tuple[str, str]]:
    """wscat's header object: -H (last one wins, case-insensitively), then --auth and --host.

    Keys are lower-case names; values keep the name as typed.
    """
    headers: dict[str, tuple[str, str]] = {}
    for name, value in options.headers:
        headers[name.lower()] = (name, value)
    if options.auth is not None:
        token = base64.b64encode(options.auth.encode()).decode()
        headers["authorization"] = ("Authorization", f"Basic {token}")
    if options.host is not None:
        headers["host"] = ("Host", options.host)
    if options.origin is not None:
        headers.pop("origin", None)
    if options.subprotocols:
        headers.pop("sec-websocket-protocol", None)
    return headers


def _hop(url: str, headers: dict[str, tuple[str, str]]) -> _Hop:
    """Build the request for ``url`` with the headers that apply to it."""
    parts = _split_url(url)
    normalized = urllib.parse.urlunsplit(parts)
    try:
        uri = parse_uri(normalized)
    except (InvalidURI, ValueError):
        raise CatError(f"Invalid URL: {url}") from None
    # The Host header comes from the URI websockets is given, while the socket goes to `uri`:
    # so a Host header is applied by rewriting the authority of the handshake URI.
    netloc = parts.netloc
    if "authorization" in headers:
        # node's http: an explicit Authorization header wins over URL credentials.
        netloc = netloc.rpartition("@")[2]
    if "host" in headers:
        userinfo, at, _ = netloc.rpartition("@")
        netloc = f"{userinfo}{at}{headers['host'][1]}"
    handshake_uri = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    try:
        parse_uri(handshake_uri)
    except (InvalidURI, ValueError):
        raise CatError(f"Invalid URL: {handshake_uri}") from None
    extra = tuple(
        pair
        for name, pair in headers.items()
        if name not in _WS_MANAGED_HEADERS and name not in ("host", "origin")
    )
    return _Hop(normalized, uri, handshake_uri, extra)


def _ssl_context(options: CatOptions) -> ssl.SSLContext:
    """TLS settings for ``wss://``: --ca, --cert/--key/--passphrase, -n/--no-check."""
    context = ssl.create_default_context()
    if not options.check:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    path = options.ca
    passphrase = options.passphrase or ""
    try:
        if options.ca is not None:
            context.load_verify_locations(cafile=options.ca)
        if options.cert is not None:
            path = options.cert
            # A callable, so that OpenSSL never prompts on the terminal by itself.
            context.load_cert_chain(options.cert, options.key, password=lambda: passphrase)
    except ssl.SSLError as exc:
        raise CatError(exc.reason or str(exc)) from exc
    except OSError as exc:
        # node's fs.readFileSync wording: "ENOENT: no such file or directory, open 'x'"
        reason = (exc.strerror or str(exc)).lower()
        raise CatError(f"{node_code(exc)}: {reason}, open '{exc.filename or path}'") from exc
    return context


async def open_socket(host: str, port: int) -> socket.socket:
    """Connect to the first address of ``host`` that accepts, like node's ``net.connect``.

    Returns a non-blocking connected socket; the caller owns it.

    Raises:
        CatError: ``getaddrinfo ENOTFOUND <host>`` or ``connect E... <address>:<port>``,
            naming the first address that failed, as node does (both transient).
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        code = _GAI_CODES.get(exc.errno or 0, str(exc.errno))
        raise CatError(f"getaddrinfo {code} {host}", transient=True) from exc
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
        raise CatError(f"getaddrinfo ENOTFOUND {host}", transient=True)
    error, failed_host, failed_port = first
    message = f"connect {node_code(error)} {failed_host}:{failed_port}"
    raise CatError(message, transient=True) from error


def connect_request(host: str, port: int, proxy: urllib.parse.SplitResult) -> bytes:
    """The ``CONNECT`` request https-proxy-agent 7 sends to reach ``host:port``."""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1"]
    if proxy.username is not None or proxy.password is not None:
        user = urllib.parse.unquote(proxy.username or "")
        password = urllib.parse.unquote(proxy.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    lines += [f"Host: {target}", "Proxy-Connection: close", "", ""]
    return "\r\n".join(lines).encode()


def _proxy_url(proxy: str) -> urllib.parse.SplitResult:
    """Parse ``--proxy [http://]host[:port]``; raise :class:`CatError` if it cannot be used."""
    text = proxy if "://" in proxy else f"http://{proxy}"
    try:
        parts = urllib.parse.urlsplit(text)
        _ = parts.port  # validates the port
    except ValueError:
        raise CatError(f"Invalid URL: {proxy}") from None
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise CatError(f"Unsupported proxy URL: {proxy} (only http:// proxies are supported)")
    return parts


async def _tunnel(uri: WebSocketURI, proxy: urllib.parse.SplitResult) -> socket.socket:
    """Open a socket to ``uri`` through the HTTP proxy ``proxy`` (``CONNECT``)."""
    loop = asyncio.get_running_loop()
    assert proxy.hostname is not None  # checked by _proxy_url
    sock = await open_socket(proxy.hostname, proxy.port or 80)
    try:
        await loop.sock_sendall(sock, connect_request(uri.host, uri.port, proxy))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                raise CatError(
                    "Proxy connection ended before receiving CONNECT response", transient=True
                )
            head += chunk
            if len(head) > PROXY_HEAD_LIMIT:
                raise CatError("Invalid header from proxy CONNECT response")
        status_line = head.split(b"\r\n", 1)[0]
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise CatError("No header received from proxy CONNECT response")
        status = int(match.group(1))
        if status != 200:
            # https-proxy-agent replays the proxy's response to ws, which reads its status.
            raise CatError(f"Unexpected server response: {status}", transient=status >= 500)
    except BaseException:
        sock.close()
        raise
    return sock


def _handshake_error(exc: BaseException) -> CatError:
    """ws' wording for a failed opening handshake, from the exception websockets raised."""
    cause = exc.__cause__
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return CatError(f"Unexpected server response: {status}", transient=status >= 500)
    if isinstance(exc, InvalidUpgrade):
        return CatError("Invalid Upgrade header")
    if isinstance(exc, InvalidHeader):
        if exc.name == "Sec-WebSocket-Accept":
            return CatError("Invalid Sec-WebSocket-Accept header")
        if exc.name == "Sec-WebSocket-Protocol":
            return CatError("Server sent an invalid subprotocol")
        if exc.name == "Sec-WebSocket-Extensions":
            return CatError("Invalid Sec-WebSocket-Extensions header")
    if isinstance(exc, NegotiationError):
        text = str(exc)
        if text == "no subprotocols supported":
            return CatError("Server sent a subprotocol but none was requested")
        if text.startswith("unsupported subprotocol"):
            return CatError("Server sent an invalid subprotocol")
        if text == "no extensions supported":
            return CatError(
                "Server sent a Sec-WebSocket-Extensions header but no extension was requested"
            )
        if text.startswith("Unsupported extension"):
            return CatError("Server indicated an extension that was not requested")
        return CatError("Invalid Sec-WebSocket-Extensions header")
    if isinstance(exc, InvalidMessage):
        if isinstance(cause, EOFError):
            # node's http client, when the server closes first
            return CatError("socket hang up", transient=True)
        # websockets refuses HTTP/1.0 responses; node reads their status like any other.
        http10 = _HTTP10_STATUS.search(str(cause))
        if http10 is not None:
            status = int(http10.group(1))
            return CatError(f"Unexpected server response: {status}", transient=status >= 500)
        return CatError(f"Parse Error: {cause or exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CatError(exc.verify_message or str(exc))
    if isinstance(exc, ssl.SSLError):
        return CatError(exc.reason or str(exc))
    if isinstance(exc, OSError) and exc.errno is not None:
        return CatError(f"read {node_code(exc)}", transient=True)
    if isinstance(exc, ConnectionError | EOFError):
        return CatError("socket hang up", transient=True)
    return CatError(str(exc) or type(exc).__name__)


def peer_failure(connection: Connection) -> Exception | None:
    """What the peer sent that failed the connection, if anything (for ``error: ...``).

    A TCP connection that ends without a close frame is not an error for ws: it is a close
    with code 1006, so websockets' ``EOFError`` is not reported.
    """
    failure = connection.protocol.parser_exc
    return None if isinstance(failure, EOFError) else failure


def frame_error(exc: Exception) -> str:
    """ws' wording for a connection failed because of what the peer sent."""
    if isinstance(exc, PayloadTooBig):
        return "Max payload size exceeded"
    if isinstance(exc, UnicodeDecodeError):
        return "Invalid WebSocket frame: invalid UTF-8 sequence"
    if isinstance(exc, ProtocolError):
        return f"Invalid WebSocket frame: {exc}"
    return str(exc) or type(exc).__name__


class _Redirect(Exception):
    """A 3xx response with a ``Location``, to be followed with ``-L``."""

    def __init__(self, status: int, location: str) -> None:
        super().__init__(status, location)
        self.status = status
        self.location = location


async def _attempt(
    options: CatOptions,
    hop: _Hop,
    version: int,
    proxy: urllib.parse.SplitResult | None,
    context: ssl.SSLContext | None,
) -> CatConnection:
    """One TCP connection and opening handshake; raise :class:`_Redirect` on a 3xx."""
    loop = asyncio.get_running_loop()
    if proxy is None:
        sock = await open_socket(hop.uri.host, hop.uri.port)
    else:
        sock = await _tunnel(hop.uri, proxy)
    handshake_uri = parse_uri(hop.handshake_uri)
    headers = list(hop.headers)
    if options.origin is not None:
        # ws: protocol version 8 carries the origin in Sec-WebSocket-Origin.
        headers.append(("Origin" if version >= 13 else "Sec-WebSocket-Origin", options.origin))

    def factory() -> CatConnection:
        protocol = _CatProtocol(
            handshake_uri,
            version=version,
            extensions=enable_client_permessage_deflate(None),
            subprotocols=[Subprotocol(p) for p in options.subprotocols] or None,
            max_size=MAX_PAYLOAD,
        )
        # ws sends no keepalive pings (they would show up with -P).
        return CatConnection(protocol, ping_interval=None, ping_timeout=None)

    tls: dict[str, Any] = {}
    if context is not None:
        tls = {"ssl": context, "server_hostname": hop.uri.host}
    connection: CatConnection | None = None
    try:
        _, connection = await loop.create_connection(factory, sock=sock, **tls)
        await connection.handshake(headers or None, user_agent_header=None)
    except asyncio.CancelledError:
        if connection is not None:
            connection.transport.abort()
        sock.close()
        raise
    except Exception as exc:
        if connection is not None:
            connection.transport.abort()
        sock.close()
        if isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            location = exc.response.headers.get("Location")
            if location and 300 <= status < 400:
                raise _Redirect(status, location) from exc
        raise _handshake_error(exc) from exc
    if options.subprotocols and connection.subprotocol is None:
        connection.transport.abort()
        raise CatError("Server sent no subprotocol")
    return connection


async def open_connection(options: CatOptions) -> CatConnection:
    """Open the ``-c`` connection, following redirects with ``-L``; see the module docstring.

    Returns the open connection; the caller must close it.

    Raises:
        CatError: the error wscat would print; ``transient`` says whether ``--reconnect``
            should try again.
    """
    version = protocol_version(options.protocol)
    proxy = None if options.proxy is None else _proxy_url(options.proxy)
    url = normalize_url(options.url)
    headers = _initial_headers(options)
    first = _split_url(url)
    hop = _hop(url, headers)
    redirects = 0
    while True:
        context = _ssl_context(options) if hop.uri.secure else None
        try:
            return await _attempt(options, hop, version, proxy, context)
        except _Redirect as redirect:
            if not options.location:
                raise CatError(f"Unexpected server response: {redirect.status}") from None
            redirects += 1
            if redirects > options.max_redirects:
                raise CatError("Maximum redirects exceeded") from None
            location = redirect.location
            try:
                url = urllib.parse.urljoin(hop.url, location)
            except ValueError:
                raise CatError(f"Invalid URL: {location}") from None
            parts = _split_url(url)
            same_host = _host_key(parts) == _host_key(first)
            if not same_host or (first.scheme == "wss" and parts.scheme != "wss"):
                # ws, like curl 7.77.0: credentials do not follow to another origin.
                headers = {k: v for k, v in headers.items() if k not in ("authorization", "cookie")}
                if not same_host:
                    headers.pop("host", None)
                url = urllib.parse.urlunsplit(
                    parts._replace(netloc=parts.netloc.rpartition("@")[2])
                )
            hop = _hop(url, headers)
