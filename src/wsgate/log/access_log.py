"""Access log files: one writer per path, shared by every ``access_log`` naming it.

A line is written (unbuffered, ``O_APPEND``) when a request or tunnel is finalized, as
nginx does without ``buffer=``; a tunnel's line is rendered when it opens but for the
variables known only at its end (:meth:`AccessLogs.write_parts`).
:meth:`AccessLogs.reopen` serves USR1 / log rotation.
"""

from __future__ import annotations

import contextlib
import os

from wsgate.conf.model import AccessLogConf
from wsgate.vars.compile import Var, to_bytes
from wsgate.vars.registry import RequestVars

__all__ = ["AccessLogs"]

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT
_STD_STREAMS = {"/dev/stdout": 1, "/dev/stderr": 2}


class AccessLogs:
    """Open access-log files by path (relative paths are under ``prefix``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._fds: dict[str, int] = {}

    def path(self, path: str) -> str:
        """The absolute path nginx would open for ``path``."""
        return path if os.path.isabs(path) else os.path.join(self.prefix, path)

    def open(self, path: str) -> int:
        """Open (once) and return the descriptor for ``path``.

        Raises:
            OSError: the file cannot be opened (nginx: ``open() "..." failed``).
        """
        full = self.path(path)
        fd = self._fds.get(full)
        if fd is None:
            std = _STD_STREAMS.get(full)
            # /dev/stdout opened anew would get its own file offset when stdout is a
            # regular file; share the process's descriptor instead.
            fd = os.dup(std) if std is not None else os.open(full, _FLAGS, 0o644)
            self._fds[full] = fd
        return fd

    def write(self, logs: tuple[AccessLogConf, ...], rv: RequestVars) -> None:
        """Write the line of each ``access_log`` for a finished request."""
        for conf in logs:
            line = rv.evaluate_log(conf.format.template, conf.format.escape) + "\n"
            # A full disk must not stop the proxy; nginx also goes on after a failed write.
            with contextlib.suppress(OSError):
                os.write(self.open(conf.path), to_bytes(line))

    def write_parts(
        self,
        logs: tuple[AccessLogConf, ...],
        lines: tuple[tuple[str | Var, ...], ...],
        rv: RequestVars,
    ) -> None:
        """Write lines rendered ahead (``RequestVars.prerender_log``, one per log of
        ``logs``), their remaining variables taken from ``rv``."""
        for conf, parts in zip(logs, lines, strict=True):
            line = rv.evaluate_log_parts(parts, conf.format.escape) + "\n"
            with contextlib.suppress(OSError):
                os.write(self.open(conf.path), to_bytes(line))

    def reopen(self) -> None:
        """Close every file; each is opened again on its next line (USR1)."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def close(self) -> None:
        """Close every file."""
        self.reopen()
