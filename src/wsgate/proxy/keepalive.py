"""``keepalive N;`` in an ``upstream{}``: idle peer connections kept for the next request.

One :class:`KeepaliveCache` per upstream group and worker, as nginx's
``ngx_http_upstream_keepalive_module`` keeps one per group and worker process:

* :meth:`KeepaliveCache.take` gives the most recently cached idle connection to the peer
  the balancer chose, if there is one (``ngx_http_upstream_get_keepalive_peer`` searches
  the cache from its head for the peer's address);
* :meth:`KeepaliveCache.put` caches a connection whose response ended cleanly; when N are
  cached already, the least recently cached one is closed first
  (``ngx_http_upstream_free_keepalive_peer``);
* while idle, any byte, EOF or error from the peer closes the connection and removes it
  (``ngx_http_upstream_keepalive_close_handler``), and so does ``keepalive_timeout``.

Whether a connection may be cached at all (framing, ``Connection: close``, counts, age) is
decided by the request coroutine (``proxy.downstream``), which knows the response.
"""

from __future__ import annotations

import asyncio

from wsgate.conf.model import UpstreamConf
from wsgate.proxy.upstream import UpstreamProtocol

__all__ = ["KeepaliveCache"]


class KeepaliveCache:
    """The idle connections of one upstream group in one worker (see the module doc)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conf: UpstreamConf) -> None:
        self.loop = loop
        self.size = conf.keepalive
        self.timeout = conf.keepalive_timeout
        self.requests = conf.keepalive_requests
        self.time = conf.keepalive_time
        # Insertion order is recency: the last entry is the most recently cached.
        self.idle: dict[UpstreamProtocol, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self.idle)

    def take(self, peer: str) -> UpstreamProtocol | None:
        """The most recently cached idle connection to ``peer`` (removed), or None."""
        for proto in reversed(list(self.idle)):
            if proto.peer == peer:
                self._remove(proto)
                if proto.transport is not None and not proto.transport.is_closing():
                    return proto
        return None

    def reusable(self, proto: UpstreamProtocol) -> bool:
        """Whether ``proto``'s count and age still allow caching it
        (``keepalive_requests``, ``keepalive_time``)."""
        if proto.requests >= self.requests:
            return False
        return self.loop.time() - proto.born <= self.time

    def put(self, proto: UpstreamProtocol) -> None:
        """Cache ``proto``, an upstream connection whose exchange ended cleanly."""
        if len(self.idle) >= self.size:
            oldest = next(iter(self.idle))
            self._remove(oldest)
            if oldest.transport is not None:
                oldest.transport.close()
        proto.go_idle(self)
        # keepalive_timeout 0 closes at once, as nginx's zero timer does.
        self.idle[proto] = self.loop.call_later(self.timeout, self.drop, proto)

    def drop(self, proto: UpstreamProtocol) -> None:
        """Close an idle connection (the peer spoke or closed, or it timed out)."""
        if proto in self.idle:
            self._remove(proto)
        if proto.transport is not None:
            proto.transport.close()

    def close(self) -> None:
        """Close every idle connection (the worker stops)."""
        for proto in list(self.idle):
            self.drop(proto)

    def _remove(self, proto: UpstreamProtocol) -> None:
        self.idle.pop(proto).cancel()
        proto.idle = None
