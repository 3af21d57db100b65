"""Smooth weighted round robin, nginx's default balancing method.

Mirrors ``src/http/ngx_http_upstream_round_robin.c`` (``ngx_http_upstream_init_round_robin``,
``ngx_http_upstream_init_round_robin_peer``, ``ngx_http_upstream_get_round_robin_peer``,
``ngx_http_upstream_get_peer``, ``ngx_http_upstream_free_round_robin_peer``); the rules are
written down in nginx-semantics.md sections 3.1-3.5.

Theory of operation:

* :class:`RoundRobin` holds the state of one ``upstream{}`` group in one worker: the primary
  peers and the backup peers, each a :class:`~wsgate.balancer.base.PeerState`.
* :meth:`RoundRobin.pick` starts a request. The :class:`RoundRobinPick` it returns works on
  the primary list until a ``get`` finds no usable primary; from then on the request uses
  the backup list only (with ``tried`` cleared), as nginx switches ``rrp->peers``.
* Each ``get`` runs one round of smooth weighted round robin over the usable peers of the
  current list: every usable peer gains its ``effective_weight``, the heaviest wins (first in
  config order on a tie) and pays back the round's total.
* ``free`` does the failure accounting that makes a peer unusable for ``fail_timeout``.

Invariants:

* ``PeerState.conns`` counts attempts between ``get`` and ``free``: requests in flight, and
  tunnels for their whole life (the proxy frees a tunnel's peer when the tunnel closes).
* ``0 <= effective_weight <= weight``; a failure lowers it by ``weight // max_fails`` and each
  round in which the peer is usable raises it by one.
* Single mode (exactly one primary, no backups): no weights, no failure accounting, no
  retries; a ``down`` peer (or one a health check marked down) means "no live upstreams";
  ``max_conns`` still applies.

Times are seconds on the caller's clock, truncated to whole seconds as nginx's
``ngx_time()`` is, so ``fail_timeout=10s`` disables a peer until the clock's second counter
has moved more than 10 past the failure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from wsgate.balancer.base import Outcome, PeerState, Pick, RequestInfo
from wsgate.conf.model import UpstreamConf

__all__ = ["RoundRobin", "RoundRobinPick", "is_usable", "peer_at_weight", "whole_seconds"]


def whole_seconds(now: float) -> float:
    """``ngx_time()``: the caller's clock in whole seconds."""
    return float(math.floor(now))


def is_usable(peer: PeerState, now: float) -> bool:
    """Whether ``peer`` may be chosen at ``now`` (``tried`` is the caller's business).

    A peer is unusable when it is ``down`` (on its server line, or marked so by
    ``websocket_health_check``), when it has ``max_fails`` failures and its last check is at
    most ``fail_timeout`` ago, or when it has ``max_conns`` connections: requests in flight
    and open tunnels (``ngx_http_upstream_get_peer``).
    """
    conf = peer.conf
    if conf.down or peer.check_down:
        return False
    if (
        conf.max_fails
        and peer.fails >= conf.max_fails
        and whole_seconds(now) - peer.checked <= conf.fail_timeout
    ):
        return False
    return not (conf.max_conns and peer.conns >= conf.max_conns)


def peer_at_weight(peers: list[PeerState], w: int) -> PeerState:
    """The peer whose slice of the weight line holds ``w`` (``0 <= w < total_weight``).

    Peers own consecutive slices as wide as their ``weight``, in config order, ``down``
    peers included; this is the walk ``ip_hash`` and ``hash`` do after reducing their hash
    modulo ``total_weight`` (``while (w >= peer->weight) { w -= peer->weight; ... }``).
    """
    for peer in peers:
        if w < peer.conf.weight:
            return peer
        w -= peer.conf.weight
    raise ValueError("weight beyond the total weight of the peers")


class RoundRobin:
    """Per-worker state of one upstream group balanced by smooth weighted round robin.

    Create it once per ``upstream{}`` block (nginx ``init_upstream``), then call
    :meth:`pick` once per request.
    """

    __slots__ = ("backups", "name", "peers", "single", "total_weight", "tries")

    name: str
    peers: list[PeerState]
    backups: list[PeerState]
    single: bool  # exactly one primary peer and no backups
    total_weight: int  # sum of primary weights, down peers included
    tries: int  # non-down primaries + non-down backups: the uncapped budget of a request

    def __init__(self, conf: UpstreamConf) -> None:
        self.name = conf.name
        self.peers = [PeerState(peer, i) for i, peer in enumerate(conf.peers)]
        self.backups = [PeerState(peer, i) for i, peer in enumerate(conf.backups)]
        self.single = len(self.peers) == 1 and not self.backups
        self.total_weight = sum(peer.weight for peer in conf.peers)
        self.tries = sum(not peer.down for peer in (*conf.peers, *conf.backups))

    def pick(self, request: RequestInfo, next_upstream_tries: int = 0) -> RoundRobinPick:
        """Start balancing one request (``ngx_http_upstream_init_round_robin_peer``).

        Args:
            request: unused by round robin.
            next_upstream_tries: ``proxy_next_upstream_tries``; caps the budget when non-zero.

        Returns:
            The per-request state; call its ``get`` for each attempt.
        """
        del request
        return RoundRobinPick(tries=self.budget(next_upstream_tries), balancer=self)

    def budget(self, next_upstream_tries: int = 0) -> int:
        """A new request's try budget (``ngx_http_upstream_tries``, then the cap that
        ``ngx_http_upstream_init_request`` applies); every method's ``pick`` starts with it."""
        tries = self.tries
        if next_upstream_tries and tries > next_upstream_tries:
            tries = next_upstream_tries
        return tries


