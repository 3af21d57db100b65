"""``least_conn``: the peer with the fewest connections per unit of weight.

Mirrors ``src/http/modules/ngx_http_upstream_least_conn_module.c``
(``ngx_http_upstream_get_least_conn_peer``); the rules are in nginx-semantics.md section 3.8.

Theory of operation:

* Only the search of one list changes (:meth:`LeastConnPick.select`); the single-mode
  shortcut, the switch to the backups and ``free`` are round robin's.
* ``conns`` counts requests in flight and open tunnels (a tunnel keeps its peer until it
  closes), so long-lived WebSocket connections weigh as much as they cost. As in nginx
  without ``zone``, the counts belong to one worker.
* Among usable peers the lowest ``conns / weight`` wins, compared as
  ``a.conns * b.weight < b.conns * a.weight``. When several tie, one smooth weighted
  round-robin round runs over the tied peers only, starting at the first of them; the
  other peers' weights are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsgate.balancer.base import PeerState, RequestInfo
from wsgate.balancer.round_robin import RoundRobin, RoundRobinPick, is_usable

__all__ = ["LeastConn", "LeastConnPick"]


class LeastConn(RoundRobin):
    """Per-worker state of an ``upstream{}`` block with ``least_conn`` (round robin's peers).

    Create it once per block (``ngx_http_upstream_init_least_conn``), then call :meth:`pick`
    once per request.
    """

    __slots__ = ()

    def pick(self, request: RequestInfo, next_upstream_tries: int = 0) -> LeastConnPick:
        """Start balancing one request (``ngx_http_upstream_init_least_conn_peer``).

        Args:
            request: unused by ``least_conn``.
            next_upstream_tries: ``proxy_next_upstream_tries``; caps the budget when non-zero.

        Returns:
            The per-request state; call its ``get`` for each attempt.
        """
        del request
        return LeastConnPick(tries=self.budget(next_upstream_tries), balancer=self)


@dataclass(slots=True, eq=False)
class LeastConnPick(RoundRobinPick):
    """One request's ``least_conn`` state: round robin's, with another search."""

    def select(self, peers: list[PeerState], now: float) -> PeerState | None:
        """Choose among ``peers`` (the primaries or the backups) by least connections.

        The body of ``ngx_http_upstream_get_least_conn_peer`` for one list: marks the chosen
        peer tried and refreshes its ``checked`` time; ``get`` counts the connection.
        """
        best: PeerState | None = None
        many = False
        for peer in peers:
            if self.has_tried(peer) or not is_usable(peer, now):
                continue
            if best is None or peer.conns * best.conf.weight < best.conns * peer.conf.weight:
                best, many = peer, False
            elif peer.conns * best.conf.weight == best.conns * peer.conf.weight:
                many = True
        if best is None:
            return None
        total = 0
        if many:
            # One smooth weighted round over the tied peers, from the first of them on.
            first = best
            for peer in peers[first.index :]:
                if self.has_tried(peer) or not is_usable(peer, now):
                    continue
                if peer.conns * first.conf.weight != first.conns * peer.conf.weight:
                    continue
                peer.current_weight += peer.effective_weight
                total += peer.effective_weight
                if peer.effective_weight < peer.conf.weight:
                    peer.effective_weight += 1
                if peer.current_weight > best.current_weight:
                    best = peer
        best.current_weight -= total
        self.mark_tried(best, now)
        return best
