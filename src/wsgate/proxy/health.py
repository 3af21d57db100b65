"""``websocket_health_check``: the checker task of one upstream group in one worker.

The worker starts one :class:`HealthChecker` per group with the directive when it starts
serving (:meth:`HealthChecker.start`), and cancels it when it stops accepting
(:meth:`HealthChecker.cancel`, then :meth:`HealthChecker.wait` in ``Worker.stop``).

Theory of operation:

* Rounds: every ``interval`` seconds (measured from the start of the previous round; a
  round whose checks take longer is followed at once by the next) every peer of the group
  that is not configured ``down`` is checked, all at the same time, the first round as
  soon as the worker starts.
* A check is one connection: TCP (TLS when the group is used by ``proxy_pass https://``,
  with the first such location's ``proxy_ssl_*`` settings), then the probe of
  ``http/probe.py``; the whole of it is bounded by ``timeout``. Its result goes to the
  peer's :class:`~wsgate.balancer.health.PeerCheck`, which marks the peer down or up.
* Peer state is this worker's, as all balancer state (nginx without ``zone``): with
  several workers, each checks every peer on its own.
* Log lines: a change to down at warn (with the reason of the check that made it), back
  up at notice, and each other failed check of a peer that is still up at info.
* Check connections are not counted in ``worker_connections`` nor in ``stub_status``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING

from wsgate.balancer.health import Change, PeerCheck, peer_checks
from wsgate.conf.model import HealthCheckConf, LocationConf
from wsgate.http.probe import Probe
from wsgate.proxy.upstream import CONNECTING, SSL_HANDSHAKING, TIMED_OUT, connect_failure

if TYPE_CHECKING:
    from wsgate.balancer.base import PeerState
    from wsgate.proxy.worker import Worker

__all__ = ["HealthChecker", "checkers_for"]

READ_SIZE = 16 * 1024


def _tls_location(worker: Worker, key: str) -> LocationConf | None:
    """The first location, in configuration order, that proxies to group ``key`` with
    ``proxy_pass https://``; its context in ``worker.upstream_tls`` is the one checks use."""
    for server in worker.http.servers:
        stack = [*reversed(server.locations), server.defaults]
        while stack:
            loc = stack.pop()
            stack.extend(reversed(loc.locations))
            pp = loc.proxy_pass
            if pp is not None and pp.upstream == key and pp.scheme == "https":
                return loc
    return None


class HealthChecker:
    """Active checks of one upstream group in one worker (see the module docstring)."""

    def __init__(self, worker: Worker, key: str, conf: HealthCheckConf) -> None:
        self.worker = worker
        self.key = key  # the group's key in HttpConf.upstreams and Worker.balancers
        self.conf = conf
        self.name = worker.http.upstreams[key].name
        self.checks: list[PeerCheck] = peer_checks(worker.balancers[key], conf)
        self.tls: ssl.SSLContext | None = None
        self.server_hostname = ""
        loc = _tls_location(worker, key)
        if loc is not None and loc.proxy_pass is not None:
            self.tls = worker.upstream_tls[id(loc)]
            # As a request's connect (Downstream._connect): SNI with proxy_ssl_server_name,
            # and with proxy_ssl_verify, which Python ties to the name. A proxy_ssl_name
            # with variables has no request to take them from: $proxy_host's host is used.
            if loc.proxy_ssl_server_name or loc.proxy_ssl_verify:
                static = loc.proxy_ssl_name.static if loc.proxy_ssl_name is not None else None
                self.server_hostname = static or loc.proxy_pass.proxy_host.rsplit(":", 1)[0]
        self.rounds = 0  # rounds finished (tests wait on it)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the checks on the running loop; the first round begins at once."""
        self._task = self.worker.loop.create_task(self._run())

    def cancel(self) -> None:
        """Stop checking (the worker stops accepting); call :meth:`wait` afterwards."""
        if self._task is not None:
            self._task.cancel()

    async def wait(self) -> None:
        """Wait until a cancelled checker has closed its connections."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = self.worker.loop
        while True:
            started = loop.time()
            reasons = await asyncio.gather(*(self._guarded(c.peer) for c in self.checks))
            changed = False
            for check, reason in zip(self.checks, reasons, strict=True):
                changed |= self._record(check, reason)
            if changed:
                self.worker.metrics.update_peers([self.worker.metric_groups[self.key]], loop.time())
            self.rounds += 1
            await asyncio.sleep(max(0.0, started + self.conf.interval - loop.time()))

    def _record(self, check: PeerCheck, reason: str | None) -> bool:
        """Count one check's result; log as the module docstring says. Returns whether the
        peer's state changed."""
        change = check.record(reason is None)
        peer = f'peer {check.peer.conf.name} in upstream "{self.name}"'
        log = self.worker.error_log
        if change is Change.DOWN:
            log.log("warn", f"{peer} is down by websocket_health_check ({reason})")
        elif change is Change.UP:
            log.log("notice", f"{peer} is up")
        elif reason is not None and not check.peer.check_down:
            log.log("info", f"{peer} failed websocket_health_check ({reason})")
        return change is not None

    async def _guarded(self, peer: PeerState) -> str | None:
        """:meth:`check`, with a bug in it logged and counted as a failed check instead of
        ending the checker (which would freeze every peer's state)."""
        try:
            return await self.check(peer)
        except Exception as exc:
            self.worker.error_log.log("alert", f"unexpected error: {exc!r}")
            return f"unexpected error: {exc!r}"

    async def check(self, peer: PeerState) -> str | None:
        """Check ``peer`` once. Returns ``None`` when it passed, else the reason it failed
        (for the log line), having closed the connection either way."""
        conf = peer.conf
        probe = Probe(self.conf.uri, conf.name, ping=self.conf.ping)
        action = SSL_HANDSHAKING if self.tls is not None else CONNECTING
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.conf.timeout):
                try:
                    if self.tls is None:
                        reader, writer = await asyncio.open_connection(conf.host, conf.port)
                    else:
                        reader, writer = await asyncio.open_connection(
                            conf.host,
                            conf.port,
                            ssl=self.tls,
                            server_hostname=self.server_hostname,
                        )
                except TimeoutError:
                    raise  # worded below, with the step that timed out
                except OSError as exc:
                    return connect_failure(exc, self.tls is not None)[0]
                writer.write(probe.data_to_send())
                while not probe.done:
                    action = probe.action
                    try:
                        data = await reader.read(READ_SIZE)
                    except TimeoutError:
                        raise
                    except OSError as exc:
                        return f"recv() failed ({exc.errno}: {exc.strerror}) while {action}"
                    if data:
                        probe.receive_data(data)
                    else:
                        probe.receive_eof()
                    writer.write(probe.data_to_send())
        except TimeoutError:
            return f"{TIMED_OUT} while {action}"
        finally:
            if writer is not None:
                writer.close()  # after writing the Close frame, when the check passed
        return probe.reason


def checkers_for(worker: Worker) -> list[HealthChecker]:
    """A checker for every upstream group of ``worker`` with ``websocket_health_check``;
    the worker starts them once it serves."""
    return [
        HealthChecker(worker, key, u.websocket_health_check)
        for key, u in worker.http.upstreams.items()
        if u.websocket_health_check is not None
    ]
