"""The master process: binds the listen sockets once, runs the workers, handles signals.

Theory of operation (``ngx_master_process_cycle``, nginx-semantics.md §2.4, §6.5):

* The master never runs an event loop. It blocks its signals and takes them one at a time
  with ``signal.sigtimedwait``, so a handler can never interrupt another (uvicorn's
  "signal handlers only queue" rule, without the queue).
* Workers are forked. Every worker inherits the same listening sockets, and the kernel
  hands each new connection to one of the workers blocked in ``accept``. The sockets belong
  to the master for its whole life, so a reload never closes a socket and never loses a
  connection waiting in an accept queue. That is why wsgate shares one socket per address
  rather than using ``SO_REUSEPORT``: with ``SO_REUSEPORT`` each worker has its own queue,
  and connections queued on an old worker's socket are reset when that worker exits.
* Generations: a reload (HUP) loads and checks the new configuration first. If it is
  bad, the error is logged and the old workers keep running. If it is good, the master
  starts a new generation of workers (which accept at once), then retires the old ones
  with :data:`RETIRE` (QUIT in nginx; the same graceful stop, told apart only by
  ``websocket_drain``). An old worker stops accepting, finishes its HTTP requests, and
  keeps its tunnels, with the old configuration, until they end or
  ``worker_shutdown_timeout`` passes.
* A worker that dies without being asked to is logged (``[alert] worker process N exited
  on signal 9``) and replaced. Workers hold the read end of a pipe whose write end only
  the master keeps; if the master dies, they see EOF and stop gracefully.

Signals: HUP reload, QUIT graceful stop, TERM/INT fast stop, USR1 reopen logs, CHLD reap.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wsgate.conf.model import ListenConf, MainConf
from wsgate.errors import ConfigError
from wsgate.log.error_log import ErrorLog
from wsgate.proxy import metrics
from wsgate.proxy.stats import Stats, StatsTable
from wsgate.proxy.worker import bind_listen_socket
from wsgate.routing import Router

__all__ = ["Master", "listen_key", "pid_path"]

SIGNALS = (
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGUSR1,
    signal.SIGCHLD,
)
# Sent to the workers of an old generation on reload: a graceful stop, told apart from
# QUIT so that websocket_drain closes their tunnels with its reload= code (wsgate's own;
# nginx sends QUIT). Blocked from fork until the worker's handler exists; the master
# never waits for it.
RETIRE = signal.SIGWINCH

_NAMES: dict[int, tuple[str, str]] = {
    signal.SIGHUP: ("SIGHUP", ", reconfiguring"),
    signal.SIGQUIT: ("SIGQUIT", ", shutting down"),
    signal.SIGTERM: ("SIGTERM", ", exiting"),
    signal.SIGINT: ("SIGINT", ", exiting"),
    signal.SIGUSR1: ("SIGUSR1", ", reopening logs"),
}

# Rows of the stub_status table: workers of every generation alive at once (old ones
# drain their tunnels); one past this gets counters of its own, not summed.
STATS_SLOTS = 1024

# How long a fast stop (TERM/INT) waits for workers before it kills them.
FAST_STOP_GRACE = 5.0


def pid_path(conf: MainConf) -> str:
    """Where the pid file is: ``pid`` (relative to the prefix), default ``logs/nginx.pid``."""
    path = conf.pid if conf.pid is not None else "logs/nginx.pid"
    return path if os.path.isabs(path) else os.path.join(conf.prefix, path)


def listen_key(lc: ListenConf) -> tuple[str, int, bool]:
    """The identity of a listen socket across reloads."""
    return (lc.host, lc.port, lc.ipv6)


def worker_count(conf: MainConf) -> int:
    """``worker_processes``, with ``auto`` (stored as 0) = the number of CPUs."""
    return conf.worker_processes or os.cpu_count() or 1


@dataclass(eq=False)
class WorkerProc:
    """One forked worker as the master sees it."""

    pid: int
    generation: int
    slot: int | None = None  # its row in the stub_status table
    exiting: bool = False


@dataclass(eq=False)
class Master:
    """Runs one configuration's workers until QUIT, TERM or INT.

    Args:
        conf: the loaded configuration.
        reload_conf: loads the configuration again from its source (for HUP); raises
            ConfigError when it is bad.
        start_worker: what a forked child runs (``supervisor.worker.main``); it must not
            return to the caller's stack, and exits the process itself.
    """

    conf: MainConf
    reload_conf: Callable[[], MainConf]
    start_worker: Callable[[MainConf, list[socket.socket], int, Stats], None]
    log: ErrorLog = field(init=False)
    sockets: dict[tuple[str, int, bool], socket.socket] = field(default_factory=dict)
    workers: dict[int, WorkerProc] = field(default_factory=dict)
    generation: int = 0
    stopping: str = ""  # "", "graceful" or "fast"
    pid_file: str | None = None

    def __post_init__(self) -> None:
        self.log = ErrorLog(self.conf.error_log, self.conf.prefix)
        self._alive_r, self._alive_w = os.pipe()
        # stub_status counters shared with every worker (mapped before any fork).
        self.stats_table = StatsTable(STATS_SLOTS)
        self.free_slots = list(range(STATS_SLOTS - 1, -1, -1))
        # wsgate_metrics: the workers' metric files, in a directory made by run().
        self.metrics_dir: str | None = None

    # -- start and stop ------------------------------------------------------------------

    def run(self) -> int:
        """Bind, start the workers and serve signals until the last worker is gone.

        Returns the exit code (0, or 1 when the sockets cannot be bound).
        """
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, (*SIGNALS, RETIRE))
        try:
            try:
                self._bind(self.conf)
            except OSError as exc:
                self.log.log("emerg", f"bind() failed ({exc.errno}: {exc.strerror})")
                return 1
            self._write_pid()
            self.metrics_dir = metrics.enable_multiprocess()
            self.reloads = metrics.reloads_counter(None)
            self._spawn_generation()
            while self.workers or not self.stopping:
                info = signal.sigtimedwait(SIGNALS, 1.0)
                if info is not None:
                    self._dispatch(info.si_signo, info.si_pid)
                self._reap()
            self.log.log("notice", "exit")
            return 0
        finally:
            self._remove_pid()
            for sock in self.sockets.values():
                sock.close()
            os.close(self._alive_w)
            os.close(self._alive_r)
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            if self.metrics_dir is not None:
                metrics.disable_multiprocess(self.metrics_dir)
                self.metrics_dir = None

    def _write_pid(self) -> None:
        path = pid_path(self.conf)
        try:
            with open(path, "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError as exc:
            if self.conf.pid is not None:
                raise
            # No pid directive and no logs/ directory: run without a pid file (documented).
            self.log.log(
                "notice", f'no pid file: open() "{path}" failed ({exc.errno}: {exc.strerror})'
            )
            return
        self.pid_file = path

    def _remove_pid(self) -> None:
        if self.pid_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.pid_file)
            self.pid_file = None

    # -- sockets and workers ---------------------------------------------------------------

    def _bind(self, conf: MainConf) -> None:
        """Make ``self.sockets`` hold exactly the sockets ``conf`` listens on, keeping the
        ones that already exist (a reload never rebinds a kept address)."""
        wanted: dict[tuple[str, int, bool], ListenConf] = {}
        if conf.http is not None:
            for lc in Router(conf.http).listen_addresses():
                wanted[listen_key(lc)] = lc
        new: dict[tuple[str, int, bool], socket.socket] = {}
        try:
            for key, lc in wanted.items():
                new[key] = self.sockets[key] if key in self.sockets else bind_listen_socket(lc)
        except OSError:
            for key, sock in new.items():
                if key not in self.sockets:
                    sock.close()
            raise
        for key, sock in self.sockets.items():
            if key not in new:
                sock.close()
        self.sockets = new

    def _spawn_generation(self) -> None:
        self.generation += 1
        for _ in range(worker_count(self.conf)):
            self._spawn()

    def _spawn(self) -> None:
        slot = self.free_slots.pop() if self.free_slots else None
        pid = os.fork()
        if pid == 0:  # the child: never returns into the master's code
            code = 1
            try:
                os.close(self._alive_w)
                # Signals stay blocked: the worker unblocks them once its handlers are in
                # place, so a QUIT sent right after the fork is handled, not fatal.
                stats = Stats(self.stats_table, slot) if slot is not None else Stats()
                self.start_worker(self.conf, list(self.sockets.values()), self._alive_r, stats)
                code = 0
            finally:
                os._exit(code)
        self.workers[pid] = WorkerProc(pid, self.generation, slot)
        self.log.log("notice", f"start worker process {pid}")

    def _signal_workers(self, sig: int, generation: int | None = None) -> None:
        for w in self.workers.values():
            if generation is not None and w.generation != generation:
                continue
            if sig in (signal.SIGQUIT, signal.SIGTERM):
                w.exiting = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, sig)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.pop(pid, None)
            if w is None:
                continue
            metrics.mark_dead(pid)  # its gauges go; its counters stay in the sums
            if w.slot is not None:
                self.stats_table.zero_gauges(w.slot)
                self.free_slots.append(w.slot)
            if os.WIFSIGNALED(status):
                how = f"exited on signal {os.WTERMSIG(status)}"
            else:
                how = f"exited with code {os.WEXITSTATUS(status)}"
            if w.exiting or self.stopping:
                self.log.log("notice", f"worker process {pid} {how}")
                continue
            # ngx_reap_children: a worker that died on its own is replaced.
            self.log.log("alert", f"worker process {pid} {how}")
            if w.generation == self.generation:
                self._spawn()

    # -- signals --------------------------------------------------------------------------

    def _dispatch(self, sig: int, sender: int) -> None:
        if sig == signal.SIGCHLD:
            return  # _reap runs after every signal
        name, what = _NAMES.get(sig, (str(sig), ""))
        self.log.log("notice", f"signal {int(sig)} ({name}) received from {sender}{what}")
        if sig == signal.SIGHUP:
            self.handle_hup()
        elif sig == signal.SIGQUIT:
            self.handle_quit()
        elif sig in (signal.SIGTERM, signal.SIGINT):
            self.handle_term()
        elif sig == signal.SIGUSR1:
            self.handle_usr1()

    def handle_hup(self) -> None:
        """Reload: test the new configuration, start new workers, retire the old ones."""
        if self.stopping:
            return
        try:
            conf = self.reload_conf()
            self._bind(conf)
        except ConfigError as exc:
            self.log.log(exc.level, str(exc))
            return
        except OSError as exc:
            self.log.log("emerg", f"bind() failed ({exc.errno}: {exc.strerror})")
            return
        self.conf = conf
        self.log.close()
        self.log = ErrorLog(conf.error_log, conf.prefix)
        self._spawn_generation()
        self.reloads.inc()
        for w in self.workers.values():
            if w.generation < self.generation:
                w.exiting = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, RETIRE)

    def handle_quit(self) -> None:
        """Graceful stop: workers finish their requests and tunnels, then the master exits."""
        if self.stopping == "fast":
            return
        self.stopping = "graceful"
        self.log.log("notice", "gracefully shutting down")
        self._signal_workers(signal.SIGQUIT)
        for sock in self.sockets.values():
            sock.close()
        self.sockets = {}

    def handle_term(self) -> None:
        """Fast stop: workers drop their connections; stragglers are killed."""
        self.stopping = "fast"
        self.log.log("notice", "exiting")
        self._signal_workers(signal.SIGTERM)
        deadline = time.monotonic() + FAST_STOP_GRACE
        while self.workers and time.monotonic() < deadline:
            signal.sigtimedwait((signal.SIGCHLD,), 0.1)
            self._reap()
        self._signal_workers(signal.SIGKILL)

    def handle_usr1(self) -> None:
        """Reopen the master's log and tell every worker to reopen theirs (logrotate)."""
        self.log.open()
        self._signal_workers(signal.SIGUSR1)
