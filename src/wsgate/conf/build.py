"""Turn builders into the frozen model: post-block checks, inheritance, defaults.

Entry points: :func:`parse` (read the files; nginx's errors before "syntax is ok") and
:func:`finish` (checks nginx makes after it, e.g. the ``events`` section). :func:`load`
does both. Inheritance follows ``ngx_http_proxy_merge_loc_conf``: a value set at an inner
level wins; array directives (``proxy_set_header``, ``access_log``, ``add_header``) are
inherited only when the inner level defines none.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from typing import Any

from wsgate.conf.builders import (
    Ctx,
    HttpBuilder,
    LocationBuilder,
    MainBuilder,
    ServerBuilder,
    UpstreamBuilder,
)
from wsgate.conf.model import (
    AccessLogConf,
    EventsConf,
    HttpConf,
    LocationConf,
    MainConf,
    MapConf,
    ProxyPass,
    RedirectRule,
    ServerConf,
    UpstreamConf,
)
from wsgate.conf.parser import Parser, Stmt
from wsgate.errors import ConfigError

__all__ = ["Parsed", "finish", "finish_http", "load", "parse"]


@dataclass(slots=True)
class Parsed:
    """What :func:`parse` read: the builders and the files, for :func:`finish` and ``-T``."""

    file: str
    prefix: str
    main: MainBuilder
    files: list[tuple[str, str]]


def parse(path: str, *, text: str | None = None, prefix: str | None = None) -> Parsed:
    """Read ``path`` (or ``text`` under that name) and its includes.

    Raises:
        ConfigError: the first error nginx would report before "syntax is ok".
    """
    conf_dir = os.path.dirname(os.path.abspath(path))
    p = Parser(conf_dir)
    main = MainBuilder()
    p.parse_file(path, Ctx("main", main), text=text)
    return Parsed(path, prefix if prefix is not None else conf_dir, main, p.files)


def finish(parsed: Parsed) -> MainConf:
    """Build the model from what :func:`parse` read.

    Raises:
        ConfigError: errors nginx reports after "syntax is ok" (missing ``events``).
    """
    m = parsed.main
    if m.events is None:
        raise ConfigError('no "events" section in configuration')
    for name, size in (m.http.zones if m.http is not None else {}).items():
        if not size:  # named by limit_conn, never defined (ngx_init_cycle)
            raise ConfigError(f'zero size shared memory zone "{name}"')
    v = m.values
    http = _freeze_http(m.http) if m.http is not None else None
    return MainConf(
        file=parsed.file,
        prefix=parsed.prefix,
        files=tuple(parsed.files),
        events=EventsConf(worker_connections=m.events.get("worker_connections", 512)),
        http=http,
        worker_processes=v.get("worker_processes", 1),
        worker_shutdown_timeout=v.get("worker_shutdown_timeout"),
        worker_rlimit_nofile=v.get("worker_rlimit_nofile"),
        master_process=v.get("master_process", True),
        pid=v.get("pid"),
        error_log=tuple(v.get("error_log", [("stderr", "error")])),
    )


def load(path: str, *, text: str | None = None, prefix: str | None = None) -> MainConf:
    """:func:`parse` then :func:`finish`."""
    return finish(parse(path, text=text, prefix=prefix))


# ---------------------------------------------------------------------------------------
# End of the http block (ngx_http_block after ngx_conf_parse).

BUILTIN_VARIABLES = frozenset(
    {
        "host",
        "http_host",
        "remote_addr",
        "remote_port",
        "remote_user",
        "server_addr",
        "server_port",
        "server_name",
        "server_protocol",
        "scheme",
        "request",
        "request_uri",
        "uri",
        "document_uri",
        "args",
        "query_string",
        "is_args",
        "request_method",
        "request_length",
        "request_time",
        "status",
        "body_bytes_sent",
        "bytes_sent",
        "time_local",
        "time_iso8601",
        "msec",
        "connection",
        "connection_requests",
        "proxy_host",
        "proxy_port",
        "proxy_add_x_forwarded_for",
        "upstream_addr",
        "upstream_status",
        "upstream_response_time",
        "upstream_connect_time",
        "upstream_header_time",
        "upstream_bytes_sent",
        "upstream_bytes_received",
        "content_length",
        "content_type",
        "hostname",
        "pid",
        "nginx_version",
        "binary_remote_addr",
        "realpath_root",
        "document_root",
        "pipe",
        "https",
        "request_id",
        "tunnel_time",
        "bytes_received",
        "ws_messages_in",
        "ws_messages_out",
        "ws_close_code",
    }
)
PREFIX_VARIABLES = ("http_", "arg_", "cookie_", "sent_http_", "upstream_http_", "sent_trailer_")


def finish_http(hb: HttpBuilder, close: Stmt) -> None:
    """Checks nginx makes when the ``http{}`` block closes (``ngx_http_block``), in its
    order: upstream groups (implicit ones resolved now), merged values, variables.

    Args:
        close: where the block's ``}`` is; deferred errors are reported there.

    Raises:
        ConfigError: ``host not found in upstream`` (at the proxy_pass line), ``upstream
            "u" may not have port N``, ``no servers in upstream``, a bad ``$`` in a
            ``proxy_set_header`` value, ``unknown "x" variable`` (no location).
    """
    from wsgate.conf.table import resolve_peers

    for (_url, scheme, hostport, *_), file, line in hb.proxy_passes:
        stmt = Stmt("proxy_pass", (), file, line, close.end)
        default_port = 443 if scheme == "https" else 80
        host, sep, port = hostport.rpartition(":")
        if not sep or hostport.endswith("]"):
            host, port = hostport, ""
        explicit = hb.upstreams.get(host.lower())
        if explicit is not None and not explicit.implicit:
            if port:
                raise stmt.error(f'upstream "{host}" may not have port {port}')
            continue
        key = hostport.lower()
        if key in hb.upstreams:
            continue
        # ngx_http_upstream_init_round_robin prints the host without the port.
        peers = resolve_peers(stmt, hostport, default_port, shown=host)
        hb.upstreams[key] = UpstreamBuilder(hostport, file, line, peers=peers, implicit=True)
    for u in hb.upstreams.values():
        if not any(not p.backup for p in u.peers):
            raise ConfigError(f'no servers in upstream "{u.name}"', u.file, u.line)
    if hb.deferred_error is not None:
        raise close.error(hb.deferred_error)
    for s in hb.servers:
        _duplicate_locations(s.locations)
    _ssl_certificates(hb)
    captures = named_captures(hb)
    for name in hb.variables_used:
        if name in BUILTIN_VARIABLES or name in hb.maps or name.startswith(PREFIX_VARIABLES):
            continue
        if name in captures:
            continue
        if name.isdigit():
            continue
        raise ConfigError(f'unknown "{name}" variable')


def _duplicate_locations(locations: list[LocationBuilder]) -> None:
    """``duplicate location`` as ngx_http_init_static_location_trees finds it, once the
    http block is read: the locations of a level without regex ones, sorted by name (an
    exact one before a prefix one of the same name), nested levels first; two exact or
    two prefix locations of one name are the error, at the later one. Regex locations
    are never compared."""
    statics = [loc for loc in locations if loc.regex is None]
    statics.sort(key=lambda loc: (loc.name.encode("utf-8", "surrogateescape"), loc.modifier != "="))
    for loc in statics:
        _duplicate_locations(loc.locations)
    name: str | None = None
    exact = prefix = False
    for loc in statics:
        if loc.name != name:
            name, exact, prefix = loc.name, False, False
        elif (exact and loc.modifier == "=") or (prefix and loc.modifier != "="):
            raise ConfigError(f'duplicate location "{loc.name}"', loc.file, loc.line)
        if loc.modifier == "=":
            exact = True
        else:
            prefix = True


def _ssl_certificates(hb: HttpBuilder) -> None:
    """ngx_http_ssl_init: an address with ``listen ... ssl`` needs a certificate in its
    default server (the one with ``default_server``, else the first); the error names
    that server's line."""
    by_address: dict[tuple[str, int, bool], list[tuple[ServerBuilder, bool]]] = {}
    ssl: set[tuple[str, int, bool]] = set()
    for s in hb.servers:
        for lc in s.listen:
            key = (lc.host, lc.port, lc.ipv6)
            by_address.setdefault(key, []).append((s, lc.default_server))
            if lc.ssl:
                ssl.add(key)
    for key in sorted(ssl, key=lambda k: (k[1], list(by_address).index(k))):
        servers = by_address[key]
        default = next((s for s, is_default in servers if is_default), servers[0][0])
        if "ssl_certificate" not in default.values and "ssl_certificate" not in hb.values:
            raise ConfigError(
                'no "ssl_certificate" is defined for the "listen ... ssl" directive',
                default.file,
                default.line,
            )


