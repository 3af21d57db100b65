"""The processes a benchmark run needs: two echo backends, nginx, wsgate.

Each is started on free loopback ports in its own session (so no signal of ours reaches
anything else), waited for by connecting to its port, and stopped by PID: SIGTERM, then
SIGKILL after a grace period; workers the master may have left behind are killed by their
recorded PID, only while that PID still names the same process (same start time).

nginx and wsgate read the same article-style configuration (:func:`proxy_conf`): the
``$connection_upgrade`` map, an upstream of the two backends, ``proxy_http_version 1.1``,
the ``Upgrade``/``Connection``/``Host``/``X-Real-IP``/``X-Forwarded-For`` headers,
``proxy_read_timeout 300s`` and an access log. nginx gets only what keeps its files inside
its prefix (``lock_file`` on the command line, the ``*_temp_path`` directives).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.procstat import descendants, proc_info

__all__ = [
    "NGINX",
    "REPO",
    "Service",
    "free_ports",
    "nginx_proxy",
    "node_backends",
    "proxy_conf",
    "wait_port",
    "wsgate_proxy",
]

REPO = Path(__file__).resolve().parents[1]
NGINX = os.environ.get("WSGATE_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
NOFILE = 20000  # worker_rlimit_nofile and worker_connections in the proxies' config
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Block until ``port`` accepts a connection; fail if ``proc`` exits first.

    Raises:
        RuntimeError: the process exited, or did not listen within START_TIMEOUT.
    """
    deadline = time.monotonic() + START_TIMEOUT
    delay = 0.005
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on {port}:\n{_tail(log)}") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return ""


@dataclass
class Service:
    """A running process tree that we started."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    workers: list[tuple[int, int]] = field(default_factory=list)  # (pid, start ticks)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        """The live children of the root (a proxy's workers)."""
        return descendants(self.pid)

    def remember_workers(self) -> None:
        """Record the descendants now, so that :meth:`stop` can make sure they are gone."""
        for pid in descendants(self.pid):
            info = proc_info(pid)
            if info is not None:
                self.workers.append((pid, info.start_ticks))

    def stop(self) -> None:
        """SIGTERM the root, SIGKILL it after STOP_TIMEOUT, then any recorded worker left."""
        self.remember_workers()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        deadline = time.monotonic() + STOP_TIMEOUT
        for pid, start in self.workers:
            while (info := proc_info(pid)) is not None and info.start_ticks == start:
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.02)


def _spawn(
    cmd: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )


