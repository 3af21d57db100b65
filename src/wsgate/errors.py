"""The exception tree of wsgate.

Library code raises these; only ``wsgate.cli`` turns them into messages and exit codes.

::

    WsgateError
    ├── ConfigError(message, file, line)   str() -> '<message> in <file>:<line>'  (nginx [emerg])
    ├── HTTPError(message, status)          a client request that must be refused with `status`
    └── UpstreamError(message, failure)     one attempt at a peer failed (see proxy.upstream)

Messages copy nginx's wording word for word (docs: nginx-semantics.md section 6.2).
"""

from __future__ import annotations

__all__ = ["ConfigError", "HTTPError", "UpstreamError", "WsgateError"]


class WsgateError(Exception):
    """Base class of every error wsgate raises on purpose."""


class ConfigError(WsgateError):
    """A configuration nginx would reject, with nginx's message.

    ``file`` and ``line`` are where nginx reports the error (the line of the token that ends
    the directive, see ``conf.lexer``). Some nginx messages carry no location (for example
    ``unknown "x" variable``); then both are ``None``.
    """

    def __init__(
        self, message: str, file: str | None = None, line: int | None = None, level: str = "emerg"
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.level = level  # the error-log level nginx logs it at (a few are "crit")

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        return f"{self.message} in {self.file}:{self.line}"


class HTTPError(WsgateError):
    """A client request wsgate refuses; the caller answers with ``status`` and closes."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class UpstreamError(WsgateError):
    """One attempt at an upstream peer failed; ``failure`` names the kind (error, timeout...)."""

    def __init__(self, message: str, failure: str) -> None:
        super().__init__(message)
        self.message = message
        self.failure = failure
