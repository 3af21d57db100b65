"""``hash KEY`` and ``hash KEY consistent``: a per-request key chooses the peer.

Mirrors ``src/http/modules/ngx_http_upstream_hash_module.c`` (``ngx_http_upstream_get_hash_peer``,
``ngx_http_upstream_init_chash``, ``ngx_http_upstream_find_chash_point``,
``ngx_http_upstream_get_chash_peer``); the rules are in nginx-semantics.md section 3.7.
The proxy evaluates KEY (``UpstreamConf.hash_key``) and passes its bytes in
:attr:`~wsgate.balancer.base.RequestInfo.hash_key`.

Theory of operation, plain ``hash`` (Cache::Memcached's scheme):

* Attempt ``r`` (0, 1, 2, ... for the whole request) hashes ``str(r) + KEY`` (no prefix for
  ``r == 0``) with CRC-32, keeps bits 16-30 and adds them to a running sum; the candidate is
  the peer whose weight slice holds ``sum % total_weight``.

``consistent`` (ketama, Cache::Memcached::Fast's scheme):

* At start-up every primary peer puts ``weight * 160`` points on a ring of 32-bit values.
  The points come from the ``server`` text as written, split into host and port, so
  ``server a:80`` and ``server a`` are different rings; each point is the CRC-32 of
  ``host \\0 port`` followed by the previous point (4 bytes, little-endian, starting at 0).
  Equal points keep the first peer in config order.
* A request starts at the first point at or after ``crc32(KEY)`` (wrapping around); the
  candidates are the usable peers written with that point's ``server`` text (one text can
  resolve to several addresses), chosen among by a smooth weighted round-robin round.
  No usable one: the next point.

Both: an unusable candidate costs one of the request's 20 spare tries; past 20, in single
mode, or when KEY is empty, the request falls back to round robin. Peer state, ``free`` and
failure accounting are round robin's.
"""

from __future__ import annotations

import bisect
import zlib
from dataclasses import dataclass, field

from wsgate.balancer.base import PeerState, RequestInfo
from wsgate.balancer.round_robin import RoundRobin, RoundRobinPick, is_usable, peer_at_weight
from wsgate.conf.model import UpstreamConf

__all__ = [
    "MAX_HASH_TRIES",
    "ConsistentHash",
    "ConsistentHashPick",
    "Hash",
    "HashPick",
    "hash_balancer",
    "ring",
    "split_server",
]

MAX_HASH_TRIES = 20  # unusable candidates a request may meet before round robin takes over
POINTS_PER_WEIGHT = 160  # ketama points per unit of weight


def hash_balancer(conf: UpstreamConf) -> Hash | ConsistentHash:
    """The balancer of a ``hash`` block: :class:`ConsistentHash` for ``hash KEY consistent``,
    :class:`Hash` otherwise (``ngx_http_upstream_hash`` picks ``init_chash`` or
    ``init_hash``)."""
    if conf.method_args[:1] == ("consistent",):
        return ConsistentHash(conf)
    return Hash(conf)


class Hash(RoundRobin):
    """Per-worker state of an ``upstream{}`` block with ``hash KEY`` (round robin's peers).

    Create it once per block (``ngx_http_upstream_init_hash``), then call :meth:`pick` once
    per request.
    """

    __slots__ = ()

    def pick(self, request: RequestInfo, next_upstream_tries: int = 0) -> HashPick:
        """Start balancing one request (``ngx_http_upstream_init_hash_peer``).

        Args:
            request: ``hash_key`` is the evaluated KEY.
            next_upstream_tries: ``proxy_next_upstream_tries``; caps the budget when non-zero.

        Returns:
            The per-request state; call its ``get`` for each attempt.
        """
        return HashPick(tries=self.budget(next_upstream_tries), balancer=self, key=request.hash_key)


@dataclass(slots=True, eq=False)
class HashPick(RoundRobinPick):
    """One request's ``hash`` state (``ngx_http_upstream_hash_peer_data_t``)."""

    key: bytes = field(default=b"", kw_only=True)
    hash: int = field(default=0, kw_only=True)  # the running sum
    rehash: int = field(default=0, kw_only=True)  # attempts hashed so far
    hash_tries: int = field(default=0, kw_only=True)  # unusable candidates met so far

    def get(self, now: float) -> PeerState | None:
        """Choose the peer for the next attempt (``ngx_http_upstream_get_hash_peer``).

        Returns:
            The peer, with its connection counted; report the attempt with ``free``.
            ``None`` means "no live upstreams" (only after the round-robin fallback): log
            it and answer 502 without calling ``free``.
        """
        balancer = self.balancer
        # Round robin's get is called by name: zero-argument super() fails in slots classes.
        if self.hash_tries > MAX_HASH_TRIES or balancer.single or not self.key:
            return RoundRobinPick.get(self, now)
        peers = balancer.peers
        while True:
            prefix = str(self.rehash).encode() if self.rehash > 0 else b""
            self.hash += (zlib.crc32(prefix + self.key) >> 16) & 0x7FFF
            self.rehash += 1
            peer = peer_at_weight(peers, self.hash % balancer.total_weight)
            if not self.has_tried(peer) and is_usable(peer, now):
                return self.take(peer, now)
            self.hash_tries += 1
            if self.hash_tries > MAX_HASH_TRIES:
                return RoundRobinPick.get(self, now)


