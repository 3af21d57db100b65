"""``wsgate echo``: the seed article's WebSocket echo server, on the ``websockets`` library."""

from __future__ import annotations

from wsgate.echo.server import (
    ARTICLE_PORT,
    DEFAULT_HOST,
    DEFAULT_MAX_SIZE,
    EchoServer,
    Mode,
    open_echo_server,
    serve_echo,
)

__all__ = [
    "ARTICLE_PORT",
    "DEFAULT_HOST",
    "DEFAULT_MAX_SIZE",
    "EchoServer",
    "Mode",
    "open_echo_server",
    "serve_echo",
]
