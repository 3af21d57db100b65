"""Run the real nginx for differential tests, with every file it touches under ``tmp_path``.

``run_nginx(conf_text, tmp_path, ports)`` writes ``conf_text`` to ``PREFIX/nginx.conf``
(``PREFIX = tmp_path / "nginx"``), starts ``nginx -p PREFIX -c nginx.conf`` in the
foreground, waits until every port in ``ports`` accepts connections, and stops nginx by its
PID on exit. Use literal free ports in ``conf_text`` (``tests.support.ports.free_ports``).

What is added so that nothing is written outside PREFIX (the Debian build's compiled-in
paths point at ``/var/log/nginx``, ``/var/lib/nginx`` and ``/run``), each only when
``conf_text`` does not mention that directive itself:

* on the command line (``-g``): ``daemon off;``, ``master_process off;`` (one process that
  is also the only worker; as root it never switches to ``user nobody``), ``pid
  logs/nginx.pid;``, ``lock_file logs/nginx.lock;`` and ``error_log logs/error.log info;``;
* on the line of the first ``http {``, so that line numbers in messages stay true:
  ``access_log logs/access.log;`` and the five ``*_temp_path`` directives (``tmp/...``).

The Debian build's startup error log is ``stderr``: messages logged before the config's
``error_log`` is open (``[emerg]`` config errors among them) arrive there in full error-log
format (``2026/01/01 00:00:00 [emerg] 123#123: unknown directive ...``), and
``nginx: ...`` lines come from ``-t``. ``run_nginx`` sends stderr to ``PREFIX/stderr.log``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.procs import require_peer

__all__ = ["NGINX", "NginxRun", "nginx_test", "require_nginx", "run_nginx", "run_nginx_async"]

NGINX = os.environ.get("WSGATE_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
START_TIMEOUT = 15.0  # seconds for nginx to listen on every port
STOP_TIMEOUT = 10.0  # seconds for nginx to exit after SIGTERM before SIGKILL

_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
_HTTP_OPEN = re.compile(r"(?:^|(?<=[\s;{}]))http\s*\{")


def require_nginx() -> str:
    """The nginx binary to run; skips the test (fails under WSGATE_REQUIRE_PEERS=1) if absent."""
    present = Path(NGINX).is_file() and os.access(NGINX, os.X_OK)
    require_peer(f"nginx ({NGINX})", present)
    return NGINX


@dataclass(frozen=True, slots=True)
class NginxRun:
    """A running nginx: where its files are, and its process."""

    prefix: Path
    conf: Path
    access_log: Path  # the default one; a config with its own access_log chooses its path
    error_log: Path  # likewise
    stderr_log: Path
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def error_text(self) -> str:
        """What nginx wrote to ``error_log`` so far ("" before the first line)."""
        return self.error_log.read_text() if self.error_log.exists() else ""

    def access_text(self) -> str:
        """What nginx wrote to ``access_log`` so far (written when each request ends)."""
        return self.access_log.read_text() if self.access_log.exists() else ""

    def stderr_text(self) -> str:
        return self.stderr_log.read_text() if self.stderr_log.exists() else ""


def _mentions(conf_text: str, directive: str) -> bool:
    return re.search(rf"(?<![\w$]){re.escape(directive)}(?!\w)", conf_text) is not None


def _prepare(
    conf_text: str, tmp_path: Path, error_log_level: str, master_process: bool
) -> tuple[Path, list[str]]:
    """Write the config under ``tmp_path / "nginx"``; return the prefix and ``-g`` text."""
    prefix = tmp_path / "nginx"
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)

    extra = []
    if not _mentions(conf_text, "access_log"):
        extra.append("access_log logs/access.log;")
    for kind in _TEMP_PATHS:
        if not _mentions(conf_text, f"{kind}_temp_path"):
            extra.append(f"{kind}_temp_path tmp/{kind};")
    match = _HTTP_OPEN.search(conf_text)
    if match is not None and extra:
        conf_text = conf_text[: match.end()] + " " + " ".join(extra) + conf_text[match.end() :]
    (prefix / "nginx.conf").write_text(conf_text)

    globals_ = ["daemon off;"]
    if not master_process and not _mentions(conf_text, "master_process"):
        globals_.append("master_process off;")
    for directive, value in (
        ("pid", "logs/nginx.pid"),
        ("lock_file", "logs/nginx.lock"),
        ("error_log", f"logs/error.log {error_log_level}"),
    ):
        if not _mentions(conf_text, directive):
            globals_.append(f"{directive} {value};")
    return prefix, globals_


def nginx_test(conf_text: str, tmp_path: Path) -> tuple[int, str]:
    """Run ``nginx -t`` on ``conf_text``; return its exit status and stderr.

    The config is ``tmp_path/nginx/nginx.conf``; messages name it by that absolute path.
    ``error_log`` is not added, so every message lands on stderr.
    """
    nginx = require_nginx()
    prefix, globals_ = _prepare(conf_text, tmp_path, "info", master_process=False)
    globals_ = [g for g in globals_ if not g.startswith("error_log")]
    done = subprocess.run(
        [nginx, "-t", "-p", str(prefix), "-c", "nginx.conf", "-g", " ".join(globals_)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode, done.stderr.decode(errors="replace")


def _wait_listening(run: NginxRun, ports: Sequence[int]) -> None:
    """Block until nginx accepts on every port; fail fast if it exits first."""
    deadline = time.monotonic() + START_TIMEOUT
    for port in ports:
        delay = 0.005
        while True:
            if run.process.poll() is not None:
                raise AssertionError(
                    f"nginx exited with {run.process.returncode} before listening on {port}\n"
                    f"stderr:\n{run.stderr_text()}\nerror.log:\n{run.error_text()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"nginx did not listen on {port} within {START_TIMEOUT}s\n"
                        f"stderr:\n{run.stderr_text()}\nerror.log:\n{run.error_text()}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # fast shutdown
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextmanager
def run_nginx(
    conf_text: str,
    tmp_path: Path,
    ports: Sequence[int],
    *,
    error_log_level: str = "info",
    master_process: bool = False,
) -> Iterator[NginxRun]:
    """Run nginx on ``conf_text`` until the block ends (see the module docstring).

    Args:
        conf_text: a whole ``nginx.conf``; relative paths resolve against the prefix.
        tmp_path: pytest's ``tmp_path``; the prefix is ``tmp_path / "nginx"``.
        ports: every port nginx listens on; all must accept before the block runs.
        error_log_level: level of the added ``error_log``.
        master_process: run a master and its workers (as root the workers become
            ``nobody``); the default is one process that does everything.

    Raises:
        AssertionError: nginx exited or did not listen in time (stderr and error.log
            are in the message).
    """
    nginx = require_nginx()
    prefix, globals_ = _prepare(conf_text, tmp_path, error_log_level, master_process)
    stderr_log = prefix / "stderr.log"
    with stderr_log.open("wb") as stderr:
        process = subprocess.Popen(
            [nginx, "-p", str(prefix), "-c", "nginx.conf", "-g", " ".join(globals_)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
        )
    run = NginxRun(
        prefix=prefix,
        conf=prefix / "nginx.conf",
        access_log=prefix / "logs" / "access.log",
        error_log=prefix / "logs" / "error.log",
        stderr_log=stderr_log,
        process=process,
    )
    try:
        _wait_listening(run, ports)
        yield run
    finally:
        _stop(process)


@asynccontextmanager
async def run_nginx_async(
    conf_text: str,
    tmp_path: Path,
    ports: Sequence[int],
    *,
    error_log_level: str = "info",
    master_process: bool = False,
) -> AsyncIterator[NginxRun]:
    """:func:`run_nginx` for ``async`` tests: start and stop run in a thread, so backends
    served by the test's own event loop keep answering meanwhile."""
    manager = run_nginx(
        conf_text, tmp_path, ports, error_log_level=error_log_level, master_process=master_process
    )
    run = await asyncio.to_thread(manager.__enter__)
    try:
        yield run
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)
