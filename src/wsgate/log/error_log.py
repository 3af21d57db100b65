"""The error log in nginx's line format (``ngx_log_error_core``, nginx-semantics.md §5.3).

``YYYY/MM/DD HH:MM:SS [level] PID#0: *CONN message while ACTION, client: ADDR, server:
NAME, request: "LINE", upstream: "URL", host: "HOST"``. One :class:`ErrorLog` per worker;
call :meth:`ErrorLog.log` with the connection's context; lines below the configured level
cost one comparison.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import TextIO

__all__ = ["LEVELS", "ErrorContext", "ErrorLog"]

LEVELS = {
    "debug": 8,
    "info": 7,
    "notice": 6,
    "warn": 5,
    "error": 4,
    "crit": 3,
    "alert": 2,
    "emerg": 1,
}


@dataclass(slots=True)
class ErrorContext:
    """What nginx appends to a request's error lines (``ngx_http_log_error_handler``)."""

    conn: int
    client: str
    server: str = ""
    request: str | None = None
    upstream: str | None = None
    host: str | None = None


class ErrorLog:
    """Writes nginx-format lines to the configured targets (a path or ``stderr``)."""

    def __init__(self, targets: tuple[tuple[str, str], ...], prefix: str = ".") -> None:
        self.targets = targets
        self.prefix = prefix
        self._files: list[tuple[int, TextIO, bool]] = []
        self.level = 0
        self.open()

    def open(self) -> None:
        """(Re)open every target; call again on USR1 (reopen) after rotation."""
        self.close()
        for path, level in self.targets:
            n = LEVELS[level]
            if path == "stderr":
                self._files.append((n, sys.stderr, False))
                continue
            full = path if os.path.isabs(path) else os.path.join(self.prefix, path)
            f = open(full, "a", buffering=1, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
            self._files.append((n, f, True))
        self.level = max((n for n, _, _ in self._files), default=0)

    def close(self) -> None:
        """Close the files this log opened."""
        for _, f, owned in self._files:
            if owned:
                f.close()
        self._files = []

    def enabled(self, level: str) -> bool:
        """Whether a line at ``level`` would be written anywhere."""
        return LEVELS[level] <= self.level

    def log(
        self,
        level: str,
        message: str,
        ctx: ErrorContext | None = None,
        action: str | None = None,
    ) -> None:
        """Write one line at ``level`` (``info``, ``warn``, ``error``...)."""
        n = LEVELS[level]
        if n > self.level:
            return
        line = self.format(level, message, ctx, action)
        for limit, f, _ in self._files:
            if n <= limit:
                f.write(line)
                f.flush()

    @staticmethod
    def format(level: str, message: str, ctx: ErrorContext | None, action: str | None) -> str:
        """One complete line, newline included."""
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        parts = [f"{stamp} [{level}] {os.getpid()}#0: "]
        if ctx is not None:
            parts.append(f"*{ctx.conn} ")
        parts.append(message)
        if action:
            parts.append(f" while {action}")
        if ctx is not None:
            parts.append(f", client: {ctx.client}, server: {ctx.server}")
            if ctx.request is not None:
                parts.append(f', request: "{ctx.request}"')
            if ctx.upstream is not None:
                parts.append(f', upstream: "{ctx.upstream}"')
            if ctx.host is not None:
                parts.append(f', host: "{ctx.host}"')
        parts.append("\n")
        return "".join(parts)
