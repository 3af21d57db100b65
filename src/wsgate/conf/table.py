"""The directive table: name -> contexts, arity, handler (nginx's ``ngx_command_t`` array).

``dispatch`` emits every generic error in nginx's words (unknown directive, not allowed
here, not terminated, no opening brace, invalid number of arguments); handlers emit the
directive-specific ones. ``docs/directives.md`` is generated from :data:`DIRECTIVES`
(``python -m wsgate.conf.table``), so the reference cannot drift from the code.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsgate.conf.builders import (
    Ctx,
    HttpBuilder,
    LocationBuilder,
    MapBuilder,
    ServerBuilder,
    UpstreamBuilder,
)
from wsgate.conf.lexer import End
from wsgate.conf.model import (
    HealthCheckConf,
    ListenConf,
    NextUpstream,
    PeerConf,
    RedirectRule,
    WebSocketDrain,
)
from wsgate.conf.parser import Parser, Stmt
from wsgate.conf.units import parse_offset, parse_size, parse_time
from wsgate.errors import ConfigError
from wsgate.vars.compile import (
    ComplexValue,
    VariableSyntaxError,
    ascii_lower,
    compile_value,
    wire,
)

__all__ = ["DIRECTIVES", "Directive", "dispatch", "resolve_host"]

Handler = Callable[[Parser, Ctx, Stmt], None]

MAIN, EVENTS, HTTP, SERVER, LOCATION, UPSTREAM = (
    "main",
    "events",
    "http",
    "server",
    "location",
    "upstream",
)
LOC_LEVELS = frozenset({HTTP, SERVER, LOCATION})
SRV_LEVELS = frozenset({HTTP, SERVER})


@dataclass(frozen=True, slots=True)
class Directive:
    """One row of the table."""

    name: str
    contexts: frozenset[str]
    min_args: int
    max_args: int | None  # None: no upper bound
    handler: Handler
    block: bool = False
    default: str = ""
    note: str = ""  # difference from nginx, for docs/directives.md


def resolve_host(host: str, port: int) -> list[str]:
    """Resolve ``host`` once at load as nginx does (IPv4 addresses first, then IPv6).

    Returns numeric addresses, possibly empty (the caller reports "host not found").
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    v4 = [str(i[4][0]) for i in infos if i[0] == socket.AF_INET]
    v6 = [str(i[4][0]) for i in infos if i[0] == socket.AF_INET6]
    seen: list[str] = []
    for a in v4 + v6:  # ngx_inet_resolve_host: AF_INET first, then AF_INET6
        if a not in seen:
            seen.append(a)
    return seen


# The resolver used by handlers; tests may replace it with a table.
RESOLVER: list[Callable[[str, int], list[str]]] = [resolve_host]


def dispatch(p: Parser, ctx: Ctx, d: Stmt) -> None:
    """Check ``d`` against the table and run its handler (``ngx_conf_handler``)."""
    if ctx.kind == "map":
        _map_entry(p, ctx, d)
        return
    if ctx.kind == "types":
        _types_entry(p, ctx, d)
        return
    rows = DIRECTIVES.get(d.name)
    if rows is None:
        raise d.error(f'unknown directive "{d.name}"')
    row = next((r for r in rows if ctx.kind in r.contexts), None)
    if row is None:
        raise d.error(f'"{d.name}" directive is not allowed here')
    if not row.block and d.end is not End.OK:
        raise d.error(f'directive "{d.name}" is not terminated by ";"')
    if row.block and d.end is not End.BLOCK_START:
        raise d.error(f'directive "{d.name}" has no opening "{{"')
    n = len(d.args)
    if n < row.min_args or (row.max_args is not None and n > row.max_args):
        raise d.error(f'invalid number of arguments in "{d.name}" directive')
    row.handler(p, ctx, d)


# ---------------------------------------------------------------------------------------
# Generic setters (ngx_conf_set_*_slot). Each stores under the directive name.


def _fresh(ctx: Ctx, d: Stmt) -> None:
    """``is duplicate`` for a directive already set at this level. nginx's slot handlers
    check this before they look at the value (``ngx_conf_set_flag_slot`` and the others)."""
    if d.name in ctx.values:
        raise d.error(f'"{d.name}" directive is duplicate')


def _once(ctx: Ctx, d: Stmt, value: Any) -> None:
    _fresh(ctx, d)
    ctx.values[d.name] = value


MAX_INT = 2**63 - 1  # NGX_MAX_INT_T_VALUE


