"""Frozen, typed configuration: what ``conf.build`` produces and everything else reads.

Field names are nginx directive names verbatim, so one grep finds config, code and docs.
Durations are float seconds and sizes int bytes. Nothing here changes after load; mutable
run-time state (peer weights, failure counts) lives in ``wsgate.balancer``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from wsgate.vars.compile import ComplexValue

__all__ = [
    "AccessLogConf",
    "EventsConf",
    "HealthCheckConf",
    "HttpConf",
    "ListenConf",
    "LocationConf",
    "LogFormat",
    "MainConf",
    "MapConf",
    "NextUpstream",
    "PeerConf",
    "ProxyPass",
    "RedirectRule",
    "ServerConf",
    "UpstreamConf",
    "WebSocketDrain",
]


class NextUpstream(enum.Flag):
    """``proxy_next_upstream`` conditions (nginx ``NGX_HTTP_UPSTREAM_FT_*`` bitmask)."""

    NONE = 0
    ERROR = enum.auto()
    TIMEOUT = enum.auto()
    INVALID_HEADER = enum.auto()
    HTTP_500 = enum.auto()
    HTTP_502 = enum.auto()
    HTTP_503 = enum.auto()
    HTTP_504 = enum.auto()
    HTTP_403 = enum.auto()
    HTTP_404 = enum.auto()
    HTTP_429 = enum.auto()
    NON_IDEMPOTENT = enum.auto()
    OFF = enum.auto()


@dataclass(frozen=True, slots=True)
class PeerConf:
    """One address of an upstream ``server`` line (a hostname may give several)."""

    name: str  # address as nginx prints it: "127.0.0.1:8010", "[::1]:8010"
    host: str  # numeric address to connect to
    port: int
    server: str  # the address text as written on the server line ("localhost:8010")
    weight: int = 1
    max_fails: int = 1
    fail_timeout: float = 10.0
    max_conns: int = 0
    down: bool = False
    backup: bool = False


@dataclass(frozen=True, slots=True)
class HealthCheckConf:
    """``websocket_health_check`` (wsgate's own; docs/health-checks.md).

    The defaults are NGINX Plus ``health_check``'s: a check every 5 s, a peer down after
    one failed check and up again after one passed check; ``timeout`` defaults to
    ``interval``.
    """

    interval: float = 5.0  # seconds between two checks of a peer
    timeout: float = 5.0  # bound on one whole check: connect, handshake, ping, pong
    fails: int = 1  # consecutive failed checks that mark a peer down
    passes: int = 1  # consecutive passed checks that bring it back up
    uri: str = "/"  # request target of the handshake
    ping: bool = False  # after the 101, send a Ping and require its Pong


@dataclass(frozen=True, slots=True)
class UpstreamConf:
    """An ``upstream{}`` block, or the implicit group of ``proxy_pass http://host:port``."""

    name: str
    peers: tuple[PeerConf, ...]
    backups: tuple[PeerConf, ...] = ()
    method: str = "round_robin"  # round_robin, ip_hash, hash, least_conn, random
    method_args: tuple[str, ...] = ()
    hash_key: ComplexValue | None = None
    implicit: bool = False
    websocket_health_check: HealthCheckConf | None = None  # None: passive checks only
    # ngx_http_upstream_keepalive_module: idle connections cached per worker (0: none),
    # and when a cached connection is closed (seconds; requests per connection).
    keepalive: int = 0
    keepalive_timeout: float = 60.0
    keepalive_requests: int = 1000
    keepalive_time: float = 3600.0
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class ProxyPass:
    """A parsed ``proxy_pass`` URL: scheme, the upstream group and the optional URI part."""

    url: str
    scheme: str  # "http" or "https"
    upstream: str  # the name of the group in HttpConf.upstreams
    proxy_host: str  # $proxy_host: host[:port] as written, port dropped when default
    uri: str | None  # None when the URL has no URI part ("http://backend")
    # A URI part with variables ("/r/$1$is_args$args"), evaluated per request and sent
    # as it comes out (ngx_http_proxy_eval); ``uri`` then holds its text.
    uri_value: ComplexValue | None = None


@dataclass(frozen=True, slots=True)
class RedirectRule:
    """One ``proxy_redirect`` rule for upstream ``Location`` and ``Refresh`` headers: a
    prefix (compared case-sensitively) or a regex, and what replaces the part matched."""

    replacement: ComplexValue
    prefix: ComplexValue | None = None
    regex: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class LogFormat:
    """A ``log_format``: its name, escaping and the compiled template."""

    name: str
    escape: str  # "default", "json" or "none"
    template: ComplexValue


@dataclass(frozen=True, slots=True)
class AccessLogConf:
    """One ``access_log PATH [FORMAT]`` line (``off`` gives an empty tuple at that level)."""

    path: str
    format: LogFormat


@dataclass(frozen=True, slots=True)
class WebSocketDrain:
    """``websocket_drain on [quit=CODE] [reload=CODE] [retry_after=TIME]``: how a draining
    worker ends its tunnels (Close frames with these codes) and answers new upgrades
    (503 with ``Retry-After: retry_after``)."""

    quit: int = 1001  # on QUIT: Close "going away" at once
    reload: int = 1012  # on reload, when worker_shutdown_timeout expires: "service restart"
    retry_after: int = 5  # seconds


@dataclass(frozen=True, slots=True)
class LocationConf:
    """A ``location`` (or the server-level defaults when ``name`` is empty).

    Every inheritable directive is already merged (http -> server -> location), so the proxy
    reads the effective value directly.
    """

    name: str = ""
    modifier: str = ""  # "", "=", "^~", "~", "~*", or "" for the server-level defaults
    regex: re.Pattern[str] | None = None
    locations: tuple[LocationConf, ...] = ()  # nested, in config order
    proxy_pass: ProxyPass | None = None
    return_: tuple[int, ComplexValue | None] | None = None  # "return CODE [TEXT|URL]"
    add_header: tuple[tuple[str, ComplexValue, bool], ...] = ()  # (name, value, always)
    proxy_set_header: tuple[tuple[str, ComplexValue], ...] = ()
    proxy_http_version: str = "1.0"
    proxy_connect_timeout: float = 60.0
    proxy_read_timeout: float = 60.0
    proxy_send_timeout: float = 60.0
    proxy_buffer_size: int = 4096
    proxy_pass_request_headers: bool = True
    proxy_next_upstream: NextUpstream = NextUpstream.ERROR | NextUpstream.TIMEOUT
    proxy_next_upstream_tries: int = 0
    proxy_next_upstream_timeout: float = 0.0
    proxy_upgrade_protocols: tuple[str, ...] = ("websocket",)  # wsgate; "any" = nginx
    # wsgate's frame-aware tunnel (docs/websocket.md); any of these turns it on (ws_frames)
    websocket_ping_interval: float = 0.0  # 0: wsgate sends no Pings
    websocket_ping_timeout: float = 20.0
    websocket_ping_upstream: bool = False  # ping the backend too
    websocket_max_message_size: int = 0  # 0: no limit
    websocket_max_frame_size: int = 0
    websocket_drain: WebSocketDrain | None = None  # None: "websocket_drain off"
    ws_frames: bool = False  # derived: the tunnel must track frames (a feature or $ws_*)
    proxy_ssl_verify: bool = False
    proxy_ssl_trusted_certificate: str | None = None
    proxy_ssl_server_name: bool = False
    proxy_ssl_name: ComplexValue | None = None  # None: $proxy_host
    proxy_ssl_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    proxy_ssl_ciphers: str = "DEFAULT"
    stub_status: bool = False  # answer with the connection counters (stub_status)
    wsgate_metrics: bool = False  # answer with the Prometheus metrics (wsgate_metrics)
    wsgate_status: bool = False  # answer with the live status page and its WebSocket
    # limit_conn: zones are defined at http level and seen by every location
    limit_conn_zone: tuple[tuple[str, ComplexValue], ...] = ()  # (zone name, key)
    limit_conn: tuple[tuple[str, int], ...] = ()  # (zone name, connections)
    limit_conn_status: int = 503
    limit_conn_log_level: str = "error"
    # TLS of the server (http/server levels; the server reads them from its `defaults`)
    ssl_certificate: str | None = None
    ssl_certificate_key: str | None = None
    ssl_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ssl_ciphers: str = "HIGH:!aNULL:!MD5"
    ssl_prefer_server_ciphers: bool = False
    ssl_session_cache: tuple[str, ...] = ("none",)
    ssl_session_timeout: float = 300.0
    ssl_session_tickets: bool = True
    send_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    keepalive_header: float | None = None  # keepalive_timeout's second argument
    keepalive_requests: int = 1000
    keepalive_time: float = 3600.0  # a client connection older than this is not kept
    client_max_body_size: int = 1024 * 1024
    client_body_timeout: float = 60.0
    server_tokens: bool = True
    default_type: str = "text/plain"
    types: dict[str, str] | None = None  # extension -> type; None: nginx's built-in three
    absolute_redirect: bool = True
    port_in_redirect: bool = True
    server_name_in_redirect: bool = False
    proxy_redirect: tuple[RedirectRule, ...] = ()  # merged, the "default" rule included
    access_log: tuple[AccessLogConf, ...] = ()
    auto_redirect: bool = False  # static name ends in "/" and proxy_pass is set (§4.3)
    file: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class ListenConf:
    """One ``listen`` line of a server."""

    host: str  # "*" (all IPv4), an IPv4 address, "::" or an IPv6 address (no brackets)
    port: int
    default_server: bool = False
    ipv6: bool = False
    ssl: bool = False
    file: str = field(default="", compare=False)  # where it was written, for messages
    line: int = field(default=0, compare=False)

    @property
    def text(self) -> str:
        """The address as nginx prints it ("127.0.0.1:8080", "[::]:80", "0.0.0.0:80")."""
        host = "0.0.0.0" if self.host == "*" else self.host
        return f"[{host}]:{self.port}" if self.ipv6 else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerConf:
    """A virtual ``server{}`` block."""

    listen: tuple[ListenConf, ...]
    server_name: tuple[str, ...]  # as written, first one is $server_name
    locations: tuple[LocationConf, ...]
    defaults: LocationConf  # server-level merged values, used when no location matches
    client_header_timeout: float = 60.0
    client_header_buffer_size: int = 1024
    large_client_header_buffers: tuple[int, int] = (4, 8192)
    underscores_in_headers: bool = False
    ignore_invalid_headers: bool = True
    file: str = ""
    line: int = 0

    @property
    def name(self) -> str:
        """``$server_name`` (and ``$host`` without one): the first name, a leading "."
        removed (``ngx_http_core_merge_srv_conf``); a regex keeps its "~"."""
        first = self.server_name[0]
        return first[1:] if first.startswith(".") else first


@dataclass(frozen=True, slots=True)
class MapConf:
    """A ``map SOURCE $variable {}`` block (lookup rules: nginx-semantics.md §1.1)."""

    source: ComplexValue
    variable: str
    exact: dict[str, ComplexValue] = field(default_factory=dict)  # lower-cased keys
    regexes: tuple[tuple[re.Pattern[str], ComplexValue], ...] = ()
    # "*.example.com" and ".example.com" -> ".example.com" (the latter is also exact)
    wildcards_head: tuple[tuple[str, ComplexValue], ...] = ()
    wildcards_tail: tuple[tuple[str, ComplexValue], ...] = ()  # "example.*" -> "example."
    default: ComplexValue | None = None
    hostnames: bool = False
    volatile: bool = False


@dataclass(frozen=True, slots=True)
class HttpConf:
    """The ``http{}`` block."""

    servers: tuple[ServerConf, ...]
    upstreams: dict[str, UpstreamConf]  # keyed by lower-cased name
    maps: dict[str, MapConf]  # keyed by variable name without "$"
    log_formats: dict[str, LogFormat]


@dataclass(frozen=True, slots=True)
class EventsConf:
    """The ``events{}`` block."""

    worker_connections: int = 512


@dataclass(frozen=True, slots=True)
class MainConf:
    """The whole configuration, plus the files it was read from (for ``-T``)."""

    file: str
    prefix: str
    files: tuple[tuple[str, str], ...]  # (path, text) in the order nginx reads them
    events: EventsConf
    http: HttpConf | None
    worker_processes: int = 1
    worker_shutdown_timeout: float | None = None
    worker_rlimit_nofile: int | None = None
    master_process: bool = True
    pid: str | None = None  # None: not configured (the supervisor uses logs/nginx.pid)
    error_log: tuple[tuple[str, str], ...] = (("logs/error.log", "error"),)
