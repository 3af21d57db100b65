"""Mutable builders the directive handlers fill while the file is read (nginx's
``create_*_conf`` structures). ``conf.build`` merges and freezes them into ``conf.model``.

A directive value is stored under its nginx name in ``values``; absence means "unset",
so inheritance (http -> server -> location) is a dictionary lookup chain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from wsgate.conf.model import HealthCheckConf, PeerConf
from wsgate.vars.compile import ComplexValue

__all__ = [
    "Ctx",
    "HttpBuilder",
    "LocationBuilder",
    "MainBuilder",
    "MapBuilder",
    "ServerBuilder",
    "UpstreamBuilder",
]


@dataclass(eq=False)
class LocationBuilder:
    name: str
    modifier: str
    regex: re.Pattern[str] | None
    file: str
    line: int
    values: dict[str, Any] = field(default_factory=dict)
    locations: list[LocationBuilder] = field(default_factory=list)


@dataclass(eq=False)
class ServerBuilder:
    file: str
    line: int
    values: dict[str, Any] = field(default_factory=dict)
    listen: list[Any] = field(default_factory=list)
    server_name: list[str] = field(default_factory=list)
    locations: list[LocationBuilder] = field(default_factory=list)


@dataclass(eq=False)
class UpstreamBuilder:
    name: str
    file: str
    line: int
    peers: list[PeerConf] = field(default_factory=list)
    method: str = "round_robin"
    method_args: tuple[str, ...] = ()
    hash_key: ComplexValue | None = None
    implicit: bool = False
    websocket_health_check: HealthCheckConf | None = None
    # keepalive N (0: none); ``keepalive_seen`` stays set when a balancing method named
    # after it switched the cache off (nginx replaces the group's init_upstream).
    keepalive: int = 0
    keepalive_seen: bool = False
    values: dict[str, Any] = field(default_factory=dict)  # keepalive_timeout and the like


@dataclass(eq=False)
class MapBuilder:
    source: ComplexValue
    variable: str
    exact: dict[str, ComplexValue] = field(default_factory=dict)
    regexes: list[tuple[re.Pattern[str], ComplexValue]] = field(default_factory=list)
    wildcards_head: list[tuple[str, ComplexValue]] = field(default_factory=list)
    wildcards_tail: list[tuple[str, ComplexValue]] = field(default_factory=list)
    default: ComplexValue | None = None
    hostnames: bool = False
    volatile: bool = False


@dataclass(eq=False)
class HttpBuilder:
    values: dict[str, Any] = field(default_factory=dict)
    maps: dict[str, MapBuilder] = field(default_factory=dict)
    upstreams: dict[str, UpstreamBuilder] = field(default_factory=dict)
    servers: list[ServerBuilder] = field(default_factory=list)
    log_formats: dict[str, Any] = field(default_factory=dict)
    variables_used: list[str] = field(default_factory=list)
    proxy_passes: list[tuple[Any, str, int]] = field(default_factory=list)
    deferred_error: str | None = None  # reported when the block closes (see finish_http)
    zones: dict[str, int] = field(default_factory=dict)  # shared memory zone -> size (0: none)


@dataclass(eq=False)
class MainBuilder:
    values: dict[str, Any] = field(default_factory=dict)
    events: dict[str, Any] | None = None
    http: HttpBuilder | None = None


@dataclass(eq=False)
class Ctx:
    """Where the parser is: the context kind (nginx's NGX_*_CONF bit) and its builders."""

    kind: str  # main, events, http, server, location, upstream, map
    main: MainBuilder
    http: HttpBuilder | None = None
    server: ServerBuilder | None = None
    location: LocationBuilder | None = None
    upstream: UpstreamBuilder | None = None
    map: MapBuilder | None = None

    @property
    def values(self) -> dict[str, Any]:
        """The directive store of the innermost level that takes directive values."""
        if self.kind == "location" and self.location is not None:
            return self.location.values
        if self.kind == "server" and self.server is not None:
            return self.server.values
        if self.kind == "http" and self.http is not None:
            return self.http.values
        if self.kind == "events" and self.main.events is not None:
            return self.main.events
        if self.kind == "upstream" and self.upstream is not None:
            return self.upstream.values
        return self.main.values