def split_server(server: str) -> tuple[bytes, bytes]:
    """Host and port of a ``server`` text as ``hash ... consistent`` hashes them.

    ``unix:PATH`` gives ``(PATH, b"")``; a text ending in ``:DIGITS`` is split at that colon;
    anything else is all host (``ngx_http_upstream_init_chash``).
    """
    text = server.encode()
    if text[:5].lower() == b"unix:":
        return text[5:], b""
    end = len(text)
    while end > 0 and 0x30 <= text[end - 1] <= 0x39:  # ASCII digits only, as nginx
        end -= 1
    if end > 0 and text[end - 1 : end] == b":":
        return text[: end - 1], text[end:]
    return text, b""


def ring(peers: list[PeerState]) -> list[tuple[int, str]]:
    """The consistent-hash ring of ``peers``: ``(point, server text)`` sorted by point.

    Call it once per upstream block. Equal points keep the first peer in config order
    (nginx sorts with glibc's merge sort, which is stable, then keeps the first of a run).
    """
    points: list[tuple[int, str]] = []
    for peer in peers:
        host, port = split_server(peer.conf.server)
        base = zlib.crc32(host + b"\0" + port)
        prev = 0
        for _ in range(peer.conf.weight * POINTS_PER_WEIGHT):
            prev = zlib.crc32(prev.to_bytes(4, "little"), base)
            points.append((prev, peer.conf.server))
    points.sort(key=lambda point: point[0])
    unique: list[tuple[int, str]] = []
    for point in points:
        if not unique or unique[-1][0] != point[0]:
            unique.append(point)
    return unique


class ConsistentHash(RoundRobin):
    """Per-worker state of an ``upstream{}`` block with ``hash KEY consistent``.

    Create it once per block (``ngx_http_upstream_init_chash`` builds the ring), then call
    :meth:`pick` once per request.
    """

    __slots__ = ("hashes", "points")

    points: list[tuple[int, str]]  # the ring
    hashes: list[int]  # the ring's points alone, for bisect

    def __init__(self, conf: UpstreamConf) -> None:
        super().__init__(conf)
        self.points = ring(self.peers)
        self.hashes = [point for point, _ in self.points]

    def start(self, key: bytes) -> int:
        """Index of the first ring point at or after ``crc32(key)``; ``len(points)`` wraps
        to 0 (``ngx_http_upstream_find_chash_point``)."""
        return bisect.bisect_left(self.hashes, zlib.crc32(key))

    def pick(self, request: RequestInfo, next_upstream_tries: int = 0) -> ConsistentHashPick:
        """Start balancing one request (``ngx_http_upstream_init_chash_peer``).

        Args:
            request: ``hash_key`` is the evaluated KEY.
            next_upstream_tries: ``proxy_next_upstream_tries``; caps the budget when non-zero.

        Returns:
            The per-request state; call its ``get`` for each attempt.
        """
        key = request.hash_key
        return ConsistentHashPick(
            tries=self.budget(next_upstream_tries),
            balancer=self,
            key=key,
            point=self.start(key),
            ring=self,
        )


@dataclass(slots=True, eq=False)
class ConsistentHashPick(RoundRobinPick):
    """One request's ``hash ... consistent`` state (``ngx_http_upstream_hash_peer_data_t``)."""

    ring: ConsistentHash = field(kw_only=True)
    key: bytes = field(default=b"", kw_only=True)
    point: int = field(default=0, kw_only=True)  # ring index; taken modulo the ring size
    hash_tries: int = field(default=0, kw_only=True)  # points without a usable peer so far

    def get(self, now: float) -> PeerState | None:
        """Choose the peer for the next attempt (``ngx_http_upstream_get_chash_peer``).

        Returns:
            The peer, with its connection counted; report the attempt with ``free``.
            ``None`` means "no live upstreams" (only after the round-robin fallback): log
            it and answer 502 without calling ``free``.
        """
        balancer = self.ring
        # Round robin's get is called by name: zero-argument super() fails in slots classes.
        if self.hash_tries > MAX_HASH_TRIES or balancer.single or not self.key:
            return RoundRobinPick.get(self, now)
        points = balancer.points
        while True:
            server = points[self.point % len(points)][1]
            best: PeerState | None = None
            total = 0
            for peer in balancer.peers:
                if self.has_tried(peer) or not is_usable(peer, now):
                    continue
                if peer.conf.server != server:
                    continue
                peer.current_weight += peer.effective_weight
                total += peer.effective_weight
                if peer.effective_weight < peer.conf.weight:
                    peer.effective_weight += 1
                if best is None or peer.current_weight > best.current_weight:
                    best = peer
            if best is not None:
                best.current_weight -= total
                return self.take(best, now)
            self.point += 1
            self.hash_tries += 1
            if self.hash_tries > MAX_HASH_TRIES:
                return RoundRobinPick.get(self, now)
