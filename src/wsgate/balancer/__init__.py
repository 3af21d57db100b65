"""Balancing methods: pick the peer of an upstream group for each attempt.

``METHODS`` maps the method name of ``UpstreamConf.method`` to the class that implements it
(uvicorn's name -> implementation registries); :func:`for_upstream` builds the per-worker
balancer of one ``upstream{}`` block.
"""

from __future__ import annotations

from collections.abc import Callable

from wsgate.balancer.base import Balancer, Outcome, PeerState, Pick, RequestInfo
from wsgate.balancer.round_robin import RoundRobin
from wsgate.conf.model import UpstreamConf

__all__ = [
    "METHODS",
    "Balancer",
    "Outcome",
    "PeerState",
    "Pick",
    "RequestInfo",
    "RoundRobin",
    "for_upstream",
]

METHODS: dict[str, Callable[[UpstreamConf], Balancer]] = {
    "round_robin": RoundRobin,
}


def for_upstream(conf: UpstreamConf) -> Balancer:
    """Build the balancer of one upstream group, once per worker (nginx ``init_upstream``).

    Raises:
        ValueError: ``conf.method`` names no implemented method (``conf.build`` only
            accepts the methods nginx knows, so this means one is not implemented yet).
    """
    try:
        factory = METHODS[conf.method]
    except KeyError:
        raise ValueError(
            f'balancing method "{conf.method}" of upstream "{conf.name}" is not implemented'
        ) from None
    return factory(conf)
