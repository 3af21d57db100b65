"""``ip_hash``: the client's address chooses the peer, so a client keeps its server.

Mirrors ``src/http/modules/ngx_http_upstream_ip_hash_module.c``
(``ngx_http_upstream_init_ip_hash_peer``, ``ngx_http_upstream_get_ip_hash_peer``); the rules
are in nginx-semantics.md section 3.6.

Theory of operation:

* The key is the first three bytes of an IPv4 address (a whole /24 maps to one peer), all
  sixteen bytes of an IPv6 address, or three zero bytes for anything else.
* Each request starts with ``h = 89``. Each candidate costs one pass over the key bytes,
  ``h = (h * 113 + byte) % 6271``, and is the peer whose weight slice holds
  ``h % total_weight`` (down peers keep their slice, so taking a server ``down`` moves only
  its own clients).
* A candidate that is tried, down, failed or full costs one of the request's 20 spare
  tries and the next pass continues from the current ``h``; past 20, and in single mode,
  the request falls back to round robin (:class:`~wsgate.balancer.round_robin.RoundRobinPick`).
  The ``h`` of a chosen peer is kept for the request's next attempt.
* Peer state, ``free`` and the failure accounting are round robin's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from wsgate.balancer.base import PeerState, RequestInfo
from wsgate.balancer.round_robin import RoundRobin, RoundRobinPick, is_usable, peer_at_weight

__all__ = ["MAX_HASH_TRIES", "IpHash", "IpHashPick", "ip_hash_key"]

MAX_HASH_TRIES = 20  # unusable candidates a request may meet before round robin takes over

_PSEUDO_ADDR = b"\0\0\0"  # ngx_http_upstream_ip_hash_pseudo_addr: non-IP clients (unix:)


def ip_hash_key(remote_addr: str) -> bytes:
    """The bytes ``ip_hash`` hashes for a client address (``$remote_addr`` text).

    IPv4 gives its first three octets, IPv6 its 16 bytes (no special case for IPv4-mapped
    addresses, as in nginx), anything that is not an IP address three zero bytes.
    """
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return _PSEUDO_ADDR
    if address.version == 4:
        return address.packed[:3]
    return address.packed


class IpHash(RoundRobin):
    """Per-worker state of an ``upstream{}`` block with ``ip_hash`` (round robin's peers).

    Create it once per block (``ngx_http_upstream_init_ip_hash``), then call :meth:`pick`
    once per request.
    """

    __slots__ = ()

    def pick(self, request: RequestInfo, next_upstream_tries: int = 0) -> IpHashPick:
        """Start balancing one request (``ngx_http_upstream_init_ip_hash_peer``).

        Args:
            request: ``remote_addr`` is hashed.
            next_upstream_tries: ``proxy_next_upstream_tries``; caps the budget when non-zero.

        Returns:
            The per-request state; call its ``get`` for each attempt.
        """
        return IpHashPick(
            tries=self.budget(next_upstream_tries),
            balancer=self,
            key=ip_hash_key(request.remote_addr),
        )


@dataclass(slots=True, eq=False)
class IpHashPick(RoundRobinPick):
    """One request's ``ip_hash`` state (``ngx_http_upstream_ip_hash_peer_data_t``)."""

    key: bytes = field(default=b"", kw_only=True)
    hash: int = field(default=89, kw_only=True)
    hash_tries: int = field(default=0, kw_only=True)  # unusable candidates met so far

    def get(self, now: float) -> PeerState | None:
        """Choose the peer for the next attempt (``ngx_http_upstream_get_ip_hash_peer``).

        Returns:
            The peer, with its connection counted; report the attempt with ``free``.
            ``None`` means "no live upstreams" (only possible after the round-robin
            fallback): log it and answer 502 without calling ``free``.
        """
        balancer = self.balancer
        # Round robin's get is called by name: zero-argument super() fails in slots classes.
        if self.hash_tries > MAX_HASH_TRIES or balancer.single:
            return RoundRobinPick.get(self, now)
        peers = balancer.peers
        h = self.hash
        while True:
            for byte in self.key:
                h = (h * 113 + byte) % 6271
            peer = peer_at_weight(peers, h % balancer.total_weight)
            if not self.has_tried(peer) and is_usable(peer, now):
                break
            self.hash_tries += 1
            if self.hash_tries > MAX_HASH_TRIES:
                return RoundRobinPick.get(self, now)
        self.hash = h
        return self.take(peer, now)