def named_captures(hb: HttpBuilder) -> set[str]:
    """Names of the named captures of every regex (server names, locations, maps): nginx
    makes each one a variable (``ngx_http_regex_compile``)."""
    from wsgate.conf.table import _pcre_to_python

    names: set[str] = set()
    for m in hb.maps.values():
        for pattern, _ in m.regexes:
            names.update(pattern.groupindex)
    stack: list[LocationBuilder] = []
    for s in hb.servers:
        for name in s.server_name:
            if name.startswith("~"):
                names.update(re.compile(_pcre_to_python(name[1:])).groupindex)
        stack.extend(s.locations)
    while stack:
        loc = stack.pop()
        if loc.regex is not None:
            names.update(loc.regex.groupindex)
        stack.extend(loc.locations)
    return {n.lower() for n in names}


def _freeze_http(hb: HttpBuilder) -> HttpConf:
    upstreams = {
        key: UpstreamConf(
            name=u.name,
            peers=tuple(p for p in u.peers if not p.backup),
            backups=tuple(p for p in u.peers if p.backup),
            method=u.method,
            method_args=u.method_args,
            hash_key=u.hash_key,
            implicit=u.implicit,
            websocket_health_check=u.websocket_health_check,
            keepalive=u.keepalive,
            keepalive_timeout=u.values.get("keepalive_timeout", 60.0),
            keepalive_requests=u.values.get("keepalive_requests", 1000),
            keepalive_time=u.values.get("keepalive_time", 3600.0),
            file=u.file,
            line=u.line,
        )
        for key, u in hb.upstreams.items()
    }
    maps = {
        name: MapConf(
            source=m.source,
            variable=m.variable,
            exact=dict(m.exact),
            regexes=tuple(m.regexes),
            wildcards_head=tuple(m.wildcards_head),
            wildcards_tail=tuple(m.wildcards_tail),
            default=m.default,
            hostnames=m.hostnames,
            volatile=m.volatile,
        )
        for name, m in hb.maps.items()
    }
    servers = tuple(_freeze_server(s, hb) for s in hb.servers)
    return HttpConf(servers, upstreams, maps, dict(hb.log_formats))