def atoi(text: str) -> int | None:
    """``ngx_atoi``: ASCII digits only, at least one, at most NGX_MAX_INT_T_VALUE."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_INT else None


def _variables(ctx: Ctx, d: Stmt, text: str) -> ComplexValue:
    try:
        cv = compile_value(text)
    except VariableSyntaxError as exc:
        raise d.error(str(exc)) from None
    if ctx.http is not None:
        ctx.http.variables_used.extend(cv.variables)
    return cv


def set_flag(p: Parser, ctx: Ctx, d: Stmt) -> None:
    _fresh(ctx, d)
    v = d.args[0].text
    if v.lower() not in ("on", "off"):
        raise d.error(f'invalid value "{v}" in "{d.name}" directive, it must be "on" or "off"')
    _once(ctx, d, v.lower() == "on")


def set_msec(p: Parser, ctx: Ctx, d: Stmt) -> None:
    _fresh(ctx, d)
    t = parse_time(d.args[0].text)
    if t is None:
        raise d.error(f'"{d.name}" directive invalid value')
    _once(ctx, d, t)


def set_sec(p: Parser, ctx: Ctx, d: Stmt) -> None:
    _fresh(ctx, d)
    t = parse_time(d.args[0].text, seconds=True)
    if t is None:
        raise d.error(f'"{d.name}" directive invalid value')
    _once(ctx, d, t)


def set_size(p: Parser, ctx: Ctx, d: Stmt) -> None:
    _fresh(ctx, d)
    s = parse_size(d.args[0].text)
    if s is None:
        raise d.error(f'"{d.name}" directive invalid value')
    _once(ctx, d, s)


def set_offset(p: Parser, ctx: Ctx, d: Stmt) -> None:
    _fresh(ctx, d)
    s = parse_offset(d.args[0].text)
    if s is None:
        raise d.error(f'"{d.name}" directive invalid value')
    _once(ctx, d, s)


def set_num(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_conf_set_num_slot
    _fresh(ctx, d)
    v = atoi(d.args[0].text)
    if v is None:
        raise d.error(f'"{d.name}" directive invalid number')
    _once(ctx, d, v)


def worker_connections(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_event_connections words its own error.
    _fresh(ctx, d)
    v = d.args[0].text
    n = atoi(v)
    if n is None:
        raise d.error(f'invalid number "{v}"')
    _once(ctx, d, n)


def set_str(p: Parser, ctx: Ctx, d: Stmt) -> None:
    _once(ctx, d, d.args[0].text)


def set_value(p: Parser, ctx: Ctx, d: Stmt) -> None:
    """A string with variables, compiled now (``ngx_http_set_complex_value_slot``)."""
    _fresh(ctx, d)
    _once(ctx, d, _variables(ctx, d, d.args[0].text))


def accept(p: Parser, ctx: Ctx, d: Stmt) -> None:
    """Directives accepted for compatibility whose effect wsgate does not need."""
    _once(ctx, d, tuple(d.values))


# ---------------------------------------------------------------------------------------
# main / events


def worker_processes(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_set_worker_processes
    _fresh(ctx, d)
    v = d.args[0].text
    if v == "auto":
        _once(ctx, d, 0)
        return
    n = atoi(v)
    if n is None:
        raise d.error(f'"{d.name}" directive invalid value')
    _once(ctx, d, n)


def error_log(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_log_set_levels: every argument after the file is a level, at most one of them.
    levels = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")
    level = ""
    for w in d.args[1:]:
        if w.text not in levels:
            raise d.error(f'invalid log level "{w.text}"')
        if level:
            raise d.error(f'duplicate log level "{w.text}"')
        level = w.text
    ctx.values.setdefault("error_log", []).append((d.args[0].text, level or "error"))


def events(p: Parser, ctx: Ctx, d: Stmt) -> None:
    if ctx.main.events is not None:
        raise d.error('"events" directive is duplicate')
    ctx.main.events = {}
    p.parse_block(Ctx("events", ctx.main))


def http(p: Parser, ctx: Ctx, d: Stmt) -> None:
    if ctx.main.http is not None:
        raise d.error('"http" directive is duplicate')
    ctx.main.http = HttpBuilder()
    p.parse_block(Ctx("http", ctx.main, http=ctx.main.http))
    from wsgate.conf.build import finish_http

    # Errors found when the block closes are reported at its "}" (ngx_http_block).
    finish_http(ctx.main.http, Stmt("http", (), p.lexer.file, p.lexer.line, d.end))


# ---------------------------------------------------------------------------------------
# http


def map_block(p: Parser, ctx: Ctx, d: Stmt) -> None:
    assert ctx.http is not None
    name = d.args[1].text
    if not name.startswith("$"):
        raise d.error(f'invalid variable name "{name}"')
    var = name[1:].lower()
    source = _variables(ctx, d, d.args[0].text)
    from wsgate.conf.build import BUILTIN_VARIABLES

    if var in BUILTIN_VARIABLES:
        # ngx_http_add_variable: built-in variables cannot be changed; maps can (last wins).
        raise d.error(f'the duplicate "{var}" variable')
    m = MapBuilder(source, var)
    ctx.http.maps[var] = m
    p.parse_block(Ctx("map", ctx.main, http=ctx.http, map=m))


def _map_entry(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_map: entries are "KEY VALUE;" plus default/hostnames/volatile/include.
    m = ctx.map
    assert m is not None
    words = [d.name, *d.values]
    if d.end is not End.OK:
        raise d.error('unexpected "{"')
    if len(words) == 1 and words[0] in ("hostnames", "volatile"):
        setattr(m, words[0], True)
        return
    if len(words) != 2:
        raise d.error("invalid number of the map parameters")
    key, value = words
    if key == "include":
        p._include(Stmt("include", d.args, d.file, d.line, d.end), ctx)
        return
    cv = _variables(ctx, d, value)
    if key == "default":
        if m.default is not None:
            raise d.error("duplicate default map parameter")
        m.default = cv
        return
    if key.startswith("\\"):
        key = key[1:]
    elif key.startswith("~"):
        flags = 0
        pattern = key[1:]
        if pattern.startswith("*"):
            flags, pattern = re.IGNORECASE, pattern[1:]
        try:
            # Matched against wire strings (one character per byte), like the values.
            m.regexes.append((re.compile(_pcre_to_python(wire(pattern)), flags), cv))
        except re.error as exc:
            raise d.error(regex_error(exc, pattern)) from None
        return
    elif m.hostnames and (key.startswith(("*.", ".")) or key.endswith(".*")):
        low = ascii_lower(wire(key))
        if key.endswith(".*"):
            m.wildcards_tail.append((low[:-1], cv))
            return
        # ".example.com" is also the exact name "example.com"; "*.example.com" is not.
        suffix = low[1:] if low.startswith("*") else low
        if any(s == suffix for s, _ in m.wildcards_head) or (
            low.startswith(".") and low[1:] in m.exact
        ):
            raise d.error(f'conflicting parameter "{key.lower()}"')
        if low.startswith("."):
            m.exact[low[1:]] = cv
        m.wildcards_head.append((suffix, cv))
        return
    low = ascii_lower(wire(key))
    if low in m.exact:
        raise d.error(f'conflicting parameter "{key.lower()}"')
    m.exact[low] = cv


def types_block(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_core_types: "TYPE EXT...;" lines; several blocks at one level add up.
    ctx.values.setdefault("types", {})
    p.parse_block(Ctx("types", ctx.main, http=ctx.http, server=ctx.server, location=ctx.location))


def _types_entry(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_core_type: extensions are lower-cased; a repeated one takes the last type
    # (nginx warns "duplicate extension").
    if d.end is not End.OK:
        raise d.error('unexpected "{"')
    if d.name == "include":
        p._include(Stmt("include", d.args, d.file, d.line, d.end), ctx)
        return
    level = ctx.location or ctx.server or ctx.http
    assert level is not None
    types: dict[str, str] = level.values["types"]
    for w in d.args:
        types[ascii_lower(w.text)] = d.name


def _pcre_to_python(pattern: str) -> str:
    """Translate the PCRE spellings nginx configs use into Python's ``re`` syntax."""
    return re.sub(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", r"(?P<\1>", pattern)


def upstream_block(p: Parser, ctx: Ctx, d: Stmt) -> None:
    assert ctx.http is not None
    name = d.args[0].text
    key = name.lower()
    if key in ctx.http.upstreams and not ctx.http.upstreams[key].implicit:
        raise d.error(f'duplicate upstream "{name}"')
    u = UpstreamBuilder(name, d.file, d.line)
    ctx.http.upstreams[key] = u
    p.parse_block(Ctx("upstream", ctx.main, http=ctx.http, upstream=u))
    if not u.peers:
        raise p.lexer.error("no servers are inside upstream")


@dataclass(frozen=True, slots=True)
class Url:
    """An address as ``ngx_parse_url`` splits it (without resolving the host)."""

    host: str  # without brackets; "*" for a listen given as a port alone
    port: int
    no_port: bool  # the default port was used
    uri: str | None  # from the first "/" (or "?"), with uri_part only
    ipv6: bool


class UrlError(ValueError):
    """``u->err`` of ``ngx_parse_url``: "invalid host", "invalid port", "no host"..."""


def parse_url(text: str, default_port: int, *, listen: bool = False, uri_part: bool = False) -> Url:
    """Split ``host[:port][/uri]`` or ``[v6][:port][/uri]`` as ``ngx_parse_inet_url`` and
    ``ngx_parse_inet6_url`` do (src/core/ngx_inet.c), with their errors."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise UrlError("invalid host")
        rest, uri = text[close + 1 :], None
        slash = rest.find("/")
        if slash >= 0:
            if listen or not uri_part:
                raise UrlError("invalid host")
            rest, uri = rest[:slash], rest[slash:]
        port, no_port = default_port, True
        if rest:
            if rest[0] != ":":
                raise UrlError("invalid host")
            port, no_port = _url_port(rest[1:]), False
        host = text[1:close]
        if not host:
            raise UrlError("no host")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UrlError("invalid IPv6 address") from None
        return Url(host, port, no_port, uri, True)
    colon, last = text.find(":"), len(text)
    cut = [i for i in (text.find("/"), text.find("?")) if i >= 0]
    uri = None
    if cut:
        if listen or not uri_part:
            raise UrlError("invalid host")
        last = min(cut)
        uri = text[last:]
        if last < colon:
            colon = -1
    if colon >= 0:
        port, no_port, last = _url_port(text[colon + 1 : last]), False, colon
    elif uri is None and listen and atoi(text) is not None:
        return Url("*", _url_port(text), False, None, False)  # a port alone
    else:
        port, no_port = default_port, True
    if last == 0:
        raise UrlError("no host")
    return Url(text[:last], port, no_port, uri, False)


def _url_port(text: str) -> int:
    n = atoi(text)
    if n is None or not 1 <= n <= 65535:
        raise UrlError("invalid port")
    return n


def _peer_name(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve_peers(
    d: Stmt, address: str, default_port: int = 80, shown: str | None = None, **params: Any
) -> list[PeerConf]:
    """Resolve an upstream address to one PeerConf per address (ngx_parse_url with
    resolution). ``shown`` is what nginx prints in "host not found" (default: as written).
    """
    if address[:5].lower() == "unix:":
        raise d.error(f'unix domain sockets are not supported by wsgate in "{address}"')
    try:
        url = parse_url(address, default_port)
    except UrlError as exc:
        raise d.error(f'{exc} in upstream "{address}"') from None
    host, port = url.host, url.port
    addrs = RESOLVER[0](host, port)
    if not addrs:
        raise d.error(f'host not found in upstream "{shown or address}"')
    return [PeerConf(_peer_name(a, port), a, port, address, **params) for a in addrs]


def regex_error(exc: re.error, pattern: str) -> str:
    """A Python ``re`` error in PCRE2's words where they differ (``pcre2_compile()``)."""
    msg = exc.msg
    if msg.startswith("missing ), unterminated subpattern"):
        msg = "missing closing parenthesis"
    elif msg.startswith("unbalanced parenthesis"):
        msg = "unmatched closing parenthesis"
    text = f'pcre2_compile() failed: {msg} in "{pattern}"'
    pos = exc.pos
    if msg == "unmatched closing parenthesis" and pos is not None and pos < len(pattern):
        text += f' at "{pattern[pos:]}"'
    return text


def upstream_server(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_upstream_server
    u = ctx.upstream
    assert u is not None
    params: dict[str, Any] = {}
    for w in d.args[1:]:
        t = w.text
        key, eq, val = t.partition("=")
        if eq and key in ("weight", "max_fails", "max_conns"):
            n = atoi(val)
            if n is None or (key == "weight" and n == 0):
                raise d.error(f'invalid parameter "{t}"')
            params[key] = n
        elif eq and key == "fail_timeout":
            ft = parse_time(val, seconds=True)
            if ft is None:
                raise d.error(f'invalid parameter "{t}"')
            params[key] = ft
        elif t in ("down", "backup"):
            if t == "backup" and u.method in ("ip_hash", "hash", "random"):
                raise d.error('balancing method does not support parameter "backup"')
            params[t] = True
        else:
            raise d.error(f'invalid parameter "{t}"')
    u.peers.extend(resolve_peers(d, d.args[0].text, **params))


def _balancing_method(ctx: Ctx, method: str, args: tuple[str, ...] = ()) -> None:
    """Set the group's method; the last method directive wins.

    nginx warns ``load balancing method redefined`` when a group names a second method
    (``[warn]``, the configuration still loads); wsgate has no warning channel at load time
    and says nothing. Which ``server`` parameters a method refuses is checked by
    :func:`upstream_server`, for the server lines that follow.
    """
    u = ctx.upstream
    assert u is not None
    u.method = method
    u.method_args = args
    u.hash_key = None
    # A method named after `keepalive` replaces the group's init_upstream, which the
    # keepalive module had wrapped: the cache is off (nginx's docs: methods go first).
    u.keepalive = 0


def upstream_keepalive(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_upstream_keepalive: `keepalive N;`, N a positive number; once per group.
    u = ctx.upstream
    assert u is not None
    if u.keepalive_seen:
        raise d.error(f'"{d.name}" directive is duplicate')
    v = d.args[0].text
    if not v.isdigit() or not v.isascii() or int(v) == 0:
        raise d.error(f'invalid value "{v}" in "{d.name}" directive')
    u.keepalive = int(v)
    u.keepalive_seen = True


def upstream_no_args_method(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_upstream_ip_hash, ngx_http_upstream_least_conn
    _balancing_method(ctx, d.name)


def upstream_hash(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_upstream_hash: KEY is compiled first, then the method is set, then the
    # second argument is checked.
    key = _variables(ctx, d, d.args[0].text)
    args: tuple[str, ...] = ()
    if len(d.args) == 2:
        if d.args[1].text != "consistent":
            raise d.error(f'invalid parameter "{d.args[1].text}"')
        args = ("consistent",)
    _balancing_method(ctx, "hash", args)
    assert ctx.upstream is not None
    ctx.upstream.hash_key = key


def upstream_random(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_upstream_random: "random", "random two", "random two least_conn".
    words = tuple(d.values)
    if words and words[0] != "two":
        raise d.error(f'invalid parameter "{words[0]}"')
    if len(words) == 2 and words[1] != "least_conn":
        raise d.error(f'invalid parameter "{words[1]}"')
    _balancing_method(ctx, "random", words)


def websocket_health_check(p: Parser, ctx: Ctx, d: Stmt) -> None:
    """``websocket_health_check [interval=T] [timeout=T] [fails=N] [passes=N] [uri=U]
    [ping];`` (wsgate's own, docs/health-checks.md).

    Parameters are read as NGINX Plus reads ``health_check``'s: ``NAME=VALUE`` words in any
    order, the last of a repeated one wins, any word that is not one of them or has a bad
    value is ``invalid parameter "WORD"``. Times are ``ngx_parse_time`` values in
    milliseconds and must not be zero; counts are positive integers; the URI must start
    with "/" and holds no spaces or control characters (it goes on the request line as is).
    """
    u = ctx.upstream
    assert u is not None
    if u.websocket_health_check is not None:
        raise d.error(f'"{d.name}" directive is duplicate')
    times: dict[str, float] = {}
    counts: dict[str, int] = {}
    uri = "/"
    ping = False
    for w in d.args:
        t = w.text
        key, eq, val = t.partition("=")
        if eq and key in ("interval", "timeout"):
            seconds = parse_time(val)
            if not seconds:  # None (bad value) or 0
                raise d.error(f'invalid parameter "{t}"')
            times[key] = seconds
        elif eq and key in ("fails", "passes"):
            if not val.isdigit() or not val.isascii() or int(val) == 0:
                raise d.error(f'invalid parameter "{t}"')
            counts[key] = int(val)
        elif eq and key == "uri":
            if not val.startswith("/") or any(not "!" <= c <= "~" for c in val):
                raise d.error(f'invalid parameter "{t}"')
            uri = val
        elif t == "ping":
            ping = True
        else:
            raise d.error(f'invalid parameter "{t}"')
    interval = times.get("interval", 5.0)
    u.websocket_health_check = HealthCheckConf(
        interval=interval,
        timeout=times.get("timeout", interval),
        fails=counts.get("fails", 1),
        passes=counts.get("passes", 1),
        uri=uri,
        ping=ping,
    )


def server_block(p: Parser, ctx: Ctx, d: Stmt) -> None:
    assert ctx.http is not None
    s = ServerBuilder(d.file, d.line)
    ctx.http.servers.append(s)
    p.parse_block(Ctx("server", ctx.main, http=ctx.http, server=s))
    if not s.listen:
        s.listen.append(ListenConf("*", 80 if _is_root() else 8000))


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


def listen(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_core_listen
    s = ctx.server
    assert s is not None
    text = d.args[0].text
    if text[:5].lower() == "unix:":
        raise d.error(f'unix domain sockets are not supported by wsgate in "{text}"')
    try:
        url = parse_url(text, 80, listen=True)
    except UrlError as exc:
        raise d.error(f'{exc} in "{text}" of the "listen" directive') from None
    host, port, ipv6 = url.host, url.port, url.ipv6
    if host != "*" and not ipv6:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            addrs = [a for a in RESOLVER[0](host, port) if ":" not in a]
            if not addrs:
                raise d.error(f'host not found in "{text}" of the "listen" directive') from None
            host = addrs[0]
    default = ssl = False
    for w in d.args[1:]:
        if w.text in ("default_server", "default"):
            default = True
        elif w.text == "ssl":
            ssl = True
        elif w.text == "proxy_protocol":
            raise d.error('the "proxy_protocol" parameter is not supported by wsgate yet')
        elif w.text in ("reuseport", "deferred", "bind", "http2"):
            continue
        else:
            _listen_option(d, w.text)
    conf = ListenConf(host or "*", port, default, ipv6, ssl, d.file, d.line)
    if any((lc.host, lc.port) == (conf.host, conf.port) for lc in s.listen):
        raise d.error(f"a duplicate listen {conf.text}")
    # ngx_http_add_addresses: one default server per address
    assert ctx.http is not None
    if default and any(
        lc.default_server and (lc.host, lc.port, lc.ipv6) == (conf.host, conf.port, conf.ipv6)
        for other in ctx.http.servers
        for lc in other.listen
    ):
        raise d.error(f"a duplicate default server for {conf.text}")
    s.listen.append(conf)


def _listen_option(d: Stmt, text: str) -> None:
    """The ``listen`` parameters wsgate accepts without using, checked as
    ``ngx_http_core_listen`` checks them (``invalid parameter`` for any other)."""
    key, eq, value = text.partition("=")
    if eq and key == "backlog":
        if not atoi(value):
            raise d.error(f'invalid backlog "{text}"')
    elif eq and key in ("rcvbuf", "sndbuf"):
        if parse_size(value) is None:
            raise d.error(f'invalid {key} "{text}"')
    elif text.startswith("ipv6only=o"):
        if text[10:] not in ("n", "ff"):
            raise d.error(f'invalid ipv6only flags "{text[9:]}"')
    elif eq and key == "so_keepalive":
        if value not in ("on", "off"):
            # keepidle:keepintvl:keepcnt, each may be empty, not all zero
            idle, _, rest = value.partition(":")
            intvl, _, cnt = rest.partition(":")
            parts = [
                parse_time(idle, seconds=True) if idle else 0,
                parse_time(intvl, seconds=True) if intvl else 0,
                atoi(cnt) if cnt else 0,
            ]
            if any(x is None for x in parts) or not any(parts):
                raise d.error(f'invalid so_keepalive value: "{value}"')
    else:
        raise d.error(f'invalid parameter "{text}"')


def server_name(p: Parser, ctx: Ctx, d: Stmt) -> None:
    s = ctx.server
    assert s is not None
    # ngx_http_core_server_name
    for w in d.args:
        name = w.text
        if (name.startswith("*") and (len(name) < 3 or name[1] != ".")) or name == ".":
            raise d.error(f'server name "{name}" is invalid')
        if name.lower() == "$hostname":
            name = socket.gethostname()
        if name.startswith("~"):
            if name == "~":
                raise d.error('empty regex in server name "~"')
            try:
                re.compile(_pcre_to_python(name[1:]))
            except re.error as exc:
                raise d.error(regex_error(exc, name[1:])) from None
        s.server_name.append(name if name.startswith("~") else name.lower())


def location(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_core_location
    args = d.values
    modifier, name = ("", args[0]) if len(args) == 1 else (args[0], args[1])
    if len(args) == 1 and args[0].startswith(("=", "~", "^~")) and args[0] not in ("=", "~"):
        for mod in ("^~", "~*", "=", "~"):
            if args[0].startswith(mod) and len(args[0]) > len(mod):
                modifier, name = mod, args[0][len(mod) :]
                break
    if modifier not in ("", "=", "^~", "~", "~*"):
        raise d.error(f'invalid location modifier "{modifier}"')
    if name.startswith("@"):
        raise d.error(f'named locations are not supported by wsgate in "{name}"')
    regex = None
    if modifier in ("~", "~*"):
        try:
            regex = re.compile(_pcre_to_python(name), re.IGNORECASE if modifier == "~*" else 0)
        except re.error as exc:
            raise d.error(regex_error(exc, name)) from None
    loc = LocationBuilder(name, modifier, regex, d.file, d.line)
    parent = ctx.location
    if parent is not None:
        if parent.modifier == "=":
            raise d.error(f'location "{name}" cannot be inside the exact location "{parent.name}"')
        # A static location must start with its parent's name, even under a regex
        # parent (whose "name" is the regex text).
        if regex is None and not name.startswith(parent.name):
            raise d.error(f'location "{name}" is outside location "{parent.name}"')
    # Duplicates are found when the http block is read (build.finish_http).
    siblings = parent.locations if parent is not None else _server(ctx).locations
    siblings.append(loc)
    p.parse_block(Ctx("location", ctx.main, http=ctx.http, server=ctx.server, location=loc))


def _server(ctx: Ctx) -> ServerBuilder:
    assert ctx.server is not None
    return ctx.server


def proxy_pass(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_proxy_pass
    loc = ctx.location
    assert loc is not None and ctx.http is not None
    if "proxy_pass" in loc.values:
        raise d.error('"proxy_pass" directive is duplicate')
    url = d.args[0].text
    low = url.lower()
    if low.startswith("http://"):
        scheme, rest = "http", url[7:]
    elif low.startswith("https://"):
        scheme, rest = "https", url[8:]
    else:
        raise d.error("invalid URL prefix")
    if rest[:5].lower() == "unix:":
        raise d.error(f'unix domain sockets are not supported by wsgate in "{url}"')
    slash = rest.find("/")
    hostport, uri = (rest, None) if slash < 0 else (rest[:slash], rest[slash:])
    if "$" not in url:
        # ngx_http_upstream_add -> ngx_parse_url with uri_part, not resolved yet
        try:
            parsed = parse_url(rest, 443 if scheme == "https" else 80, uri_part=True)
        except UrlError as exc:
            raise d.error(f'{exc} in upstream "{rest}"') from None
        uri = parsed.uri
        hostport = rest if uri is None else rest[: len(rest) - len(uri)]
    uri_value: ComplexValue | None = None
    if "$" in hostport:
        raise d.error(
            f'variables in the host part of "proxy_pass" are not supported by wsgate in "{url}"'
        )
    if "$" in url:
        # Variables in the URI part only: the URI is evaluated per request and sent as it
        # comes out; nginx makes none of the static checks below (ngx_http_proxy_pass
        # returns right after compiling the script).
        assert uri is not None
        uri_value = _variables(ctx, d, uri)
    elif uri is not None and loc.regex is not None:
        raise d.error(
            '"proxy_pass" cannot have URI part in location given by regular expression, '
            'or inside named location, or inside "if" statement, or inside "limit_except" block'
        )
    # The last item is the rule "proxy_redirect default" stands for (none with variables).
    default = default_redirect(url, uri, loc) if uri_value is None else None
    loc.values["proxy_pass"] = (url, scheme, hostport, uri, uri_value, default)
    ctx.http.proxy_passes.append((loc.values["proxy_pass"], d.file, d.line))


def proxy_redirect(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_proxy_redirect: "off", "default", "FROM TO" or "~REGEX TO" / "~*REGEX TO";
    # rules accumulate at one level. The "default" rule made when no level sets any is
    # added by conf.build (ngx_http_proxy_merge_loc_conf).
    store = ctx.values
    rules = store.get("proxy_redirect")
    if rules == "off":
        raise d.error('"proxy_redirect" directive is duplicate')
    first = d.args[0].text
    if len(d.args) == 1:
        if first == "off":
            if rules is not None:
                raise d.error('"proxy_redirect" directive is duplicate')
            store["proxy_redirect"] = "off"
            return
        if first != "default":
            raise d.error(f'invalid parameter "{first}"')
    rule: RedirectRule
    if len(d.args) == 1:
        pp = ctx.location.values.get("proxy_pass") if ctx.location is not None else None
        if pp is not None and pp[4] is not None:
            raise d.error(
                '"proxy_redirect default" cannot be used with "proxy_pass" directive with variables'
            )
        if pp is None:
            raise d.error(
                '"proxy_redirect default" should be placed after the "proxy_pass" directive'
            )
        rule = pp[5]
    else:
        replacement = _variables(ctx, d, d.args[1].text)
        if first.startswith("~"):
            pattern, flags = first[1:], 0
            if pattern.startswith("*"):
                pattern, flags = pattern[1:], re.IGNORECASE
            try:
                regex = re.compile(_pcre_to_python(pattern), flags)
            except re.error as exc:
                raise d.error(regex_error(exc, pattern)) from None
            rule = RedirectRule(replacement, regex=regex)
        else:
            rule = RedirectRule(replacement, prefix=_variables(ctx, d, first))
    store.setdefault("proxy_redirect", []).append(rule)


def default_redirect(url: str, uri: str | None, loc: LocationBuilder) -> RedirectRule:
    """``proxy_redirect default`` for ``proxy_pass URL`` in ``loc``: with a URI part the
    URL becomes the location's name, without one ``URL/`` becomes ``/``."""
    if uri is not None:
        name = "" if loc.regex is not None else loc.name
        return RedirectRule(_literal(name), prefix=_literal(url))
    return RedirectRule(_literal("/"), prefix=_literal(url + "/"))


def _literal(text: str) -> ComplexValue:
    """A value without variables (``$`` in ``text`` is not a reference)."""
    return ComplexValue(text, (wire(text),))


def proxy_set_header(p: Parser, ctx: Ctx, d: Stmt) -> None:
    name, value = d.args[0].text, d.args[1].text
    try:
        cv = _variables(ctx, d, value)
    except ConfigError as exc:
        # nginx compiles these values when the http block is merged, so it reports a bad
        # "$" at the line of the "}" that closes http (ngx_http_proxy_merge_loc_conf).
        assert ctx.http is not None
        if ctx.http.deferred_error is None:
            ctx.http.deferred_error = exc.message
        cv = ComplexValue(value, (value,))
    ctx.values.setdefault("proxy_set_header", []).append((name, cv))


def proxy_http_version(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_conf_set_enum_slot
    _fresh(ctx, d)
    v = d.args[0].text
    if v not in ("1.0", "1.1"):
        raise d.error(f'invalid value "{v}"')
    _once(ctx, d, v)


_NEXT_UPSTREAM = {
    "error": NextUpstream.ERROR,
    "timeout": NextUpstream.TIMEOUT,
    "invalid_header": NextUpstream.INVALID_HEADER,
    "http_500": NextUpstream.HTTP_500,
    "http_502": NextUpstream.HTTP_502,
    "http_503": NextUpstream.HTTP_503,
    "http_504": NextUpstream.HTTP_504,
    "http_403": NextUpstream.HTTP_403,
    "http_404": NextUpstream.HTTP_404,
    "http_429": NextUpstream.HTTP_429,
    "non_idempotent": NextUpstream.NON_IDEMPOTENT,
    "off": NextUpstream.OFF,
}


def proxy_next_upstream(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_conf_set_bitmask_slot: names compare without case; a second line at the same
    # level adds to the first; "off" wins when the level is merged.
    flags = ctx.values.get(d.name, NextUpstream.NONE)
    for w in d.args:
        f = _NEXT_UPSTREAM.get(w.text.lower())
        if f is None:
            raise d.error(f'invalid value "{w.text}"')
        flags |= f
    if flags & NextUpstream.OFF:
        flags = NextUpstream.OFF
    ctx.values[d.name] = flags


def proxy_upgrade_protocols(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # wsgate's own: which Upgrade tokens are forwarded (http.upgrade); "any" = nginx.
    tokens = tuple(w.text.lower() for w in d.args)
    if "any" in tokens and len(tokens) > 1:
        raise d.error('"any" must be the only value of "proxy_upgrade_protocols"')
    _once(ctx, d, tokens)


def stub_status(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_set_stub_status: "stub_status;" (the old "stub_status on;" still parses)
    _once(ctx, d, True)


def wsgate_status(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # wsgate's own: "wsgate_status;" serves the live status page (proxy/status.py)
    _once(ctx, d, True)


def wsgate_metrics(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # wsgate's own: "wsgate_metrics;" answers with the Prometheus metrics (proxy/metrics.py)
    _once(ctx, d, True)


def limit_conn_zone(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_limit_conn_zone: "limit_conn_zone KEY zone=NAME:SIZE;"
    assert ctx.http is not None
    key = _variables(ctx, d, d.args[0].text)
    spec = d.args[1].text
    if not spec.startswith("zone="):
        raise d.error(f'invalid parameter "{spec}"')
    name, sep, size_text = spec[5:].partition(":")
    if not sep:
        raise d.error(f'invalid zone size "{spec}"')
    size = parse_size(size_text)
    if size is None:
        raise d.error(f'invalid zone size "{spec}"')
    if size < 8 * 4096:  # 8 * ngx_pagesize
        raise d.error(f'zone "{spec}" is too small')
    # ngx_shared_memory_add: a zone named by limit_conn first has no size yet.
    declared = ctx.http.zones.get(name, 0)
    if declared and declared != size:
        raise d.error(
            f'the size {size} of shared memory zone "{name}" conflicts with already '
            f"declared size {declared}"
        )
    ctx.http.zones[name] = size
    zones = ctx.values.get("limit_conn_zone", ())
    for zone, bound in zones:
        if zone == name:
            raise d.error(f'limit_conn_zone "{name}" is already bound to key "{bound.text}"')
    ctx.values["limit_conn_zone"] = (*zones, (name, key))


def limit_conn(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_limit_conn: "limit_conn ZONE NUMBER;", several per level, one per zone.
    # The zone may be defined later in the http block; one never defined has no size,
    # which nginx finds after "syntax is ok" (build.finish).
    name, number = d.args[0].text, d.args[1].text
    assert ctx.http is not None
    ctx.http.zones.setdefault(name, 0)
    limits = ctx.values.get("limit_conn", ())
    if any(z == name for z, _ in limits):
        raise d.error('"limit_conn" directive is duplicate')
    n = atoi(number)
    if not n:
        raise d.error(f'invalid number of connections "{number}"')
    if n > 65535:
        raise d.error("connection limit must be less 65536")
    ctx.values["limit_conn"] = (*limits, (name, n))


# RFC 6455 §7.4: the codes an endpoint may send in a Close frame (1004-1006 and 1015 are
# reserved; 1012-1014 are registered with IANA; 3000-4999 are for libraries and apps).
def _sendable_close_code(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    code = int(text)
    if 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999:
        return code
    return None


def websocket_drain(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # wsgate's own: "websocket_drain off | on [quit=CODE] [reload=CODE] [retry_after=TIME]"
    flag = d.args[0].text.lower()
    if flag not in ("on", "off"):
        raise d.error(
            f'invalid value "{d.args[0].text}" in "{d.name}" directive, it must be "on" or "off"'
        )
    if flag == "off":
        if len(d.args) > 1:
            raise d.error(f'invalid parameter "{d.args[1].text}"')
        _once(ctx, d, None)
        return
    values: dict[str, int] = {}
    for w in d.args[1:]:
        key, sep, value = w.text.partition("=")
        if not sep or key not in ("quit", "reload", "retry_after") or key in values:
            raise d.error(f'invalid parameter "{w.text}"')
        if key == "retry_after":
            t = parse_time(value, seconds=True)
            if t is None:
                raise d.error(f'invalid retry_after "{value}"')
            values[key] = int(t)
        else:
            code = _sendable_close_code(value)
            if code is None:
                raise d.error(f'invalid close code "{value}"')
            values[key] = code
    _once(ctx, d, WebSocketDrain(**values))


def limit_conn_status(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_conf_set_num_slot with ngx_conf_check_num_bounds
    _fresh(ctx, d)
    v = atoi(d.args[0].text)
    if v is None:
        raise d.error(f'"{d.name}" directive invalid number')
    if not 400 <= v <= 599:
        raise d.error("value must be between 400 and 599")
    _once(ctx, d, v)


def limit_conn_log_level(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_conf_set_enum_slot: the names compare without case
    _fresh(ctx, d)
    v = d.args[0].text
    if v.lower() not in ("info", "notice", "warn", "error"):
        raise d.error(f'invalid value "{v}"')
    _once(ctx, d, v.lower())


_SSL_PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")


def ssl_protocols(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_conf_set_bitmask_slot over ngx_http_ssl_protocols[]: names compare without
    # case; a second line at the same level adds its protocols.
    names = {name.lower(): name for name in _SSL_PROTOCOLS}
    chosen = set(ctx.values.get(d.name, ()))
    for w in d.args:
        name = names.get(w.text.lower())
        if name is None:
            raise d.error(f'invalid value "{w.text}"')
        chosen.add(name)
    ctx.values[d.name] = tuple(n for n in _SSL_PROTOCOLS if n in chosen)


def ssl_session_cache(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_ssl_session_cache: off | none | [builtin[:size]] [shared:name:size]
    for w in d.args:
        t = w.text
        if t in ("off", "none", "builtin") or t.startswith(("builtin:", "shared:")):
            continue
        raise d.error(f'invalid session cache "{t}"')
    ctx.values[d.name] = tuple(w.text for w in d.args)  # no "is duplicate": the last wins


def keepalive_timeout(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_core_keepalive
    _fresh(ctx, d)
    t = parse_time(d.args[0].text)
    if t is None:
        raise d.error(f'"{d.name}" directive invalid value')
    header = None
    if len(d.args) == 2:
        header = parse_time(d.args[1].text, seconds=True)
        if header is None:
            raise d.error(f'"{d.name}" directive invalid value')
    _once(ctx, d, (t, header))


def large_client_header_buffers(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_conf_set_bufs_slot
    _fresh(ctx, d)
    n, size = atoi(d.args[0].text), parse_size(d.args[1].text)
    if not n or not size:
        raise d.error(f'"{d.name}" directive invalid value')
    _once(ctx, d, (n, size))


def server_tokens(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_conf_set_enum_slot: the names compare without case
    _fresh(ctx, d)
    v = d.args[0].text
    if v.lower() not in ("on", "off", "build"):
        raise d.error(f'invalid value "{v}"')
    _once(ctx, d, v.lower() != "off")


def log_format(p: Parser, ctx: Ctx, d: Stmt) -> None:
    from wsgate.conf.model import LogFormat

    assert ctx.http is not None
    name = d.args[0].text
    if name == "combined" or name in ctx.http.log_formats:
        raise d.error(f'duplicate "log_format" name "{name}"')
    rest = d.values[1:]
    escape = "default"
    if rest and rest[0].startswith("escape="):
        escape = rest[0][7:]
        if escape not in ("default", "json", "none"):
            raise d.error(f'unknown log format escaping "{escape}"')
        rest = rest[1:]
    try:
        template = compile_value("".join(rest))
    except VariableSyntaxError as exc:
        # ngx_http_log_compile_format words a bad "$" as a parameter error.
        bad = "$" if "invalid variable name" in str(exc) else str(exc)
        raise d.error(f'invalid parameter "{bad}"') from None
    ctx.http.variables_used.extend(template.variables)
    ctx.http.log_formats[name] = LogFormat(name, escape, template)


COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)


def access_log(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_log_set_log: the format must already be defined (or be "combined").
    from wsgate.conf.model import AccessLogConf, LogFormat

    assert ctx.http is not None
    store = ctx.values.setdefault("access_log", [])
    path = d.args[0].text
    if path == "off":
        if len(d.args) != 1:
            raise d.error(f'invalid parameter "{d.args[1].text}"')
        store.append(None)
        return
    # ngx_http_script_variables_count: a path with variables is compiled first.
    variable_path = bool(_variables(ctx, d, path).variables)
    name = d.args[1].text if len(d.args) > 1 else "combined"
    if name == "combined":
        fmt = LogFormat("combined", "default", _variables(ctx, d, COMBINED))
    elif name in ctx.http.log_formats:
        fmt = ctx.http.log_formats[name]
    else:
        raise d.error(f'unknown log format "{name}"')
    # The parameters are checked as ngx_http_log_set_log checks them, and not applied.
    size = flush = 0.0
    for w in d.args[2:]:
        t = w.text
        if t.startswith("buffer="):
            size = parse_size(t[7:]) or 0
            if not size:
                raise d.error(f'invalid buffer size "{t[7:]}"')
        elif t.startswith("flush="):
            flush = parse_time(t[6:]) or 0
            if not flush:
                raise d.error(f'invalid flush time "{t[6:]}"')
        elif t == "gzip" or t.startswith("gzip="):
            size = size or 64 * 1024
            level = atoi(t[5:]) if t != "gzip" else 1
            if level is None or not 1 <= level <= 9:
                raise d.error(f'invalid compression level "{t[5:]}"')
        elif t.startswith("if="):
            _variables(ctx, d, t[3:])
        else:
            raise d.error(f'invalid parameter "{t}"')
    if flush and not size:
        raise d.error(f'no buffer is defined for access_log "{path}"')
    if variable_path:
        if size:
            raise d.error("buffered logs cannot have variables in name")
        # nginx opens such a file per request, relative to "root"; wsgate would write to
        # a file of that literal name, so it refuses the path instead.
        raise d.error(f'variables in the "access_log" path are not supported by wsgate in "{path}"')
    store.append(AccessLogConf(path, fmt))


def return_(p: Parser, ctx: Ctx, d: Stmt) -> None:
    # ngx_http_rewrite_return
    first = d.args[0].text
    if first.isdigit():
        code = int(first)
        if code > 999:
            raise d.error(f'invalid return code "{first}"')
        text = _variables(ctx, d, d.args[1].text) if len(d.args) > 1 else None
    else:
        if len(d.args) > 1:
            raise d.error(f'invalid return code "{first}"')
        if not first.startswith(("http://", "https://", "$scheme")):
            raise d.error(f'invalid return code "{first}"')
        code, text = 302, _variables(ctx, d, first)
    ctx.values["return"] = (code, text)


def add_header(p: Parser, ctx: Ctx, d: Stmt) -> None:
    always = False
    if len(d.args) == 3:
        if d.args[2].text != "always":
            raise d.error(f'invalid parameter "{d.args[2].text}"')
        always = True
    entry = (d.args[0].text, _variables(ctx, d, d.args[1].text), always)
    ctx.values.setdefault("add_header", []).append(entry)


def not_supported(p: Parser, ctx: Ctx, d: Stmt) -> None:
    raise d.error(f'"{d.name}" directive is not supported by wsgate yet')


# ---------------------------------------------------------------------------------------


def _rows(*rows: Directive) -> dict[str, list[Directive]]:
    table: dict[str, list[Directive]] = {}
    for r in rows:
        table.setdefault(r.name, []).append(r)
    return table


_ANY = frozenset({MAIN, EVENTS, HTTP, SERVER, LOCATION, UPSTREAM})
F = frozenset

# fmt: off
DIRECTIVES: dict[str, list[Directive]] = _rows(
    Directive("worker_processes", F({MAIN}), 1, 1, worker_processes, default="1"),
    Directive("pid", F({MAIN}), 1, 1, set_str, default="logs/nginx.pid"),
    Directive("error_log", F({MAIN, HTTP, SERVER, LOCATION}), 1, None, error_log,
        default="stderr error",
        note="only the main-level error_log is used; nginx's default is logs/error.log"),
    Directive("worker_shutdown_timeout", F({MAIN}), 1, 1, set_msec, default="(wait forever)"),
    Directive("worker_rlimit_nofile", F({MAIN}), 1, 1, set_num, default="-"),
    Directive("daemon", F({MAIN}), 1, 1, set_flag, default="on",
        note="wsgate always runs in the foreground"),
    Directive("master_process", F({MAIN}), 1, 1, set_flag, default="on"),
    Directive("user", F({MAIN}), 1, 2, accept, default="nobody nogroup",
        note="accepted; wsgate does not switch users"),
    Directive("events", F({MAIN}), 0, 0, events, block=True),
    Directive("http", F({MAIN}), 0, 0, http, block=True),
    Directive("worker_connections", F({EVENTS}), 1, 1, worker_connections, default="512"),
    Directive("use", F({EVENTS}), 1, 1, accept, note="the event loop is uvloop (epoll)"),
    Directive("multi_accept", F({EVENTS}), 1, 1, set_flag, default="off"),
    Directive("accept_mutex", F({EVENTS}), 1, 1, set_flag, default="off"),
    Directive("map", F({HTTP}), 2, 2, map_block, block=True),
    Directive("upstream", F({HTTP}), 1, 1, upstream_block, block=True),
    Directive("server", F({HTTP}), 0, 0, server_block, block=True),
    Directive("log_format", F({HTTP}), 2, None, log_format),
    Directive("access_log", F({HTTP, SERVER, LOCATION}), 1, None, access_log,
        default="/dev/stdout combined",
        note="buffer, flush, gzip and if are accepted, not applied; a path with variables "
        "is refused; nginx's default is logs/access.log"),
    Directive("server", F({UPSTREAM}), 1, None, upstream_server,
        default="weight=1 max_fails=1 fail_timeout=10"),
    Directive("ip_hash", F({UPSTREAM}), 0, 0, upstream_no_args_method),
    Directive("least_conn", F({UPSTREAM}), 0, 0, upstream_no_args_method),
    Directive("hash", F({UPSTREAM}), 1, 2, upstream_hash),
    Directive("random", F({UPSTREAM}), 0, 2, upstream_random),
    Directive("keepalive", F({UPSTREAM}), 1, 1, upstream_keepalive,
        note="idle connections to the group's peers cached per worker, at most N"),
    Directive("keepalive_timeout", F({UPSTREAM}), 1, 1, set_msec, default="60s",
        note="how long a cached connection may stay idle"),
    Directive("keepalive_requests", F({UPSTREAM}), 1, 1, set_num, default="1000",
        note="requests on one cached connection"),
    Directive("keepalive_time", F({UPSTREAM}), 1, 1, set_msec, default="1h",
        note="how long one cached connection may be used"),
    Directive("websocket_health_check", F({UPSTREAM}), 0, None, websocket_health_check,
        default="interval=5s fails=1 passes=1 uri=/",
        note="wsgate's own: active checks by a WebSocket handshake (and a ping), per "
        "worker; timeout defaults to interval (docs/health-checks.md)"),
    Directive("listen", F({SERVER}), 1, None, listen, default="*:80 | *:8000"),
    Directive("server_name", F({SERVER}), 1, None, server_name, default='""'),
    Directive("location", F({SERVER, LOCATION}), 1, 2, location, block=True),
    Directive("client_header_timeout", SRV_LEVELS, 1, 1, set_msec, default="60s"),
    Directive("client_header_buffer_size", SRV_LEVELS, 1, 1, set_size, default="1k"),
    Directive("large_client_header_buffers", SRV_LEVELS, 2, 2, large_client_header_buffers,
        default="4 8k"),
    Directive("underscores_in_headers", SRV_LEVELS, 1, 1, set_flag, default="off"),
    Directive("ignore_invalid_headers", SRV_LEVELS, 1, 1, set_flag, default="on"),
    Directive("proxy_pass", F({LOCATION}), 1, 1, proxy_pass,
        note="variables only in the URI part; a host that is not an upstream name is "
        "resolved at load, nginx needs a resolver at run time"),
    Directive("proxy_redirect", LOC_LEVELS, 1, 2, proxy_redirect, default="default"),
    Directive("default_type", LOC_LEVELS, 1, 1, set_str, default="text/plain",
        note="the type of `return` texts (wsgate serves no files)"),
    Directive("absolute_redirect", LOC_LEVELS, 1, 1, set_flag, default="on"),
    Directive("types", LOC_LEVELS, 0, 0, types_block, block=True,
        default="text/html html; image/gif gif; image/jpeg jpg",
        note="used for the type of `return` texts"),
    Directive("types_hash_max_size", LOC_LEVELS, 1, 1, set_num, default="1024",
        note="accepted; no hash to size"),
    Directive("types_hash_bucket_size", LOC_LEVELS, 1, 1, set_num, default="64",
        note="accepted; no hash to size"),
    Directive("port_in_redirect", LOC_LEVELS, 1, 1, set_flag, default="on"),
    Directive("server_name_in_redirect", LOC_LEVELS, 1, 1, set_flag, default="off"),
    Directive("proxy_set_header", LOC_LEVELS, 2, 2, proxy_set_header,
        default="Host $proxy_host; Connection close"),
    Directive("proxy_http_version", LOC_LEVELS, 1, 1, proxy_http_version, default="1.0"),
    Directive("proxy_connect_timeout", LOC_LEVELS, 1, 1, set_msec, default="60s"),
    Directive("proxy_read_timeout", LOC_LEVELS, 1, 1, set_msec, default="60s"),
    Directive("proxy_send_timeout", LOC_LEVELS, 1, 1, set_msec, default="60s"),
    Directive("proxy_buffer_size", LOC_LEVELS, 1, 1, set_size, default="4k"),
    Directive("proxy_buffering", LOC_LEVELS, 1, 1, set_flag, default="on",
        note="wsgate streams responses with back-pressure in either mode"),
    Directive("proxy_pass_request_headers", LOC_LEVELS, 1, 1, set_flag, default="on"),
    Directive("proxy_next_upstream", LOC_LEVELS, 1, None, proxy_next_upstream,
        default="error timeout"),
    Directive("proxy_next_upstream_tries", LOC_LEVELS, 1, 1, set_num, default="0"),
    Directive("proxy_upgrade_protocols", LOC_LEVELS, 1, None, proxy_upgrade_protocols,
        default="websocket",
        note="wsgate only: Upgrade tokens forwarded; a WebSocket 101 must carry the right "
        "Sec-WebSocket-Accept; `any` = nginx's behaviour"),
    Directive("proxy_next_upstream_timeout", LOC_LEVELS, 1, 1, set_msec, default="0"),
    Directive("websocket_ping_interval", LOC_LEVELS, 1, 1, set_msec, default="0",
        note="wsgate only: Ping the client when it has sent nothing for this long; 0: off "
        "(docs/websocket.md)"),
    Directive("websocket_ping_timeout", LOC_LEVELS, 1, 1, set_msec, default="20s",
        note="wsgate only: a pinged side that sends nothing for this long is dead"),
    Directive("websocket_ping_upstream", LOC_LEVELS, 1, 1, set_flag, default="off",
        note="wsgate only: Ping the backend too"),
    Directive("websocket_max_message_size", LOC_LEVELS, 1, 1, set_size, default="0",
        note="wsgate only: a bigger message closes its sender with 1009; 0: no limit"),
    Directive("websocket_max_frame_size", LOC_LEVELS, 1, 1, set_size, default="0",
        note="wsgate only: a bigger frame closes its sender with 1009; 0: no limit"),
    Directive("websocket_drain", LOC_LEVELS, 1, 4, websocket_drain,
        default="off",
        note="wsgate only: `on [quit=1001] [reload=1012] [retry_after=5s]`: a draining "
        "worker ends tunnels with Close frames, answers upgrades 503"),
    Directive("send_timeout", LOC_LEVELS, 1, 1, set_msec, default="60s"),
    Directive("keepalive_timeout", LOC_LEVELS, 1, 2, keepalive_timeout, default="75s"),
    Directive("keepalive_requests", LOC_LEVELS, 1, 1, set_num, default="1000"),
    Directive("keepalive_time", LOC_LEVELS, 1, 1, set_msec, default="1h"),
    Directive("client_max_body_size", LOC_LEVELS, 1, 1, set_offset, default="1m"),
    Directive("client_body_timeout", LOC_LEVELS, 1, 1, set_msec, default="60s"),
    Directive("server_tokens", LOC_LEVELS, 1, 1, server_tokens, default="on",
        note='the token is "wsgate/VERSION" instead of "nginx/VERSION"'),
    Directive("sendfile", LOC_LEVELS, 1, 1, set_flag, default="off",
        note="accepted; wsgate serves no files"),
    Directive("tcp_nopush", LOC_LEVELS, 1, 1, set_flag, default="off", note="accepted"),
    Directive("tcp_nodelay", LOC_LEVELS, 1, 1, set_flag, default="on",
        note="wsgate always sets TCP_NODELAY"),
    Directive("return", F({SERVER, LOCATION}), 1, 2, return_),
    Directive("stub_status", F({SERVER, LOCATION}), 0, 1, stub_status,
        note="numbers summed over all workers"),
    Directive("wsgate_metrics", F({LOCATION}), 0, 0, wsgate_metrics,
        note="wsgate's own: Prometheus metrics of all workers (docs/observability.md)"),
    Directive("wsgate_status", F({LOCATION}), 0, 0, wsgate_status,
        note="wsgate's own: a live HTML status page, updated over a WebSocket"),
    Directive("limit_conn_zone", F({HTTP}), 2, 2, limit_conn_zone,
        note="counted per worker (nginx shares the zone between workers)"),
    Directive("limit_conn", LOC_LEVELS, 2, 2, limit_conn),
    Directive("limit_conn_status", LOC_LEVELS, 1, 1, limit_conn_status, default="503"),
    Directive("limit_conn_log_level", LOC_LEVELS, 1, 1, limit_conn_log_level,
        default="error"),
    Directive("ssl_certificate", SRV_LEVELS, 1, 1, set_str),
    Directive("ssl_certificate_key", SRV_LEVELS, 1, 1, set_str),
    Directive("ssl_protocols", SRV_LEVELS, 1, None, ssl_protocols, default="TLSv1.2 TLSv1.3",
        note="SSLv2, SSLv3, TLSv1 and TLSv1.1 are accepted and not offered"),
    Directive("ssl_ciphers", SRV_LEVELS, 1, 1, set_str, default="HIGH:!aNULL:!MD5"),
    Directive("ssl_prefer_server_ciphers", SRV_LEVELS, 1, 1, set_flag, default="off"),
    Directive("ssl_session_cache", SRV_LEVELS, 1, 2, ssl_session_cache, default="none",
        note="resumption by OpenSSL's per-process cache and session tickets; no shared zone"),
    Directive("ssl_session_timeout", SRV_LEVELS, 1, 1, set_sec, default="5m"),
    Directive("ssl_session_tickets", SRV_LEVELS, 1, 1, set_flag, default="on"),
    Directive("proxy_ssl_verify", LOC_LEVELS, 1, 1, set_flag, default="off"),
    Directive("proxy_ssl_trusted_certificate", LOC_LEVELS, 1, 1, set_str),
    Directive("proxy_ssl_server_name", LOC_LEVELS, 1, 1, set_flag, default="off"),
    Directive("proxy_ssl_name", LOC_LEVELS, 1, 1, set_value, default="$proxy_host"),
    Directive("proxy_ssl_protocols", LOC_LEVELS, 1, None, ssl_protocols,
        default="TLSv1.2 TLSv1.3"),
    Directive("proxy_ssl_ciphers", LOC_LEVELS, 1, 1, set_str, default="DEFAULT"),
    Directive("add_header", LOC_LEVELS, 2, 3, add_header,
        note="added to 200, 201, 204, 206, 301, 302, 303, 304, 307, 308 (any with always)"),
    Directive("if", F({SERVER, LOCATION}), 1, None, not_supported, block=True),
)
# fmt: on


def render_reference() -> str:
    """``docs/directives.md``: every directive of :data:`DIRECTIVES`, generated.

    Regenerate with ``python -m wsgate.conf.table > docs/directives.md``; a test checks
    the file is current.
    """
    order = [MAIN, EVENTS, HTTP, SERVER, UPSTREAM, LOCATION]
    lines = [
        "# Supported directives",
        "",
        "Generated from `src/wsgate/conf/table.py` by `python -m wsgate.conf.table`;"
        " do not edit by hand.",
        "",
        'Any other directive is an error (`unknown directive "NAME"`), as in nginx.'
        " Directives marked *not supported yet* are recognised so that the error says so.",
        "",
        "| directive | contexts | arguments | default | notes |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(DIRECTIVES):
        for row in DIRECTIVES[name]:
            contexts = ", ".join(c for c in order if c in row.contexts)
            if row.max_args is None:
                arity = f"{row.min_args}+"
            elif row.min_args == row.max_args:
                arity = str(row.min_args)
            else:
                arity = f"{row.min_args}-{row.max_args}"
            if row.block:
                arity += " + block"
            note = row.note
            if row.handler is not_supported:
                note = "not supported yet"
            lines.append(f"| `{name}` | {contexts} | {arity} | {row.default} | {note} |")
    lines += [
        "",
        "`include` is accepted in every context (globs are expanded in sorted order,",
        "relative paths are relative to the main configuration file's directory).",
        "`map` blocks take `KEY VALUE;` entries plus `default`, `hostnames`, `volatile` and",
        "`include`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    sys.stdout.write(render_reference())
