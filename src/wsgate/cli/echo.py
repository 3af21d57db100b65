"""Flags of ``wsgate echo``; the server itself lives in :mod:`wsgate.echo.server`."""

from __future__ import annotations

import argparse

from wsgate.cli.args import port
from wsgate.echo import server

__all__ = ["add_arguments", "run"]


def _size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size in bytes: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"size must be >= 0: {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``echo`` flags on ``parser``; the caller then parses and calls :func:`run`."""
    parser.add_argument(
        "--host",
        default=server.DEFAULT_HOST,
        help="name or address to bind; every address it resolves to is bound "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--port",
        action="append",
        type=port,
        metavar="N",
        help=f"TCP port; repeat to serve several ports (default: {server.ARTICLE_PORT})",
    )
    parser.add_argument(
        "--mode",
        choices=[mode.value for mode in server.Mode],
        default=server.Mode.ARTICLE.value,
        help="article: reply 'Server received from client: <msg>'; echo: reply the message "
        "unchanged; discard: no reply (default: %(default)s)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="log nothing but 'Server started' (no connection and no message lines)",
    )
    parser.add_argument(
        "--max-size",
        type=_size,
        default=server.DEFAULT_MAX_SIZE,
        metavar="BYTES",
        help="largest incoming message; 0 means unlimited (default: %(default)s)",
    )
    parser.add_argument(
        "--no-compression",
        dest="compression",
        action="store_false",
        help="do not offer permessage-deflate",
    )
    parser.add_argument(
        "--cert",
        metavar="FILE",
        help="serve wss:// with this PEM certificate (chain); the key may be in it too",
    )
    parser.add_argument("--key", metavar="FILE", help="PEM private key for --cert")
    parser.add_argument(
        "--subprotocol",
        action="append",
        metavar="NAME",
        help="a subprotocol the server may choose; repeat for several. The first one the "
        "client offers that is in this list is chosen",
    )


def run(args: argparse.Namespace) -> int:
    """Run the echo server until SIGINT/SIGTERM; return 0, or 1 when a port cannot be bound."""
    return server.run(args)
