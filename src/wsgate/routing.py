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
    captures: tuple[str, ...] = ()


def _static_search(locs: tuple[LocationConf, ...], uri: str) -> Found | None:
    best: LocationConf | None = None
    redirect: LocationConf | None = None
    for loc in locs:
        if loc.regex is not None:
            continue
        if loc.modifier == "=":
            if uri == loc.name:
                return Found(loc, Match.EXACT)
            continue
        if uri.startswith(loc.name):
            if best is None or len(loc.name) > len(best.name):
                best = loc
        elif loc.auto_redirect and uri + "/" == loc.name:
            redirect = loc
    if redirect is not None and not any(loc.modifier == "=" and loc.name == uri for loc in locs):
        return Found(redirect, Match.REDIRECT)
    if best is None:
        return None
    return Found(best, Match.NOREGEX if best.modifier == "^~" else Match.PREFIX)


def find_location(locs: tuple[LocationConf, ...], uri: str) -> Found:
    """Search ``locs`` (one level, with nesting) for ``uri`` (the normalized ``$uri``)."""
    found = _static_search(locs, uri)
    noregex = False
    if found is not None:
        if found.match in (Match.EXACT, Match.REDIRECT):
            return found
        noregex = found.match is Match.NOREGEX
        assert found.location is not None
        if found.location.locations:
            nested = find_location(found.location.locations, uri)
            if nested.match in (Match.EXACT, Match.REDIRECT, Match.REGEX):
                return nested
            if nested.location is not None:
                found = nested
                noregex = nested.match is Match.NOREGEX or noregex
    if not noregex:
        for loc in locs:
            if loc.regex is None:
                continue
            m = loc.regex.search(uri)
            if m is None:
                continue
            captures = (m.group(0), *(g or "" for g in m.groups()))
            if loc.locations:
                nested = find_location(loc.locations, uri)
                if nested.location is not None:
                    return Found(nested.location, Match.REGEX, nested.captures or captures)
            return Found(loc, Match.REGEX, captures)
    if found is None:
        return Found(None, Match.NONE)
    return found


def normalize_host(host: str) -> str | None:
    """The request host as nginx keeps it (``ngx_http_validate_host``): lower-case, no
    port, no trailing dot. ``None`` if invalid (the caller answers 400)."""
    h = host.lower()
    if h.startswith("["):
        end = h.find("]")
        if end < 0:
            return None
        rest = h[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return h[: end + 1]
    h = h.split(":", 1)[0]
    if h.endswith("."):
        h = h[:-1]
    if not h or ".." in h or h.startswith("."):
        return None
    for ch in h:
        if ch in "/\\" or ord(ch) < 0x21 or ord(ch) == 0x7F:
            return None
    return h


_UNRESERVED_SLASHES = re.compile(r"/{2,}")


def parse_target(target: str) -> tuple[str, str, str | None] | None:
    """Split a request-target into ($uri normalized and decoded, $args, host of an
    absolute-form target). ``None`` if nginx would answer 400 (``..`` above the root).

    Mirrors ``ngx_http_parse_complex_uri``: percent-decoding, merging of slashes
    (``merge_slashes on``), ``.`` and ``..`` segments resolved.
    """
    host: str | None = None
    if not target.startswith("/"):
        low = target.lower()
        if low.startswith(("http://", "https://")):
            rest = target[target.index("//") + 2 :]
            slash = rest.find("/")
            q = rest.find("?")
            cut = min(x for x in (slash, q, len(rest)) if x >= 0)
            host = rest[:cut]
            target = rest[cut:] or "/"
            if target.startswith("?"):
                target = "/" + target
        elif target == "*":
            return "*", "", None
        else:
            return None
    path, _, args = target.partition("?")
    raw = path.encode("latin-1", errors="replace")
    decoded = bytearray()
    i = 0
    while i < len(raw):
        b = raw[i]
        if b == 0x25 and i + 2 < len(raw) + 0 and _is_hex(raw[i + 1 : i + 3]):
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
    """Server selection tables for one configuration."""

    def __init__(self, http: HttpConf) -> None:
        self.http = http
        # (host, port) -> servers in config order; host "*" for wildcard listens.
        self.by_address: dict[tuple[str, int], list[ServerConf]] = {}
        self.defaults: dict[tuple[str, int], ServerConf] = {}
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
        key = (local_addr, local_port)
        if key not in self.by_address:
            key = ("::" if ":" in local_addr else "*", local_port)
        servers = self.by_address.get(key)
        if not servers:
            return self.http.servers[0]
        if host:
            chosen = _match_name(servers, host)
            if chosen is not None:
                return chosen
        return self.defaults[key]


def _addr_key(lc: ListenConf) -> str:
    if lc.ipv6:
        return lc.host
    return "*" if lc.host in ("*", "0.0.0.0") else lc.host


def _match_name(servers: list[ServerConf], host: str) -> ServerConf | None:
    for s in servers:
        if host in s.server_name:
            return s
    best: tuple[int, ServerConf] | None = None
    for s in servers:
        for name in s.server_name:
            wild = (name.startswith("*.") and host.endswith(name[1:])) or (
                name.startswith(".") and (host.endswith(name) or host == name[1:])
            )
            if wild and (best is None or len(name) > best[0]):
                best = (len(name), s)
    if best is not None:
        return best[1]
    for s in servers:
        for name in s.server_name:
            if (
                name.endswith(".*")
                and host.startswith(name[:-1])
                and (best is None or len(name) > best[0])
            ):
                best = (len(name), s)
    if best is not None:
        return best[1]
    for s in servers:
        for name in s.server_name:
            if name.startswith("~") and re.search(name[1:], host):
                return s
    return None
