"""Balancing methods: pick the peer of an upstream group for each attempt.

``METHODS`` maps the method name of ``UpstreamConf.method`` to the class that implements it
(uvicorn's name -> implementation registries); :func:`for_upstream` builds the per-worker
balancer of one ``upstream{}`` block.
"""

from __future__ import annotations

from collections.abc import Callable

from wsgate.balancer.base import Balancer, Outcome, PeerState, Pick, RequestInfo
from wsgate.balancer.hash import ConsistentHash, Hash, hash_balancer
from wsgate.balancer.ip_hash import IpHash
from wsgate.balancer.least_conn import LeastConn
from wsgate.balancer.random import Random
from wsgate.balancer.round_robin import RoundRobin
from wsgate.balancer.state import PeerView, snapshot
from wsgate.conf.model import UpstreamConf

__all__ = [
    "METHODS",
    "Balancer",
    "ConsistentHash",
    "Hash",
    "IpHash",
    "LeastConn",
    "Outcome",
    "PeerState",
    "PeerView",
    "Pick",
    "Random",
    "RequestInfo",
    "RoundRobin",
    "for_upstream",
    "snapshot",
]

# The method names are the directives' (``hash`` covers ``hash KEY consistent`` too).
METHODS: dict[str, Callable[[UpstreamConf], Balancer]] = {
    "round_robin": RoundRobin,
    "ip_hash": IpHash,
    "hash": hash_balancer,
    "least_conn": LeastConn,
    "random": Random,
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
