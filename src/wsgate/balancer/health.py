"""``websocket_health_check``: the pass/fail counters that mark peers down and up. No I/O.

The checks themselves (connect, handshake, ping) are done by ``proxy/health.py`` with the
probe of ``http/probe.py``; this module only turns their results into peer state.

Theory of operation:

* One :class:`PeerCheck` per peer (primaries and backups) of a group with the directive,
  per worker, as balancer state is (nginx without ``zone``).
* The checker calls :meth:`PeerCheck.record` once per finished check. ``fails``
  consecutive failures set :attr:`PeerState.check_down`; ``passes`` consecutive successes
  clear it. The balancing methods skip a peer with ``check_down`` exactly as a ``down``
  one (``round_robin.is_usable``).
* A peer starts up (NGINX Plus without ``mandatory``): until its first ``fails`` checks
  have failed, only the passive checks (``max_fails``, ``fail_timeout``) can disable it.

Invariants:

* ``fails`` counts the failures since the last success and is 0 while the peer is down;
  ``passes`` counts the successes since the last failure and is 0 while the peer is up.
* The two kinds of checks are independent: a check that brings a peer back up does not
  clear its passive failures, and a passive failure does not touch these counters, so a
  peer is usable only when both allow it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from wsgate.balancer.base import Balancer, PeerState
from wsgate.conf.model import HealthCheckConf

__all__ = ["Change", "PeerCheck", "peer_checks"]


class Change(enum.Enum):
    """A state change :meth:`PeerCheck.record` reports, for the error log and metrics."""

    DOWN = "down"
    UP = "up"


@dataclass(slots=True, eq=False)
class PeerCheck:
    """The active-check state of one peer in one worker."""

    peer: PeerState
    conf: HealthCheckConf
    fails: int = 0  # consecutive failed checks while up
    passes: int = 0  # consecutive passed checks while down

    def record(self, passed: bool) -> Change | None:
        """Count one finished check of the peer.

        Call it when a check ends, with whether it passed. Returns the change it made to
        ``peer.check_down``, if any: the caller logs it (warn for DOWN, with the failed
        check's reason; notice for UP) and refreshes the peer's metrics.
        """
        peer = self.peer
        if passed:
            self.fails = 0
            if not peer.check_down:
                return None
            self.passes += 1
            if self.passes < self.conf.passes:
                return None
            self.passes = 0
            peer.check_down = False
            return Change.UP
        self.passes = 0
        if peer.check_down:
            return None
        self.fails += 1
        if self.fails < self.conf.fails:
            return None
        self.fails = 0
        peer.check_down = True
        return Change.DOWN


def peer_checks(balancer: Balancer, conf: HealthCheckConf) -> list[PeerCheck]:
    """One :class:`PeerCheck` for every peer of ``balancer``, primaries then backups.

    Call it once per group with the directive when the worker starts; peers configured
    ``down`` are left out (nothing would choose them whatever a check says).
    """
    return [
        PeerCheck(peer, conf) for peer in (*balancer.peers, *balancer.backups) if not peer.conf.down
    ]