_SERVER_FIELDS = (
    "client_header_timeout",
    "client_header_buffer_size",
    "large_client_header_buffers",
    "underscores_in_headers",
    "ignore_invalid_headers",
)


def _freeze_server(s: ServerBuilder, hb: HttpBuilder) -> ServerConf:
    chain = [hb.values, s.values]
    defaults = _freeze_location(None, chain, hb)
    kw: dict[str, Any] = {}
    for name in _SERVER_FIELDS:
        value = _lookup(chain, name)
        if value is not _UNSET:
            kw[name] = value
    return ServerConf(
        listen=tuple(s.listen),
        server_name=tuple(s.server_name) or ("",),
        locations=tuple(_freeze_location(loc, [*chain, loc.values], hb) for loc in s.locations),
        defaults=defaults,
        file=s.file,
        line=s.line,
        **kw,
    )


_UNSET: Any = object()
_ARRAYS = frozenset({"proxy_set_header", "access_log", "add_header"})
_LOCATION_FIELDS = frozenset(f.name for f in fields(LocationConf))


def _lookup(chain: list[dict[str, Any]], name: str) -> Any:
    for level in reversed(chain):
        if name in level:
            return level[name]
    return _UNSET


def _freeze_location(
    loc: LocationBuilder | None, chain: list[dict[str, Any]], hb: HttpBuilder
) -> LocationConf:
    kw: dict[str, Any] = {}
    names = {n for level in chain for n in level}
    for name in names:
        if name in (
            "proxy_pass",
            "return",
            "keepalive_timeout",
            "access_log",
            "proxy_redirect",
            "wsgate_status",
            "wsgate_metrics",
        ):
            continue
        if name in _LOCATION_FIELDS:
            value = _lookup(chain, name)
            kw[name] = tuple(value) if name in _ARRAYS else value
    ka = _lookup(chain, "keepalive_timeout")
    if ka is not _UNSET:
        kw["keepalive_timeout"], kw["keepalive_header"] = ka
    logs = _lookup(chain, "access_log")
    if logs is not _UNSET:
        kw["access_log"] = tuple(x for x in logs if isinstance(x, AccessLogConf))
    else:
        from wsgate.conf.model import LogFormat
        from wsgate.conf.table import COMBINED
        from wsgate.vars.compile import compile_value

        kw["access_log"] = (
            AccessLogConf("/dev/stdout", LogFormat("combined", "default", compile_value(COMBINED))),
        )
    kw["proxy_redirect"] = _proxy_redirect(chain)
    kw["ws_frames"] = _ws_frames(kw)
    if loc is None:
        # A server-level "return" runs before any location is searched (server rewrite
        # phase); it is not inherited by locations.
        ret = chain[-1].get("return")
        if ret is not None:
            kw["return_"] = ret
        return LocationConf(**kw)
    pp = loc.values.get("proxy_pass")
    if pp is not None:
        url, scheme, hostport, uri, uri_value, _ = pp
        host, sep, port = hostport.rpartition(":")
        key = host.lower() if sep and not hostport.endswith("]") else hostport.lower()
        if key not in hb.upstreams or hb.upstreams[key].implicit:
            key = hostport.lower()
        default_port = "443" if scheme == "https" else "80"
        proxy_host = host if sep and port == default_port else hostport
        kw["proxy_pass"] = ProxyPass(url, scheme, key, proxy_host, uri, uri_value)
        # ngx_http_proxy_pass: any location whose name ends in "/" (exact ones too; the
        # flag is never looked at for regex locations).
        kw["auto_redirect"] = loc.regex is None and loc.name.endswith("/")
    ret = loc.values.get("return")
    if ret is not None:
        kw["return_"] = ret
    # Like a content handler in nginx, the status page belongs to its own location only.
    kw["wsgate_status"] = bool(loc.values.get("wsgate_status"))
    kw["wsgate_metrics"] = bool(loc.values.get("wsgate_metrics"))
    nested = tuple(_freeze_location(child, [*chain, child.values], hb) for child in loc.locations)
    return LocationConf(
        name=loc.name,
        modifier=loc.modifier,
        regex=loc.regex,
        locations=nested,
        file=loc.file,
        line=loc.line,
        **kw,
    )


