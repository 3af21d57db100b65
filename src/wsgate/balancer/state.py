"""A read-only view of an upstream group's peers, for logs and (later) metrics.

Call :func:`snapshot` with a worker's balancer and the clock the proxy gives balancers
(``loop.time()``); it returns one :class:`PeerView` per peer (primaries in config order,
then backups) and changes nothing, so it is safe at any moment, between any ``get`` and
``free``. A :class:`PeerView` is frozen: keep it, compare it, or print it with
:meth:`PeerView.text`.

What the numbers mean (the same state the balancing methods decide on, per worker as in
nginx without ``zone``):

* ``conns``: attempts between ``get`` and ``free``, that is requests in flight plus open
  tunnels (a tunnel holds its peer until it closes, nginx-semantics.md §2.5);
  ``tunnels`` is the part of ``conns`` that are tunnels.
* ``state``: ``down`` (configured so), ``unhealthy`` (marked down by
  ``websocket_health_check`` until a check passes; NGINX Plus's word for it), ``failed``
  (``max_fails`` reached, skipped until ``failed_until``), otherwise ``up``, in that order
  of precedence; ``full`` says ``max_conns`` is reached.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from wsgate.balancer.base import Balancer, PeerState

__all__ = ["PeerStatus", "PeerView", "snapshot", "view"]


class PeerStatus(enum.Enum):
    """Whether a balancer may choose the peer, failures and configuration considered."""

    UP = "up"
    DOWN = "down"  # `down` on its server line
    UNHEALTHY = "unhealthy"  # marked down by websocket_health_check
    FAILED = "failed"  # max_fails failures; skipped until PeerView.failed_until


@dataclass(frozen=True, slots=True)
class PeerView:
    """One peer's state at one moment (see the module docstring)."""

    upstream: str
    name: str  # address, as in $upstream_addr
    server: str  # the server line's address text
    backup: bool
    state: PeerStatus
    failed_until: float | None  # clock time from which a FAILED peer is usable again
    full: bool  # conns has reached max_conns
    conns: int
    tunnels: int
    fails: int
    weight: int
    effective_weight: int
    max_conns: int

    def text(self) -> str:
        """One line for logs: ``127.0.0.1:8001 up conns=2 tunnels=1 fails=0 weight=1``."""
        state = self.state.value
        if self.failed_until is not None:
            state += f" until={self.failed_until:.0f}"
        if self.full:
            state += " full"
        if self.backup:
            state += " backup"
        return (
            f"{self.name} {state} conns={self.conns} tunnels={self.tunnels}"
            f" fails={self.fails} weight={self.effective_weight}/{self.weight}"
        )


def view(upstream: str, peer: PeerState, now: float, single: bool = False) -> PeerView:
    """The view of one peer at ``now``; ``single`` is the group's single mode, in which
    failures are never counted (nginx-semantics.md §3.1)."""
    conf = peer.conf
    state = PeerStatus.UP
    until: float | None = None
    if conf.down:
        state = PeerStatus.DOWN
    elif peer.check_down:
        # Until a check passes; any passive failure state is hidden behind it.
        state = PeerStatus.UNHEALTHY
    elif not single and conf.max_fails and peer.fails >= conf.max_fails:
        # Skipped while floor(now) - checked <= fail_timeout (ngx_http_upstream_get_peer),
        # so usable from the whole second after checked + fail_timeout.
        first_usable = float(math.floor(peer.checked + conf.fail_timeout) + 1)
        if now < first_usable:
            state, until = PeerStatus.FAILED, first_usable
    return PeerView(
        upstream=upstream,
        name=conf.name,
        server=conf.server,
        backup=conf.backup,
        state=state,
        failed_until=until,
        full=bool(conf.max_conns) and peer.conns >= conf.max_conns,
        conns=peer.conns,
        tunnels=peer.tunnels,
        fails=peer.fails,
        weight=conf.weight,
        effective_weight=peer.effective_weight,
        max_conns=conf.max_conns,
    )


def snapshot(balancer: Balancer, now: float) -> list[PeerView]:
    """Every peer of ``balancer`` at ``now``: primaries in config order, then backups.

    Pure: reads the balancer's state and changes nothing. The proxy passes its loop clock;
    a log line or a metrics page formats the result (:meth:`PeerView.text`).
    """
    single = len(balancer.peers) == 1 and not balancer.backups
    return [view(balancer.name, peer, now, single) for peer in (*balancer.peers, *balancer.backups)]
