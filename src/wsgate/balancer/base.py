"""The balancer interface, after nginx's ``ngx_http_upstream_peer_t`` (init / get / free).

Theory of operation:

* ``Balancer`` is created once per ``upstream{}`` block per worker (nginx ``init_upstream``)
  and owns the mutable per-peer state (:class:`PeerState`). Configuration stays frozen in
  :class:`wsgate.conf.model.PeerConf`.
* For each request the proxy calls :meth:`Balancer.pick` (nginx ``init`` per request), which
  returns a :class:`Pick` holding the request's ``tried`` peers and try budget.
* For each attempt the proxy calls :meth:`Pick.get`; ``None`` means "no live upstreams".
  After the attempt it must call :meth:`Pick.free` exactly once with the outcome
  (nginx ``free(pc, data, state)``), and may call ``get`` again while ``pick.tries > 0``.
  ``free`` returns ``True`` when nginx would log ``upstream server temporarily disabled``
  (warn) for that attempt; the balancer itself never logs.
* ``proxy_next_upstream_tries`` caps the try budget: the proxy passes it to ``pick``
  (nginx applies the cap in ``ngx_http_upstream_init_request``, right after ``init``).

Times are seconds from one monotonic clock chosen by the caller (the proxy passes
``loop.time()``; tests pass plain numbers). Balancers may truncate them to whole seconds, as
nginx's ``ngx_time()`` is (round robin does, for ``fail_timeout``).
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import Protocol

from wsgate.conf.model import PeerConf

__all__ = ["Balancer", "Outcome", "PeerState", "Pick", "RequestInfo"]


class Outcome(enum.Enum):
    """How an attempt at a peer ended (nginx ``NGX_PEER_*`` state passed to ``free``)."""

    SUCCESS = 0
    FAILED = 1  # NGX_PEER_FAILED: connect error, timeout, invalid header, counted 5xx
    NEXT = 2  # NGX_PEER_NEXT: 403/404 moved on without counting a failure


@dataclass(slots=True, eq=False)
class PeerState:
    """Mutable per-worker state of one peer (``ngx_http_upstream_rr_peer_t``)."""

    conf: PeerConf
    index: int  # position in its own list (primaries or backups): its bit in Pick.tried
    current_weight: int = 0
    effective_weight: int = 0
    conns: int = 0
    fails: int = 0
    accessed: float = 0.0
    checked: float = 0.0
    tunnels: int = 0
    # Set and cleared by websocket_health_check (balancer/health.py): while set, every
    # method skips the peer exactly as if its server line said `down`.
    check_down: bool = False

    def __post_init__(self) -> None:
        self.effective_weight = self.conf.weight


@dataclass(slots=True, frozen=True)
class RequestInfo:
    """What a balancer may look at to choose a peer (client address, evaluated hash key)."""

    remote_addr: str = ""
    hash_key: bytes = b""


@dataclass(slots=True, eq=False)
class Pick(abc.ABC):
    """Per-request balancer state; subclasses implement ``get`` and ``free``."""

    tries: int  # attempts left (nginx ``pc->tries``); ``free`` decrements it
    # Peers tried, bit PeerState.index set (nginx's ``rrp->tried`` bitmap): an int, where a
    # set would cost an idle tunnel, which keeps its Pick until it ends, 216 bytes.
    tried: int = 0

    def has_tried(self, peer: PeerState) -> bool:
        """Whether ``peer`` was tried (in the current list) for this request."""
        return bool(self.tried >> peer.index & 1)

    @abc.abstractmethod
    def get(self, now: float) -> PeerState | None:
        """Choose the peer for the next attempt, or ``None`` for "no live upstreams"."""

    @abc.abstractmethod
    def free(self, peer: PeerState, outcome: Outcome, now: float) -> bool:
        """Report how the attempt at ``peer`` ended; the caller may then ``get`` again.

        Returns:
            ``True`` when the caller should log ``upstream server temporarily disabled``
            at warn level (the failure brought ``peer`` to its ``max_fails``).
        """


class Balancer(Protocol):
    """One upstream group's balancing method (chosen per ``upstream{}`` block)."""

    name: str
    peers: list[PeerState]
    backups: list[PeerState]

    def pick(self, request: RequestInfo, next_upstream_tries: int = 0) -> Pick:
        """Start balancing one request; call ``get`` on the result for each attempt.

        Args:
            request: what the method may hash or compare.
            next_upstream_tries: ``proxy_next_upstream_tries``; when non-zero it caps the
                request's try budget (``Pick.tries``).
        """
        ...