def _ws_frames(kw: dict[str, Any]) -> bool:
    """Whether a tunnel of this location must track frames (proxy/wstunnel.py): one of the
    websocket_* features is on, or an access log prints a ``$ws_*`` variable."""
    if (
        kw.get("websocket_ping_interval")
        or kw.get("websocket_max_message_size")
        or kw.get("websocket_max_frame_size")
        or kw.get("websocket_drain") is not None
    ):
        return True
    return any(
        name.startswith("ws_") for log in kw["access_log"] for name in log.format.template.variables
    )


def _proxy_redirect(chain: list[dict[str, Any]]) -> tuple[RedirectRule, ...]:
    """The ``proxy_redirect`` rules in force at the end of ``chain``
    (``ngx_http_proxy_merge_loc_conf``, level by level): ``off`` clears them and is
    inherited; a level with rules replaces the inherited ones; a level with none inherits
    them, and when there are none yet, a level holding a ``proxy_pass`` without variables
    gets that proxy_pass's ``default`` rule (which its nested locations then inherit)."""
    enabled = True
    rules: tuple[RedirectRule, ...] | None = None
    for level in chain:
        value = level.get("proxy_redirect")
        if value == "off":
            enabled, rules = False, None
        elif value is not None:
            enabled, rules = True, tuple(value)
        pp = level.get("proxy_pass")
        if enabled and rules is None and pp is not None and pp[5] is not None:
            rules = (pp[5],)
    return rules if enabled and rules is not None else ()
