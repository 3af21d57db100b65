"""Choose the virtual server and the location for a request (nginx-semantics.md §4.1-4.3).

Pure: built once per configuration (:class:`Router`), then asked per request. Mirrors
``ngx_http_find_virtual_server`` and ``ngx_http_core_find_location`` /
``ngx_http_core_find_static_location``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from wsgate.conf.model import HttpConf, ListenConf, LocationConf, ServerConf

__all__ = ["Found", "Match", "Router", "find_location", "normalize_host", "parse_target"]


class Match(enum.Enum):
    """How the location was found (nginx's return codes of the location search)."""

    EXACT = "exact"  # NGX_OK from an "=" location
    NOREGEX = "noregex"  # longest prefix was "^~"
    REGEX = "regex"  # NGX_OK from a regex location
    PREFIX = "prefix"  # longest prefix, no regex matched
    REDIRECT = "redirect"  # NGX_DONE: automatic trailing-slash 301 (§4.3)
    NONE = "none"  # nothing matched: the server's own configuration


@dataclass(frozen=True, slots=True)
class Found:
    """Result of the location search."""

    location: LocationConf | None
    match: Match
    captures: tuple[str, ...] = ()  # $0, $1, ... of the last regex that matched
    named: dict[str, str] | None = None  # its named captures (each one is a variable)


def regex_captures(m: re.Match[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """``$0..$N`` and the named captures of a match (an unset group is empty)."""
    numbered = (m.group(0), *(g or "" for g in m.groups()))
    return numbered, {k.lower(): v or "" for k, v in m.groupdict().items()}


def _static_search(locs: tuple[LocationConf, ...], uri: str) -> Found | None:
    # ngx_http_core_find_static_location: a location named exactly like the URI (exact or
    # prefix) ends the search; otherwise the longest prefix, unless a location with
    # auto_redirect is named like the URI plus "/" (NGX_DONE, the 301 of §4.3).
    best: LocationConf | None = None
    redirect: LocationConf | None = None
    for loc in locs:
        if loc.regex is not None:
            continue
        if loc.name == uri:
            if loc.modifier == "=":
                return Found(loc, Match.EXACT)
            best = loc
        elif loc.auto_redirect and uri + "/" == loc.name:
            redirect = loc
        elif (
            loc.modifier != "="
            and uri.startswith(loc.name)
            and (best is None or len(loc.name) > len(best.name))
        ):
            best = loc
    if redirect is not None and (best is None or best.name != uri):
        return Found(redirect, Match.REDIRECT)
    if best is None:
        return None
    return Found(best, Match.NOREGEX if best.modifier == "^~" else Match.PREFIX)


def find_location(locs: tuple[LocationConf, ...], uri: str) -> Found:
    """Search ``locs`` (one level, with nesting) for ``uri`` (the normalized ``$uri``).

    Mirrors ``ngx_http_core_find_location``: the longest static match, then its nested
    locations; unless that match (at this level) is ``^~``, this level's regexes in order
    when the nested search found no exact or regex match.
    """
    found = _static_search(locs, uri)
    noregex = False
    if found is not None:
        if found.match in (Match.EXACT, Match.REDIRECT):
            return found
        # Only this level's longest prefix decides; a nested "^~" stops nested regexes.
        noregex = found.match is Match.NOREGEX
        assert found.location is not None
        if found.location.locations:
            nested = find_location(found.location.locations, uri)
            if nested.match in (Match.EXACT, Match.REDIRECT, Match.REGEX):
                return nested
            if nested.location is not None:
                found = nested
    if not noregex:
        for loc in locs:
            if loc.regex is None:
                continue
            m = loc.regex.search(uri)
            if m is None:
                continue
            captures, named = regex_captures(m)
            if loc.locations:
                nested = find_location(loc.locations, uri)
                if nested.location is not None:
                    if nested.match is Match.REGEX:
                        # Both matches set their named captures; $1.. are the last ones.
                        both = {**named, **(nested.named or {})}
                        return Found(nested.location, Match.REGEX, nested.captures, both)
                    return Found(nested.location, Match.REGEX, captures, named)
            return Found(loc, Match.REGEX, captures, named)
    if found is None:
        return Found(None, Match.NONE)
    return found


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def normalize_host(host: str) -> str | None:
    """The request host as nginx keeps it (``ngx_http_validate_host``): no port, no
    trailing dot, ASCII letters lower-cased (``ngx_strlow``; other bytes as sent). ``None``
    if invalid (the caller answers 400): ``..``, ``/``, a control byte or space, or
    nothing left."""
    dot_pos = len(host)
    host_len = len(host)
    state = "usual"
    for i, ch in enumerate(host):
        if ch == ".":
            if dot_pos == i - 1:
                return None
            dot_pos = i
        elif ch == ":":
            if state == "usual":
                host_len = i
                state = "rest"
        elif ch == "[":
            if i == 0:
                state = "literal"
        elif ch == "]":
            if state == "literal":
                host_len = i + 1
                state = "rest"
        elif ch == "/" or ord(ch) <= 0x20 or ord(ch) == 0x7F:
            return None
    if dot_pos == host_len - 1:
        host_len -= 1
    if host_len <= 0:
        return None
    return host[:host_len].translate(_ASCII_LOWER)


_UNRESERVED_SLASHES = re.compile(r"/{2,}")
_ABSOLUTE_FORM = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://"
    r"((?:\[[A-Za-z0-9:._~!$&'()*+,;=-]*\]|[A-Za-z0-9.-]*)(?::[0-9]*)?)(?=[/?]|$)"
)


def parse_target(target: str) -> tuple[str, str, str | None] | None:
    """Split a request-target into ($uri normalized and decoded, $args, host of an
    absolute-form target). ``None`` if nginx would answer 400 (``..`` above the root).

    Mirrors ``ngx_http_parse_complex_uri``: percent-decoding, merging of slashes
    (``merge_slashes on``), ``.`` and ``..`` segments resolved.
    """
    host: str | None = None
    if not target.startswith("/"):
        # ngx_http_parse_request_line: a target is "/..." or "scheme://host[:port]..."
        # (any scheme; host letters, digits, "." and "-", or an IP literal); anything
        # else, "*" included, is 400.
        absolute = _ABSOLUTE_FORM.match(target)
        if absolute is None:
            return None
        host = absolute[1]
        target = target[absolute.end() :] or "/"
        if target.startswith("?"):
            target = "/" + target
    path, _, args = target.partition("?")
    raw = path.encode("latin-1", errors="replace")
    decoded = bytearray()
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == 0x25 and i + 2 < len(raw) + 0 and _is_hex(raw[i + 1 : i + 3]):
            if raw[i + 1 : i + 3] == b"00":
                return None  # ngx_http_parse_complex_uri: a decoded NUL is 400
            decoded.append(int(raw[i + 1 : i + 3], 16))
            i += 3
            continue
        if b == 0x25:
            return None
        decoded.append(b)
        i += 1
    text = decoded.decode("utf-8", errors="surrogateescape")
    text = _UNRESERVED_SLASHES.sub("/", text)
    segments: list[str] = []
    parts = text.split("/")
    for j, seg in enumerate(parts[1:], start=1):
        last = j == len(parts) - 1
        if seg == ".":
            if last:
                segments.append("")
            continue
        if seg == "..":
            if not segments:
                return None
            segments.pop()
            if last:
                segments.append("")
            continue
        segments.append(seg)
    return "/" + "/".join(segments), args, host


def _is_hex(b: bytes) -> bool:
    return len(b) == 2 and all(c in b"0123456789abcdefABCDEF" for c in b)


class Router:
    """Server selection tables for one configuration (regex names compiled here, once)."""

    def __init__(self, http: HttpConf) -> None:
        self.http = http
        # (host, port) -> servers in config order; host "*" for wildcard listens.
        self.by_address: dict[tuple[str, int], list[ServerConf]] = {}
        self.defaults: dict[tuple[str, int], ServerConf] = {}
        self.names: dict[tuple[str, int], _Names] = {}
        explicit: set[tuple[str, int]] = set()
        for s in http.servers:
            for lc in s.listen:
                key = (_addr_key(lc), lc.port)
                self.by_address.setdefault(key, []).append(s)
                # The default server: the one marked default_server, else the first one.
                if lc.default_server and key not in explicit:
                    explicit.add(key)
                    self.defaults[key] = s
                else:
                    self.defaults.setdefault(key, s)
        for key, servers in self.by_address.items():
            self.names[key] = _Names(servers)

    def listen_addresses(self) -> list[ListenConf]:
        """One ListenConf per socket to bind (wildcard wins over specific on a port)."""
        seen: dict[tuple[str, int], ListenConf] = {}
        for s in self.http.servers:
            for lc in s.listen:
                seen.setdefault((_addr_key(lc), lc.port), lc)
        out = []
        for (host, port), lc in seen.items():
            wild = "::" if lc.ipv6 else "*"
            if host != wild and (wild, port) in seen:
                continue
            out.append(lc)
        return out

    def select_server(self, local_addr: str, local_port: int, host: str | None) -> ServerConf:
        """The server for a connection accepted on ``local_addr:local_port``."""
        return self.find_server(local_addr, local_port, host)[0]

    def find_server(
        self, local_addr: str, local_port: int, host: str | None
    ) -> tuple[ServerConf, re.Match[str] | None]:
        """The server, and the match when a regex ``server_name`` chose it (its captures
        are the request's, as in ``ngx_http_find_virtual_server``)."""
        key = (local_addr, local_port)
        if key not in self.by_address:
            key = ("::" if ":" in local_addr else "*", local_port)
        if key not in self.by_address:
            return self.http.servers[0], None
        if host:
            chosen = self.names[key].match(host)
            if chosen is not None:
                return chosen
        return self.defaults[key], None


def _addr_key(lc: ListenConf) -> str:
    if lc.ipv6:
        return lc.host
    return "*" if lc.host in ("*", "0.0.0.0") else lc.host


def _server_regex(pattern: str) -> re.Pattern[str]:
    # ngx_http_core_server_name: a regex with an upper-case letter is caseless (the host
    # is lower-case). Named groups are spelled "(?<name>" in PCRE, "(?P<name>" here.
    flags = re.IGNORECASE if any("A" <= ch <= "Z" for ch in pattern) else 0
    return re.compile(re.sub(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", r"(?P<\1>", pattern), flags)


class _Names:
    """The ``server_name`` tables of one address:port (``ngx_http_server_names``): exact
    names, wildcards starting with ``*`` (or ``.``), wildcards ending with ``*``, regexes
    in config order. Names are already lower-case (the table lower-cases them)."""

    def __init__(self, servers: list[ServerConf]) -> None:
        self.exact: dict[str, ServerConf] = {}
        self.head: list[tuple[str, ServerConf]] = []  # ".example.com", longest first
        self.tail: list[tuple[str, ServerConf]] = []  # "www.example.", longest first
        self.regex: list[tuple[re.Pattern[str], ServerConf]] = []
        for s in servers:
            for name in s.server_name:
                if name.startswith("~"):
                    self.regex.append((_server_regex(name[1:]), s))
                elif name.startswith("*."):
                    self.head.append((name[1:], s))
                elif name.startswith("."):
                    # ".example.com" is both "example.com" and "*.example.com".
                    self.exact.setdefault(name[1:], s)
                    self.head.append((name, s))
                elif name.endswith(".*"):
                    self.tail.append((name[:-1], s))
                else:
                    self.exact.setdefault(name, s)  # a duplicate is ignored (first wins)
        self.head.sort(key=lambda item: -len(item[0]))
        self.tail.sort(key=lambda item: -len(item[0]))

    def match(self, host: str) -> tuple[ServerConf, re.Match[str] | None] | None:
        server = self.exact.get(host)
        if server is not None:
            return server, None
        for suffix, server in self.head:
            if host.endswith(suffix):
                return server, None
        for prefix, server in self.tail:
            if host.startswith(prefix):
                return server, None
        for pattern, server in self.regex:
            m = pattern.search(host)
            if m is not None:
                return server, m
        return None
