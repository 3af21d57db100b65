"""One event loop's proxy: listeners, the shared per-worker state, graceful shutdown.

A :class:`Worker` is built from a loaded :class:`MainConf`; :meth:`Worker.start` binds
(or adopts) the listen sockets and serves until :meth:`Worker.stop`. Balancer state,
connection counters and log files are per worker, as in nginx without ``zone``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import socket
import ssl
from typing import TYPE_CHECKING

from wsgate import __version__
from wsgate.balancer import for_upstream
from wsgate.balancer.base import Balancer
from wsgate.conf.model import ListenConf, LocationConf, MainConf
from wsgate.log.access_log import AccessLogs
from wsgate.log.error_log import ErrorLog
from wsgate.proxy.keepalive import KeepaliveCache
from wsgate.proxy.metrics import Metrics
from wsgate.proxy.stats import Stats
from wsgate.proxy.tunnel import IdleSweep, Tunnel
from wsgate.proxy.wstunnel import CLOSE_GRACE, FrameTunnel
from wsgate.routing import Router
from wsgate.tls import server_contexts, upstream_context
from wsgate.vars.registry import TUNNEL_LATE, reads_late

if TYPE_CHECKING:
    from wsgate.proxy.downstream import Downstream
    from wsgate.proxy.health import HealthChecker
    from wsgate.proxy.native import NativeRelay, NativeTunnel

__all__ = ["Worker", "bind_listen_socket", "settle_gc"]

# The youngest generation's threshold once serving (CPython's default is 700): a request
# allocates a few hundred container objects, most of them freed by reference counting.
GC_GEN0_THRESHOLD = 50_000


def settle_gc() -> None:
    """Once a serving process has started: move everything alive (modules, the
    configuration, the worker) out of the collector's sight with ``gc.freeze``, so that
    its full collections scan only what requests create, and collect the youngest
    generation less often."""
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def _bound_address(lc: ListenConf) -> tuple[str, int]:
    """The (host, port) ``getsockname`` reports for the socket of ``lc``."""
    return ("0.0.0.0" if lc.host == "*" else lc.host, lc.port)


BACKLOG = 511  # NGX_LISTEN_BACKLOG on Linux


def bind_listen_socket(lc: ListenConf, backlog: int = BACKLOG) -> socket.socket:
    """Create, bind and listen a socket for one ``listen`` address.

    Raises:
        OSError: nginx reports it as ``bind() to ADDR failed (98: Address already in use)``.
    """
    family = socket.AF_INET6 if lc.ipv6 else socket.AF_INET
    host = lc.host
    if host == "*":
        host = "0.0.0.0"
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if lc.ipv6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, lc.port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Worker:
    """The proxy for one configuration on one event loop."""

    def __init__(
        self,
        conf: MainConf,
        loop: asyncio.AbstractEventLoop | None = None,
        stats: Stats | None = None,
    ) -> None:
        if conf.http is None:
            raise ValueError("configuration has no http block")
        self.conf = conf
        # stub_status counters: this worker's slot of the master's shared table.
        self.stats = stats if stats is not None else Stats()
        self.http = conf.http
        self.loop = loop or asyncio.get_running_loop()
        self.router = Router(conf.http)
        # TLS contexts are built now, so a bad certificate fails start-up, not a request.
        self.tls = server_contexts(
            conf.http, self.router.listen_addresses(), self.router.select_server
        )
        self.upstream_tls: dict[int, ssl.SSLContext] = {}
        for server in conf.http.servers:
            stack = [server.defaults, *server.locations]
            while stack:
                loc = stack.pop()
                stack.extend(loc.locations)
                if loc.proxy_pass is not None and loc.proxy_pass.scheme == "https":
                    self.upstream_tls[id(loc)] = upstream_context(loc)
        self.balancers: dict[str, Balancer] = {
            key: for_upstream(u) for key, u in conf.http.upstreams.items()
        }
        # keepalive N: this worker's idle peer connections, per group that has it.
        self.keepalive: dict[str, KeepaliveCache] = {
            key: KeepaliveCache(self.loop, u)
            for key, u in conf.http.upstreams.items()
            if u.keepalive
        }
        # wsgate_metrics: this worker's Prometheus metrics (files shared by all workers
        # when the master enabled multiprocess mode).
        self.metrics = Metrics(self.stats)
        self.metric_groups = {
            key: (conf.http.upstreams[key].name, b) for key, b in self.balancers.items()
        }
        self.metrics.update_peers(self.metric_groups.values(), self.loop.time())
        self.error_log = ErrorLog(conf.error_log, conf.prefix)
        self.access_logs = AccessLogs(conf.prefix)
        self.counter = itertools.count(1)
        self.connections: set[Downstream] = set()
        self.tunnels: set[Tunnel | NativeTunnel] = set()
        # The C relay of plain tunnels (proxy/native.py): its thread starts with the first
        # such tunnel, so a master never has one when it forks.
        self.native: NativeRelay | None = None
        self.tunnels_opened = 0  # tunnels this worker opened (the status page's rate)
        # proxy_read_timeout of tunnels: one idle check per timeout value, not per tunnel.
        self.idle_sweeps: dict[float, IdleSweep] = {}
        self._tunnel_logs: dict[int, bool] = {}  # renders_tunnel_logs, by id(location)
        self.servers: list[asyncio.Server] = []
        # websocket_health_check: one checker per group with the directive, from start().
        self.health_checkers: list[HealthChecker] = []
        self.server_token = f"wsgate/{__version__}"
        self.closing = False
        self.draining = ""  # "quit" or "reload" once stop() runs (websocket_drain)
        self._idle = asyncio.Event()
        # worker_connections: a client connection counts one, its upstream connection one
        # more (so a tunnel holds two), as in ngx_get_connection.
        self.worker_connections = conf.events.worker_connections
        self.upstream_attempts = 0
        # limit_conn: zone name -> key -> requests in progress (per worker).
        self.limit_conn: dict[str, dict[str, int]] = {}

    def open_access_logs(self) -> None:
        """Open every configured access log now, so a bad path fails at start-up.

        Raises:
            OSError: a file cannot be opened.
        """
        for server in self.http.servers:
            stack = [server.defaults, *server.locations]
            while stack:
                loc = stack.pop()
                stack.extend(loc.locations)
                for al in loc.access_log:
                    self.access_logs.open(al.path)

    async def start(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving on ``sockets`` (bound by a supervisor) or bind them here."""
        from wsgate.proxy.downstream import Downstream

        listens = self.router.listen_addresses()
        if sockets is None:
            sockets = [bind_listen_socket(lc) for lc in listens]
        by_address = {_bound_address(lc): lc for lc in listens}
        for sock in sockets:
            host, port = sock.getsockname()[:2]
            lc = by_address.get((host, port))
            tls = self.tls.get((lc.host, lc.port, lc.ipv6)) if lc is not None else None
            # create_server listens again on `sock`: give nginx's backlog, not asyncio's 100
            # (a burst of connects against a starting worker would lose SYNs).
            if tls is None:
                server = await self.loop.create_server(
                    lambda: Downstream(self), sock=sock, backlog=BACKLOG
                )
            else:
                default = self.router.select_server(host, port, None)
                server = await self.loop.create_server(
                    lambda: Downstream(self),
                    sock=sock,
                    backlog=BACKLOG,
                    ssl=tls.context,
                    ssl_handshake_timeout=default.client_header_timeout or None,
                )
            self.servers.append(server)
        from wsgate.proxy.health import checkers_for

        self.health_checkers = checkers_for(self)
        for checker in self.health_checkers:
            checker.start()

    @property
    def active_connections(self) -> int:
        """Connections in use: clients, plus one per upstream attempt; a tunnel's two;
        cached idle upstream connections (keepalive)."""
        active = len(self.connections) + 2 * len(self.tunnels) + self.upstream_attempts
        if self.keepalive:
            active += sum(len(cache) for cache in self.keepalive.values())
        return active

    def connection_available(self) -> bool:
        """Whether one more connection fits in ``worker_connections``; logs nginx's alert
        when it does not (the caller then refuses the connection)."""
        if self.active_connections < self.worker_connections:
            return True
        self.error_log.log("alert", f"{self.worker_connections} worker_connections are not enough")
        return False

    def native_relay(self) -> NativeRelay | None:
        """The C relay for plain tunnels, started on first use (None once stopping)."""
        if self.native is None and not self.closing:
            from wsgate.proxy.native import NativeRelay

            self.native = NativeRelay(self.loop)
        return self.native

    def reopen_logs(self) -> None:
        """USR1: reopen the error log and the access logs (after logrotate moved them)."""
        self.error_log.open()
        self.access_logs.reopen()

    def bound_ports(self) -> list[int]:
        """Ports actually bound (useful when a config says port 0 in tests)."""
        ports = []
        for server in self.servers:
            for sock in server.sockets:
                ports.append(sock.getsockname()[1])
        return ports

    def idle_sweep(self, timeout: float) -> IdleSweep | None:
        """The idle check for tunnels with this ``proxy_read_timeout`` (None for 0: off)."""
        if timeout <= 0:
            return None
        sweep = self.idle_sweeps.get(timeout)
        if sweep is None:
            sweep = self.idle_sweeps[timeout] = IdleSweep(self.loop, timeout)
        return sweep

    def renders_tunnel_logs(self, loc: LocationConf) -> bool:
        """Whether a tunnel of ``loc`` may render its access-log lines when it opens: no
        map in their formats reads a variable known only at its end (``TUNNEL_LATE``)."""
        known = self._tunnel_logs.get(id(loc))
        if known is None:
            maps = self.http.maps
            known = not any(
                reads_late(al.format.template, maps, TUNNEL_LATE) for al in loc.access_log
            )
            self._tunnel_logs[id(loc)] = known
        return known

    def forget(self, conn: Downstream) -> None:
        """A connection ended; wake :meth:`stop` when the last one is gone."""
        self.connections.discard(conn)
        if self.closing and not self.connections and not self.tunnels:
            self._idle.set()

    def forget_tunnel(self, tunnel: Tunnel | NativeTunnel) -> None:
        """A tunnel ended (both its connections closed); wake :meth:`stop` as ``forget``."""
        self.tunnels.discard(tunnel)
        if self.closing and not self.connections and not self.tunnels:
            self._idle.set()

    def _drain_tunnels(self) -> bool:
        """Close every ``websocket_drain`` tunnel with its code for this shutdown
        (``quit=`` or ``reload=``); returns whether any was asked to close."""
        drained = False
        for tunnel in list(self.tunnels):
            if isinstance(tunnel, FrameTunnel) and tunnel.drain_conf is not None:
                conf = tunnel.drain_conf
                code = conf.reload if self.draining == "reload" else conf.quit
                drained = tunnel.drain(code) or drained
        return drained

    def stop_accepting(self) -> None:
        """Close this worker's listeners (the master and other workers keep theirs) and
        stop its health checks: no new request will need them."""
        self.closing = True
        for server in self.servers:
            server.close()
        for checker in self.health_checkers:
            checker.cancel()
        for cache in self.keepalive.values():
            cache.close()  # idle peer connections go at once (ngx_close_idle_connections)

    async def stop(
        self, graceful: bool = True, timeout: float | None = None, reload: bool = False
    ) -> None:
        """Stop accepting; close idle connections; wait for requests and tunnels to end.

        With ``graceful`` false (TERM/INT), or when ``timeout`` passes, every remaining
        connection is closed at once. Tunnels of ``websocket_drain`` locations get Close
        frames instead: at once on QUIT, when ``timeout`` passes on a reload (``reload``:
        the master retired this worker), and are given CLOSE_GRACE to answer.
        """
        self.stop_accepting()
        self.draining = "reload" if reload else "quit"
        for conn in list(self.connections):
            conn.shutdown()
        if graceful and not reload:
            self._drain_tunnels()
        if graceful and (self.connections or self.tunnels):
            try:
                async with asyncio.timeout(timeout):
                    await self._idle.wait()
            except TimeoutError:
                self._drain_tunnels()
                if any(isinstance(t, FrameTunnel) and t.winding for t in self.tunnels):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(CLOSE_GRACE + 0.5):
                            await self._idle.wait()
        if self.native is not None:
            self.native.abort_all()  # one round trip to the relay thread for all of them
        for tunnel in list(self.tunnels):
            tunnel.abort()
        for conn in list(self.connections):
            conn.abort()
        if self.native is not None:
            self.native.stop()  # joins the relay thread
        for server in self.servers:
            await server.wait_closed()
        for checker in self.health_checkers:
            await checker.wait()
        self.access_logs.close()
        self.error_log.close()