@dataclass(slots=True, eq=False)
class RoundRobinPick(Pick):
    """One request's round-robin state (``ngx_http_upstream_rr_peer_data_t``).

    Subclasses (``least_conn``) may override :meth:`select` to change how one list is
    searched; the single-mode shortcut and the switch to backups stay here.
    """

    balancer: RoundRobin = field(kw_only=True)
    on_backups: bool = field(default=False, kw_only=True)  # rrp->peers moved to the backups
    current: PeerState | None = field(default=None, kw_only=True)  # rrp->current

    def get(self, now: float) -> PeerState | None:
        """Choose the peer for the next attempt (``ngx_http_upstream_get_round_robin_peer``).

        Returns:
            The peer, with its ``conns`` already counted; the caller must report the attempt
            with :meth:`free`. ``None`` means "no live upstreams": log it and answer 502
            without calling ``free``.
        """
        balancer = self.balancer
        peer: PeerState | None
        if self.on_backups:
            peer = self.select(balancer.backups, now)
        elif balancer.single:
            only = balancer.peers[0]
            conf = only.conf
            # Single mode skips the failure check and the weights, not down (configured or
            # by the health check) or max_conns.
            busy = conf.max_conns > 0 and only.conns >= conf.max_conns
            peer = None if conf.down or only.check_down or busy else only
        else:
            peer = self.select(balancer.peers, now)
            if peer is None and balancer.backups:
                # The `failed:` path: this request moves to the backups for good.
                self.on_backups = True
                self.tried = 0
                peer = self.select(balancer.backups, now)
        if peer is None:
            return None
        self.current = peer
        peer.conns += 1
        return peer

    def select(self, peers: list[PeerState], now: float) -> PeerState | None:
        """Run one round of smooth weighted round robin over ``peers``.

        This is ``ngx_http_upstream_get_peer``: it skips tried and unusable peers, marks the
        chosen peer as tried and refreshes its ``checked`` time once ``fail_timeout`` has
        passed (that refresh is what lets a disabled peer be probed).
        """
        best: PeerState | None = None
        total = 0
        for peer in peers:
            if self.has_tried(peer) or not is_usable(peer, now):
                continue
            peer.current_weight += peer.effective_weight
            total += peer.effective_weight
            if peer.effective_weight < peer.conf.weight:
                peer.effective_weight += 1
            if best is None or peer.current_weight > best.current_weight:
                best = peer
        if best is None:
            return None
        best.current_weight -= total
        self.mark_tried(best, now)
        return best

    def mark_tried(self, peer: PeerState, now: float) -> None:
        """Record that this request chose ``peer`` from its current list.

        Every method does this once it has its peer, before counting the connection:
        ``peer`` joins ``tried``, and its ``checked`` time moves to ``now`` when
        ``fail_timeout`` has passed since the last check (the tail of
        ``ngx_http_upstream_get_peer``; the other methods' ``get`` repeat it).
        """
        self.tried |= 1 << peer.index
        seconds = whole_seconds(now)
        if seconds - peer.checked > peer.conf.fail_timeout:
            peer.checked = seconds

    def take(self, peer: PeerState, now: float) -> PeerState:
        """Finish a ``get`` that chose ``peer`` without round robin (hash, ip_hash, random).

        Marks ``peer`` tried, makes it the current peer and counts its connection; the
        caller returns it to the proxy, which must report the attempt with :meth:`free`.
        """
        self.mark_tried(peer, now)
        self.current = peer
        peer.conns += 1
        return peer

    def free(self, peer: PeerState, outcome: Outcome, now: float) -> bool:
        """Report the attempt at ``peer`` (``ngx_http_upstream_free_round_robin_peer``).

        Returns:
            ``True`` when the proxy should log ``upstream server temporarily disabled`` at
            warn: a counted failure left the peer at or above ``max_fails``.
        """
        peer.conns -= 1
        if self.balancer.single:
            self.tries = 0
            return False
        disabled = False
        conf = peer.conf
        if outcome is Outcome.FAILED:
            seconds = whole_seconds(now)
            peer.fails += 1
            peer.accessed = seconds
            peer.checked = seconds
            if conf.max_fails:
                peer.effective_weight = max(
                    0, peer.effective_weight - conf.weight // conf.max_fails
                )
                disabled = peer.fails >= conf.max_fails
        elif peer.accessed < peer.checked:
            # A selection after fail_timeout bumped `checked`; this success proves the peer.
            peer.fails = 0
        if self.tries:
            self.tries -= 1
        return disabled
