"""A worker process: one uvloop event loop serving the inherited listen sockets.

:func:`main` runs in the child right after ``fork``. Signals (``ngx_worker_process_cycle``):
QUIT graceful stop (stop accepting, finish requests and tunnels, then exit, bounded by
``worker_shutdown_timeout``), WINCH the same graceful stop when a reload retires this
worker (``master.RETIRE``: ``websocket_drain`` uses its ``reload=`` code), TERM/INT fast
stop, USR1 reopen log files, HUP ignored (the master reloads). EOF on the master's pipe
means the master is gone: graceful stop.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket

import uvloop

from wsgate.conf.model import MainConf
from wsgate.proxy.stats import Stats
from wsgate.supervisor.master import RETIRE

__all__ = ["main"]


def main(conf: MainConf, sockets: list[socket.socket], master_fd: int, stats: Stats) -> None:
    """Run one worker until it is told to stop; the caller then ends the process."""
    if conf.worker_rlimit_nofile:
        n = conf.worker_rlimit_nofile
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        except (ValueError, OSError):
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    uvloop.run(_serve(conf, sockets, master_fd, stats))


async def _serve(
    conf: MainConf, sockets: list[socket.socket], master_fd: int, stats: Stats
) -> None:
    from wsgate.proxy.worker import Worker, settle_gc

    loop = asyncio.get_running_loop()
    worker = Worker(conf, loop, stats)
    # (graceful, retired by a reload)
    stop: asyncio.Future[tuple[bool, bool]] = loop.create_future()

    def request_stop(graceful: bool, reload: bool = False) -> None:
        if not stop.done():
            stop.set_result((graceful, reload))

    # The master forked us with these signals blocked; install the handlers, then let
    # any signal that arrived meanwhile through.
    loop.add_signal_handler(signal.SIGQUIT, request_stop, True)
    loop.add_signal_handler(signal.SIGTERM, request_stop, False)
    loop.add_signal_handler(signal.SIGINT, request_stop, False)
    loop.add_signal_handler(signal.SIGUSR1, worker.reopen_logs)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)
    loop.add_signal_handler(RETIRE, request_stop, True, True)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    await worker.start(sockets=[s.dup() for s in sockets])
    for s in sockets:
        s.close()
    settle_gc()

    def master_gone() -> None:
        try:
            data = os.read(master_fd, 1)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(master_fd)
            request_stop(True)

    os.set_blocking(master_fd, False)
    loop.add_reader(master_fd, master_gone)
    graceful, reload = await stop
    worker.stop_accepting()
    if graceful:
        # Logged once this worker no longer accepts: from here on, new connections go to
        # the other workers (tests wait for this line after a reload).
        worker.error_log.log("notice", "gracefully shutting down")
    await worker.stop(graceful=graceful, timeout=conf.worker_shutdown_timeout, reload=reload)
