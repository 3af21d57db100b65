"""Variables of one request: nginx's ``ngx_http_core_variables[]`` plus the proxy's and
upstream's (nginx-semantics.md §5.1).

The I/O layer creates a :class:`RequestVars` when a request head has been parsed and fills
its fields as the request moves on (location, upstream attempts, status, byte counts);
``evaluate`` turns a compiled :class:`ComplexValue` into text. Nothing here touches a
socket: tests build a ``RequestVars`` from a table.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from wsgate import __version__
from wsgate.http.parser import RequestHead
from wsgate.vars.compile import Capture, ComplexValue, Var, ascii_lower, wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from wsgate.conf.model import LocationConf, MapConf, ServerConf

__all__ = ["TUNNEL_LATE", "ConnInfo", "RequestVars", "escape_log_value", "reads_late"]


@dataclass(slots=True)
class ConnInfo:
    """What the variables need from the client connection."""

    remote_addr: str
    remote_port: int
    server_addr: str
    server_port: int
    scheme: str = "http"
    number: int = 0  # $connection: serial number of the connection
    requests: int = 0  # $connection_requests: requests made on it so far (this one included)


# Variables whose values a tunnel knows only when it ends: its byte counts and times, the
# figures of its upstream attempt, the clock. Everything else in its access-log line is
# fixed once the 101 is sent (proxy/downstream.py renders it then).
TUNNEL_LATE = frozenset(
    {
        "body_bytes_sent",
        "bytes_received",
        "bytes_sent",
        "msec",
        "request_time",
        "time_iso8601",
        "time_local",
        "tunnel_time",
        "upstream_bytes_received",
        "upstream_bytes_sent",
        "upstream_response_time",
        "upstream_status",
        "ws_close_code",
        "ws_messages_in",
        "ws_messages_out",
    }
)

_NO_HEAD = RequestHead(
    method="",
    target="",
    version="",
    headers=[],
    request_line="",
    content_length=None,
    chunked=False,
    keep_alive=False,
    raw_length=0,
)
_NO_CONN = ConnInfo(remote_addr="", remote_port=0, server_addr="", server_port=0)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _tz(t: time.struct_time) -> tuple[str, str]:
    off = t.tm_gmtoff or 0
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    return (
        f"{sign}{off // 3600:02d}{off % 3600 // 60:02d}",
        f"{sign}{off // 3600:02d}:{off % 3600 // 60:02d}",
    )


# The second last formatted and its two texts: nginx too formats its times once per second
# (ngx_time_update), not per line.
_times: tuple[int, str, str] = (-1, "", "")


def _formatted(now: float) -> tuple[int, str, str]:
    global _times
    second = int(now // 1)
    if second != _times[0]:
        t = time.localtime(now)
        tz = _tz(t)
        _times = (
            second,
            f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {tz[0]}",
            f"{t.tm_year}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}{tz[1]}",
        )
    return _times


def time_local(now: float) -> str:
    """``24/Nov/2026:13:44:21 +0000`` (``$time_local``)."""
    return _formatted(now)[1]


def time_iso8601(now: float) -> str:
    """``2026-11-24T13:44:21+00:00`` (``$time_iso8601``)."""
    return _formatted(now)[2]


class RequestVars:
    """Per-request variable state. Fields are set by the proxy; :meth:`get` reads them."""

    __slots__ = (
        "_cache",
        "_headers",
        "args",
        "body_bytes_sent",
        "bytes_sent",
        "captures",
        "conn",
        "end_time",
        "head",
        "host",
        "location",
        "maps",
        "named",
        "pipelined",
        "proxy_host",
        "request_length",
        "sent_head",
        "server",
        "start",
        "status",
        "tunnel_received",
        "tunnel_time",
        "upstream_addr",
        "upstream_bytes_received",
        "upstream_bytes_sent",
        "upstream_headers",
        "upstream_response_time",
        "upstream_status",
        "uri",
        "ws_close_code",
        "ws_messages_in",
        "ws_messages_out",
    )

    def __init__(
        self,
        head: RequestHead,
        conn: ConnInfo,
        server: ServerConf,
        maps: dict[str, MapConf],
        *,
        host: str,
        uri: str,
        args: str,
        start: float,
    ) -> None:
        self.head = head
        self.conn = conn
        self.server = server
        self.maps = maps
        self.host = host
        self.uri = uri
        self.args = args
        self.start = start
        self.end_time = 0.0
        self.location: LocationConf | None = None
        self.captures: tuple[str, ...] = ()
        # Named captures of the regexes that matched (server_name, location, map); each
        # one is a variable of its own, as in nginx.
        self.named: dict[str, str] = {}
        self.proxy_host: str | None = None  # set when the request is proxied
        self.pipelined = False  # $pipe: the head was read behind another request's
        self.sent_head: bytes | None = None  # the response head written ($sent_http_*)
        # The last peer's response headers ($upstream_http_*); None when not proxied.
        self.upstream_headers: list[tuple[str, str]] | None = None
        self.status = 0
        self.body_bytes_sent = 0
        self.bytes_sent = 0
        self.request_length = head.raw_length
        self.upstream_addr: list[str] = []
        self.upstream_status: list[str] = []
        self.upstream_response_time: list[float] = []
        # One number per attempt, like upstream_status: bytes written to and read from
        # the peer (for a tunnel, its relayed bytes too).
        self.upstream_bytes_sent: list[int] = []
        self.upstream_bytes_received: list[int] = []
        self.tunnel_time: float | None = None  # seconds the tunnel was open; None: no tunnel
        self.tunnel_received = 0  # bytes the client sent through the tunnel
        # A frame-aware tunnel's counts (proxy/wstunnel.py); None: no frames were tracked.
        self.ws_messages_in: int | None = None  # messages from the client
        self.ws_messages_out: int | None = None  # messages to the client
        self.ws_close_code: int | None = None  # the tunnel's first Close code
        self._cache: dict[str, str | None] = {}
        # $http_* lookups: the header list they were built from, and the values of each
        # lower-cased name in order; built at the first lookup.
        self._headers: tuple[list[tuple[str, str]], dict[str, list[str]]] | None = None

    @classmethod
    def totals(cls, server: ServerConf, *, start: float, request_length: int) -> RequestVars:
        """Variables without the request they came from: only those of :data:`TUNNEL_LATE`
        (and ``$status``) are meant to be read, after the caller fills them in. A tunnel's
        access-log line is finished with one; the rest of it was rendered at the 101."""
        rv = cls(_NO_HEAD, _NO_CONN, server, {}, host="", uri="", args="", start=start)
        rv.request_length = request_length
        return rv

    # -- evaluation ----------------------------------------------------------------------

    def evaluate(self, cv: ComplexValue) -> str:
        """The text of ``cv`` for this request (a variable that is not found gives "")."""
        out: list[str] = []
        for part in cv.parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Var):
                out.append(self.get(part.name) or "")
            else:
                out.append(self._capture(part))
        return "".join(out)

    def evaluate_log(self, cv: ComplexValue, escape: str) -> str:
        """Like :meth:`evaluate` for ``log_format``: "-" for not-found, values escaped."""
        return self.evaluate_log_parts(cv.parts, escape)

    def evaluate_log_parts(self, parts: tuple[str | Var | Capture, ...], escape: str) -> str:
        """:meth:`evaluate_log` of a template's parts (or of :meth:`prerender_log`'s)."""
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
            else:
                out.append(self._log_value(part, escape))
        return "".join(out)

    def prerender_log(
        self, cv: ComplexValue, escape: str, late: frozenset[str]
    ) -> tuple[str | Var, ...]:
        """``cv`` as :meth:`evaluate_log` writes it, with the variables named in ``late``
        left as :class:`Var` parts (text between them joined): finish it later with
        :meth:`evaluate_log_parts`, on the variables as they are then. Only for a template
        none of whose maps reads a variable of ``late`` (:func:`reads_late`)."""
        out: list[str | Var] = []
        for part in cv.parts:
            if isinstance(part, Var) and part.name in late and part.name in _GETTERS:
                out.append(part)
                continue
            text = part if isinstance(part, str) else self._log_value(part, escape)
            if out and isinstance(out[-1], str):
                out[-1] += text
            else:
                out.append(text)
        return tuple(out)

    def _log_value(self, part: Var | Capture, escape: str) -> str:
        value = self.get(part.name) if isinstance(part, Var) else self._capture(part)
        if value is None:
            # ngx_http_log_variable prints "-"; the json and none escapings nothing.
            return "-" if escape == "default" else ""
        return escape_log_value(value, escape)

    def _capture(self, part: Capture) -> str:
        return self.captures[part.index] if part.index < len(self.captures) else ""

    def get(self, name: str) -> str | None:
        """The value of variable ``name`` (lower-case, no ``$``), or ``None`` if not found."""
        getter = _GETTERS.get(name)
        if getter is not None:
            return getter(self)
        m = self.maps.get(name)
        if m is not None:
            if not m.volatile and name in self._cache:
                return self._cache[name]
            value = self._map(m)
            self._cache[name] = value
            return value
        value = self.named.get(name)
        if value is not None:
            return value
        for prefix, family in _FAMILIES:
            if name.startswith(prefix):
                return family(self, name[len(prefix) :])
        return None

    def _map(self, m: MapConf) -> str | None:
        # ngx_http_map_find: exact (lower-cased), wildcards with "hostnames", regexes, default.
        source = self.evaluate(m.source)
        key = ascii_lower(source)
        if m.hostnames and key.endswith("."):
            key = key[:-1]
        hit = m.exact.get(key)
        if hit is not None:
            return self.evaluate(hit)
        if m.hostnames:
            best: tuple[int, ComplexValue] | None = None
            for suffix, value in m.wildcards_head:
                if key.endswith(suffix) and (best is None or len(suffix) > best[0]):
                    best = (len(suffix), value)
            if best is not None:
                return self.evaluate(best[1])
            for head, value in m.wildcards_tail:
                if key.startswith(head):
                    return self.evaluate(value)
        for pattern, value in m.regexes:
            match = pattern.search(source)
            if match is not None:
                # ngx_http_regex_exec: the map's match becomes the request's captures
                # ($1.. and named ones) from here on, as in nginx.
                self.captures = (match.group(0), *(g or "" for g in match.groups()))
                self.named.update({k.lower(): v or "" for k, v in match.groupdict().items()})
                return self.evaluate(value)
        if m.default is not None:
            return self.evaluate(m.default)
        return ""

    def header_value(self, lname: str) -> str | None:
        """``$http_NAME`` with nginx 1.22 rules: first line, except X-Forwarded-For and
        Cookie, whose lines are joined (``, `` and ``; ``)."""
        headers = self.head.headers
        built = self._headers
        if built is None or built[0] is not headers:
            # Built anew when the proxy replaced the list (headers dropped after parsing).
            by_name: dict[str, list[str]] = {}
            for n, v in headers:
                by_name.setdefault(n.lower(), []).append(v)
            built = self._headers = (headers, by_name)
        values = built[1].get(lname)
        if not values:
            return None
        if lname == "x-forwarded-for":
            return ", ".join(values)
        if lname == "cookie":
            return "; ".join(values)
        return values[0]


def _http(rv: RequestVars, suffix: str) -> str | None:
    return rv.header_value(suffix.replace("_", "-"))


def _arg(rv: RequestVars, suffix: str) -> str | None:
    # ngx_http_arg: the first "NAME=" (name without case) at the start or after "&"; a
    # bare "NAME" without "=" does not count.
    for pair in rv.args.split("&"):
        k, sep, v = pair.partition("=")
        if sep and ascii_lower(k) == suffix:
            return v
    return None


def _cookie(rv: RequestVars, suffix: str) -> str | None:
    # ngx_http_parse_multi_header_lines (1.22): each Cookie line in turn; the name is
    # compared without case; a name not followed by "=" skips to the next ";" or ",".
    n = len(suffix)
    for value in (v for k, v in rv.head.headers if k.lower() == "cookie"):
        end = len(value)
        if n > end:
            continue
        i = 0
        while i < end:
            if ascii_lower(value[i : i + n]) == suffix:
                j = i + n
                while j < end and value[j] == " ":
                    j += 1
                if j < end and value[j] == "=":
                    j += 1
                    while j < end and value[j] == " ":
                        j += 1
                    stop = value.find(";", j)
                    return value[j : stop if stop >= 0 else end]
                i = min(j + 1, end)  # the character that was not "=" is consumed
            while i < end:
                i += 1
                if value[i - 1] in ";,":
                    break
            while i < end and value[i] == " ":
                i += 1
    return None


def _first(headers: list[tuple[str, str]], suffix: str) -> str | None:
    # ngx_http_variable_unknown_header: the first line whose name, lower-cased and with
    # "-" as "_", is the suffix.
    for name, value in headers:
        if ascii_lower(name).replace("-", "_") == suffix:
            return value
    return None


# Written by ngx_http_header_filter itself, not kept among the response's headers.
_NOT_SENT_HEADERS = frozenset({"server", "date"})
# ngx_http_variable_headers: every line, joined with ", ".
_JOINED_SENT = frozenset({"cache_control", "link"})


def _sent_http(rv: RequestVars, suffix: str) -> str | None:
    if suffix == "connection":
        # ngx_http_variable_sent_connection reads r->keepalive, which nginx clears before
        # the log line is written: "close" even after "Connection: keep-alive".
        return "upgrade" if rv.status == 101 else "close"
    if suffix == "keep_alive" or rv.sent_head is None:
        return None
    lines = rv.sent_head.decode("latin-1").split("\r\n")[1:]
    headers = [
        (n, v.strip(" \t"))
        for n, _, v in (line.partition(":") for line in lines if line)
        if ascii_lower(n) not in _NOT_SENT_HEADERS
    ]
    if suffix in _JOINED_SENT:
        values = [v for n, v in headers if ascii_lower(n).replace("-", "_") == suffix]
        return ", ".join(values) if values else None
    return _first(headers, suffix)


def _upstream_http(rv: RequestVars, suffix: str) -> str | None:
    return None if rv.upstream_headers is None else _first(rv.upstream_headers, suffix)


_FAMILIES: tuple[tuple[str, Callable[[RequestVars, str], str | None]], ...] = (
    ("http_", _http),
    ("arg_", _arg),
    ("cookie_", _cookie),
    ("sent_http_", _sent_http),
    ("upstream_http_", _upstream_http),
)


def _request_id(rv: RequestVars) -> str:
    # ngx_http_variable_request_id: 16 random bytes in hex, the same for the whole request.
    value = rv._cache.get("request_id")
    if value is None:
        value = rv._cache["request_id"] = secrets.token_hex(16)
    return value


def _proxy_port(rv: RequestVars) -> str | None:
    loc = rv.location
    if rv.proxy_host is None or loc is None or loc.proxy_pass is None:
        return None
    pp = loc.proxy_pass
    _, sep, port = pp.url.split("://", 1)[1].split("/", 1)[0].rpartition(":")
    if sep and port.isdigit():
        return port
    return "443" if pp.scheme == "https" else "80"


def _binary_remote_addr(rv: RequestVars) -> str | None:
    addr = rv.conn.remote_addr
    try:
        raw = socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
    except OSError:
        return None
    return raw.decode("latin-1")


def _proxy_add_x_forwarded_for(rv: RequestVars) -> str:
    xff = rv.header_value("x-forwarded-for")
    if xff is None:
        return rv.conn.remote_addr
    return f"{xff}, {rv.conn.remote_addr}"


def _request_uri(rv: RequestVars) -> str | None:
    # An absolute-form target's scheme and host are not part of $request_uri; a request
    # refused for its URI has none (the caller empties the target).
    target = rv.head.target
    if not target:
        return None
    if target.startswith("/"):
        return target
    rest = target.split("//", 1)[-1]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    path = rest[cut:]
    return "/" + path if not path.startswith("/") else path


def _args(rv: RequestVars) -> str | None:
    # ngx_http_process_request_uri: an empty query string ("/x" or "/x?") is not found.
    return rv.args or None


def _request_time(rv: RequestVars) -> str:
    end = rv.end_time or time.time()
    return f"{max(0.0, end - rv.start):.3f}"


def _joined(values: list[str]) -> str | None:
    return ", ".join(values) if values else None


_HOSTNAME = socket.gethostname()

_GETTERS: dict[str, Callable[[RequestVars], str | None]] = {
    "host": lambda rv: rv.host,
    "http_host": lambda rv: rv.header_value("host"),
    "remote_addr": lambda rv: rv.conn.remote_addr,
    "remote_port": lambda rv: str(rv.conn.remote_port),
    "remote_user": lambda rv: None,
    "server_addr": lambda rv: rv.conn.server_addr,
    "server_port": lambda rv: str(rv.conn.server_port),
    "server_name": lambda rv: rv.server.name,
    "server_protocol": lambda rv: f"HTTP/{rv.head.version}",
    "scheme": lambda rv: rv.conn.scheme,
    "https": lambda rv: "on" if rv.conn.scheme == "https" else "",
    "request": lambda rv: rv.head.request_line,
    "request_uri": _request_uri,
    "request_method": lambda rv: rv.head.method,
    "uri": lambda rv: wire(rv.uri),
    "document_uri": lambda rv: wire(rv.uri),
    "args": _args,
    "query_string": _args,
    "is_args": lambda rv: "?" if rv.args else "",
    "content_length": lambda rv: rv.head.header("content-length"),
    "content_type": lambda rv: rv.head.header("content-type"),
    "request_length": lambda rv: str(rv.request_length),
    "request_time": _request_time,
    "status": lambda rv: f"{rv.status:03d}",
    "body_bytes_sent": lambda rv: str(rv.body_bytes_sent),
    "bytes_sent": lambda rv: str(rv.bytes_sent),
    "time_local": lambda rv: time_local(rv.end_time or time.time()),
    "time_iso8601": lambda rv: time_iso8601(rv.end_time or time.time()),
    "msec": lambda rv: f"{rv.end_time or time.time():.3f}",
    "connection": lambda rv: str(rv.conn.number),
    "connection_requests": lambda rv: str(rv.conn.requests),
    "proxy_host": lambda rv: rv.proxy_host,
    "proxy_port": _proxy_port,
    "request_id": _request_id,
    "pipe": lambda rv: "p" if rv.pipelined else ".",
    "binary_remote_addr": _binary_remote_addr,
    "proxy_add_x_forwarded_for": _proxy_add_x_forwarded_for,
    "upstream_addr": lambda rv: _joined(rv.upstream_addr),
    "upstream_status": lambda rv: _joined(rv.upstream_status),
    "upstream_response_time": lambda rv: _joined([f"{t:.3f}" for t in rv.upstream_response_time]),
    "hostname": lambda rv: _HOSTNAME,
    "pid": lambda rv: str(os.getpid()),
    "nginx_version": lambda rv: __version__,
    "upstream_bytes_sent": lambda rv: _joined([str(n) for n in rv.upstream_bytes_sent]),
    "upstream_bytes_received": lambda rv: _joined([str(n) for n in rv.upstream_bytes_received]),
    # wsgate's own (nginx 1.22 has no $bytes_received in http): request head and body,
    # plus what the client sent through a tunnel.
    "bytes_received": lambda rv: str(rv.request_length + rv.tunnel_received),
    "tunnel_time": lambda rv: None if rv.tunnel_time is None else f"{rv.tunnel_time:.3f}",
    # wsgate's own, from a frame-aware tunnel: messages each way and the first Close code.
    "ws_messages_in": lambda rv: _number(rv.ws_messages_in),
    "ws_messages_out": lambda rv: _number(rv.ws_messages_out),
    "ws_close_code": lambda rv: _number(rv.ws_close_code),
}


def _number(n: int | None) -> str | None:
    return None if n is None else str(n)


def reads_late(cv: ComplexValue, maps: dict[str, MapConf], late: frozenset[str]) -> bool:
    """Whether evaluating ``cv`` evaluates a map that reads (through other maps too) a
    variable named in ``late``: such a map cannot be evaluated before those are known."""
    seen: set[str] = set()
    todo = [cv]
    top = True
    while todo:
        for part in todo.pop().parts:
            if not isinstance(part, Var):
                continue
            name = part.name
            if name in _GETTERS:
                if name in late and not top:
                    return True
            elif name in maps and name not in seen:
                seen.add(name)
                m = maps[name]
                todo.append(m.source)
                todo.extend(m.exact.values())
                todo.extend(v for _, v in m.regexes)
                todo.extend(v for _, v in m.wildcards_head)
                todo.extend(v for _, v in m.wildcards_tail)
                if m.default is not None:
                    todo.append(m.default)
        top = False
    return False


# A character that escape=default (outside printable ASCII, '"' and '\\') or escape=json
# (control characters, '"' and '\\') writes escaped.
_DEFAULT_ESCAPED = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


def escape_log_value(value: str, escape: str) -> str:
    """Escape a variable's value for the access log (``ngx_http_log_escape``, json, none)."""
    if escape == "none":
        return value
    if escape == "json":
        if _JSON_ESCAPED.search(value) is None:
            return value
        out = []
        for ch in value:
            o = ord(ch)
            if ch == '"' or ch == "\\":
                out.append("\\" + ch)
            elif o < 0x20:
                out.append(
                    {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}.get(
                        ch, f"\\u{o:04x}"
                    )
                )
            else:
                out.append(ch)
        return "".join(out)
    if _DEFAULT_ESCAPED.search(value) is None:
        return value
    data = value.encode("latin-1", errors="surrogateescape")
    return "".join(
        f"\\x{b:02X}" if b < 0x20 or b >= 0x7F or b in (0x22, 0x5C) else chr(b) for b in data
    )
