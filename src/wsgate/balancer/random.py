"""``random``, ``random two`` and ``random two least_conn``: peers drawn by weight.

Mirrors ``src/http/modules/ngx_http_upstream_random_module.c``
(``ngx_http_upstream_update_random``, ``ngx_http_upstream_get_random_peer``,
``ngx_http_upstream_get_random2_peer``, ``ngx_http_upstream_peek_random_peer``); the rules
are in nginx-semantics.md section 3.9.

Theory of operation:

* Every primary peer owns a range of ``[0, total_weight)`` as wide as its weight, in config
  order, ``down`` peers included. A draw is ``rng() % total_weight`` (nginx's
  ``ngx_random()``, a 31-bit ``random()``), found by binary search.
* ``random``: the first usable draw wins. ``random two``: draw until two distinct usable
  peers are found, then keep the one with fewer ``conns / weight`` (its only method,
  ``least_conn``); on a tie the *second* draw wins.
* Every unusable draw (tried, down, failed, full, or a repeat of the first of two) costs
  one of the request's 20 spare tries; past 20, and in single mode, the request falls back
  to round robin. Peer state, ``free`` and failure accounting are round robin's.

The random source is a :class:`random.Random` the balancer owns; tests pass a seeded one so
a run can be replayed exactly.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field

from wsgate.balancer.base import PeerState, RequestInfo
from wsgate.balancer.round_robin import RoundRobin, RoundRobinPick, is_usable
from wsgate.conf.model import UpstreamConf

__all__ = ["MAX_RANDOM_TRIES", "Random", "RandomPick"]

MAX_RANDOM_TRIES = 20  # unusable draws a request may make before round robin takes over


class Random(RoundRobin):
    """Per-worker state of an ``upstream{}`` block with ``random [two [least_conn]]``.

    Create it once per block (``ngx_http_upstream_init_random``), then call :meth:`pick`
    once per request.

    Args:
        conf: the block; ``method_args`` starting with ``two`` selects the two-choice variant.
        rng: the random source (default: a new :class:`random.Random` seeded by the OS).
    """

    __slots__ = ("rng", "starts", "two")

    two: bool  # random two [least_conn]
    starts: list[int]  # where each primary peer's range begins (config order)
    rng: random.Random

    def __init__(self, conf: UpstreamConf, rng: random.Random | None = None) -> None:
        super().__init__(conf)
        self.two = conf.method_args[:1] == ("two",)
        self.rng = rng if rng is not None else random.Random()
        self.starts = []
        start = 0
        for peer in self.peers:
            self.starts.append(start)
            start += peer.conf.weight

    def draw(self) -> PeerState:
        """One weighted draw among the primary peers, usable or not
        (``ngx_http_upstream_peek_random_peer``)."""
        x = self.rng.getrandbits(31) % self.total_weight
        return self.peers[bisect.bisect_right(self.starts, x) - 1]

    def pick(self, request: RequestInfo, next_upstream_tries: int = 0) -> RandomPick:
        """Start balancing one request (``ngx_http_upstream_init_random_peer``).

        Args:
            request: unused by ``random``.
            next_upstream_tries: ``proxy_next_upstream_tries``; caps the budget when non-zero.

        Returns:
            The per-request state; call its ``get`` for each attempt.
        """
        del request
        return RandomPick(tries=self.budget(next_upstream_tries), balancer=self, source=self)


@dataclass(slots=True, eq=False)
class RandomPick(RoundRobinPick):
    """One request's ``random`` state (``ngx_http_upstream_random_peer_data_t``)."""

    source: Random = field(kw_only=True)
    draw_tries: int = field(default=0, kw_only=True)  # unusable draws so far

    def get(self, now: float) -> PeerState | None:
        """Choose the peer for the next attempt (``ngx_http_upstream_get_random_peer`` or
        ``ngx_http_upstream_get_random2_peer``).

        Returns:
            The peer, with its connection counted; report the attempt with ``free``.
            ``None`` means "no live upstreams" (only after the round-robin fallback): log
            it and answer 502 without calling ``free``.
        """
        balancer = self.source
        # Round robin's get is called by name: zero-argument super() fails in slots classes.
        if self.draw_tries > MAX_RANDOM_TRIES or balancer.single:
            return RoundRobinPick.get(self, now)
        peer = self._two(now) if balancer.two else self._one(now)
        if peer is None:
            return RoundRobinPick.get(self, now)
        return self.take(peer, now)

    def _one(self, now: float) -> PeerState | None:
        """The first usable draw, or ``None`` once the spare tries are spent."""
        while True:
            peer = self.source.draw()
            if not self.has_tried(peer) and is_usable(peer, now):
                return peer
            self.draw_tries += 1
            if self.draw_tries > MAX_RANDOM_TRIES:
                return None

    def _two(self, now: float) -> PeerState | None:
        """The better of two distinct usable draws, or ``None`` once the tries are spent."""
        first: PeerState | None = None
        while True:
            peer = self.source.draw()
            if peer is not first and not self.has_tried(peer) and is_usable(peer, now):
                if first is None:
                    first = peer
                else:
                    # The first draw wins only with strictly fewer connections per weight.
                    if peer.conns * first.conf.weight > first.conns * peer.conf.weight:
                        return first
                    return peer
            self.draw_tries += 1
            if self.draw_tries > MAX_RANDOM_TRIES:
                return None
