"""Shared helpers for the balancer unit tests: peers labelled by one character.

A peer's ``server`` text is its label, so a run of attempts reads as a string
(``"13"``: peer 1 failed, peer 3 answered); ``!`` marks "no live upstreams".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from wsgate.balancer import for_upstream
from wsgate.balancer.base import Balancer, Outcome, PeerState, Pick, RequestInfo
from wsgate.conf.model import PeerConf, UpstreamConf

__all__ = ["ANY", "attempts", "build", "find", "first_peers", "group", "hold", "peer", "release"]

ANY = RequestInfo()  # a request whose address and key do not matter


def peer(label: str, weight: int = 1, **params: Any) -> PeerConf:
    """A peer whose ``server`` text is ``label`` (port 8000 + its code point)."""
    port = 8000 + ord(label)
    return PeerConf(
        name=f"127.0.0.1:{port}",
        host="127.0.0.1",
        port=port,
        server=label,
        weight=weight,
        **params,
    )


def group(
    *peers: PeerConf,
    backups: Sequence[PeerConf] = (),
    method: str = "round_robin",
    args: tuple[str, ...] = (),
) -> UpstreamConf:
    """An upstream block with ``peers`` as primaries and ``backups`` marked ``backup``."""
    marked = tuple(
        PeerConf(**{**{n: getattr(b, n) for n in PeerConf.__slots__}, "backup": True})
        for b in backups
    )
    return UpstreamConf(name="u", peers=peers, backups=marked, method=method, method_args=args)


def attempts(
    balancer: Balancer,
    request: RequestInfo = ANY,
    *,
    now: float = 0.0,
    failing: Iterable[str] = (),
    outcome: Outcome = Outcome.FAILED,
    next_upstream_tries: int = 0,
) -> str:
    """Drive one request as the proxy does: get, attempt, free, retry while tries remain.

    Peers whose label is in ``failing`` end their attempt with ``outcome``; the others
    answer. Returns the labels of the peers tried, in order.
    """
    bad = set(failing)
    pick = balancer.pick(request, next_upstream_tries)
    tried = ""
    while True:
        chosen = pick.get(now)
        if chosen is None:
            return tried + "!"
        label = chosen.conf.server
        tried += label
        end = outcome if label in bad else Outcome.SUCCESS
        pick.free(chosen, end, now)
        if end is Outcome.SUCCESS or pick.tries == 0:
            return tried


def first_peers(balancer: Balancer, requests: Iterable[RequestInfo], *, now: float = 0.0) -> str:
    """The peer that answers each request (all succeed), as one string."""
    return "".join(attempts(balancer, r, now=now)[-1] for r in requests)


def hold(
    balancer: Balancer, request: RequestInfo = ANY, now: float = 0.0
) -> tuple[Pick, PeerState]:
    """Start a request and keep its peer busy (a long request or an open tunnel)."""
    pick = balancer.pick(request)
    chosen = pick.get(now)
    assert chosen is not None
    return pick, chosen


def release(held: tuple[Pick, PeerState], now: float = 0.0) -> None:
    """End a request started by :func:`hold` (the tunnel closed)."""
    pick, chosen = held
    pick.free(chosen, Outcome.SUCCESS, now)


def find(balancer: Balancer, label: str) -> PeerState:
    """The state of the peer labelled ``label``."""
    for p in (*balancer.peers, *balancer.backups):
        if p.conf.server == label:
            return p
    raise KeyError(label)


def build(conf: UpstreamConf) -> Balancer:
    """The balancer the proxy would build for ``conf``."""
    return for_upstream(conf)