@contextlib.contextmanager
def node_backends(workdir: Path, n: int = 2) -> Iterator[list[Service]]:
    """``n`` node ``ws`` echo backends (``bench/echo_server.js``), stopped on exit."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed (the backends are node ws echo servers)")
    if not (REPO / "node_modules" / "ws").is_dir():
        raise RuntimeError("node_modules/ws is missing: run `make node`")
    env = dict(os.environ, NODE_PATH=str(REPO / "node_modules"))
    services: list[Service] = []
    try:
        for i, port in enumerate(free_ports(n)):
            log = workdir / f"backend{i}.log"
            proc = _spawn([node, str(REPO / "bench" / "echo_server.js"), str(port)], log, env)
            services.append(Service(f"backend{i}", proc, port, log))
            wait_port(port, proc, f"node echo backend on {port}", log)
        yield services
    finally:
        for s in services:
            s.stop()


# What turns wsgate's frame-aware relay on without changing the traffic: limits no
# benchmark message reaches and a Ping interval longer than any run (docs/websocket.md).
FRAMES = "   websocket_max_message_size 16m;\n   websocket_ping_interval 300s;\n"


def proxy_conf(
    port: int,
    backends: Sequence[int],
    workers: int,
    nginx: bool,
    frames: bool = False,
    keepalive: bool = False,
) -> str:
    """The article-style configuration (see the module docstring); ``frames`` adds
    :data:`FRAMES` to the location; ``keepalive`` keeps idle connections to the backends
    (``keepalive 32``, and no ``Connection: close`` on plain requests, as nginx's docs
    for ``keepalive`` ask)."""
    nofile = min(NOFILE, _hard_nofile())
    servers = "".join(f"  server 127.0.0.1:{b};\n" for b in backends)
    no_upgrade = '""' if keepalive else "close"  # $connection_upgrade without an Upgrade
    kept = "  keepalive 32;\n" if keepalive else ""
    temp = "".join(f" {k}_temp_path tmp/{k};\n" for k in _TEMP_PATHS) if nginx else ""
    return (
        f"worker_processes {workers};\n"
        f"worker_rlimit_nofile {nofile};\n"
        "pid logs/proxy.pid;\n"
        "error_log logs/error.log;\n"
        f"events {{ worker_connections {nofile}; }}\n"
        "http {\n"
        f"{temp}"
        " map $http_upgrade $connection_upgrade {\n"
        "  default upgrade;\n"
        f"  ''      {no_upgrade};\n"
        " }\n"
        " upstream websocket {\n"
        f"{servers}"
        f"{kept}"
        " }\n"
        " server {\n"
        f"  listen 127.0.0.1:{port};\n"
        "  server_name localhost;\n"
        "  access_log logs/access.log;\n"
        "  location / {\n"
        "   proxy_pass http://websocket;\n"
        "   proxy_read_timeout 300s;\n"
        "   proxy_set_header Host $host;\n"
        "   proxy_set_header X-Real-IP $remote_addr;\n"
        "   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "   proxy_http_version 1.1;\n"
        "   proxy_set_header Upgrade $http_upgrade;\n"
        "   proxy_set_header Connection $connection_upgrade;\n"
        f"{FRAMES if frames else ''}"
        "  }\n"
        " }\n"
        "}\n"
    )


def _hard_nofile() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def _prefix(workdir: Path, name: str) -> Path:
    prefix = workdir / name
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    return prefix


def _started(
    name: str, proc: subprocess.Popen[bytes], port: int, log: Path, workers: bool = True
) -> Service:
    service = Service(name, proc, port, log)
    try:
        wait_port(port, proc, name, log)
        if not workers:
            return service
        # The master forks its workers before or right after it listens: wait for them.
        deadline = time.monotonic() + START_TIMEOUT
        while not service.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.01)
        service.remember_workers()
    except BaseException:
        service.stop()
        raise
    return service


def nginx_proxy(
    workdir: Path, name: str, backends: Sequence[int], workers: int, keepalive: bool = False
) -> Service:
    """Start nginx (master + ``workers`` workers) on a free port; the caller stops it."""
    if not (Path(NGINX).is_file() and os.access(NGINX, os.X_OK)):
        raise RuntimeError(f"nginx is not installed ({NGINX})")
    prefix = _prefix(workdir, name)
    port = free_ports(1)[0]
    (prefix / "nginx.conf").write_text(
        proxy_conf(port, backends, workers, nginx=True, keepalive=keepalive)
    )
    log = prefix / "stderr.log"
    cmd = [NGINX, "-p", str(prefix), "-c", "nginx.conf", "-g", "daemon off; lock_file logs/lock;"]
    return _started(name, _spawn(cmd, log), port, log)


def wsgate_proxy(
    workdir: Path,
    name: str,
    backends: Sequence[int],
    workers: int,
    frames: bool = False,
    keepalive: bool = False,
) -> Service:
    """Start ``wsgate proxy`` (master + ``workers`` workers); the caller stops it."""
    prefix = _prefix(workdir, name)
    port = free_ports(1)[0]
    conf = prefix / "wsgate.conf"
    conf.write_text(
        proxy_conf(port, backends, workers, nginx=False, frames=frames, keepalive=keepalive)
    )
    log = prefix / "stderr.log"
    cmd = [sys.executable, "-m", "wsgate", "proxy", "-c", str(conf), "-p", str(prefix)]
    return _started(name, _spawn(cmd, log), port, log)


def floor_proxy(workdir: Path, name: str, backends: Sequence[int]) -> Service:
    """Start :mod:`bench.floor` (one process, no workers) on a free port; the caller stops it."""
    prefix = _prefix(workdir, name)
    port = free_ports(1)[0]
    log = prefix / "stderr.log"
    cmd = [sys.executable, "-m", "bench.floor", str(port), *map(str, backends)]
    return _started(name, _spawn(cmd, log), port, log, workers=False)
