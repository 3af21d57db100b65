"""Flags of ``wsgate cat`` (wscat 6.1.0's connect-mode flags); the client is in ``wsgate.cat``."""

from __future__ import annotations

import argparse
import re

from wsgate.cat import client

__all__ = ["add_arguments", "run"]

# RFC 9110 section 5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _header(text: str) -> tuple[str, str]:
    """``-H 'name:value'`` -> ``(name, value)``, split at the first colon as wscat does."""
    name, colon, value = text.partition(":")
    if not colon or not _TOKEN.fullmatch(name):
        raise argparse.ArgumentTypeError(f"invalid header {text!r} (expected NAME:VALUE)")
    return name, value.strip(" \t")


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``cat`` flags on ``parser``; the caller then parses and calls :func:`run`."""
    parser.add_argument(
        "-c", "--connect", required=True, metavar="URL", help="connect to a WebSocket server"
    )
    parser.add_argument(
        "-x",
        "--execute",
        action="append",
        metavar="MSG",
        help="send MSG once connected, print the replies and close after --wait seconds; "
        "repeat to send several (stdin is not read)",
    )
    parser.add_argument(
        "-w",
        "--wait",
        type=_seconds,
        metavar="SEC",
        help=f"seconds to wait after -x, or after stdin EOF for missing replies "
        f"(default {client.DEFAULT_WAIT:g}; -1 holds the connection open)",
    )
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        type=_header,
        metavar="NAME:VALUE",
        help="set an HTTP header; repeat to set several",
    )
    parser.add_argument("-o", "--origin", help="optional origin")
    parser.add_argument("--host", help="optional host (the Host header)")
    parser.add_argument(
        "-s",
        "--subprotocol",
        action="append",
        metavar="PROTOCOL",
        help="optional subprotocol; repeat to offer several",
    )
    parser.add_argument("--no-color", dest="color", action="store_false", help="run without color")
    parser.add_argument(
        "-P",
        "--show-ping-pong",
        action="store_true",
        help="print a notification when a ping or pong is received",
    )
    parser.add_argument(
        "--slash",
        action="store_true",
        help="enable slash commands for control frames "
        "(/ping [data], /pong [data], /close [code [reason]])",
    )
    parser.add_argument(
        "-n",
        "--no-check",
        dest="check",
        action="store_false",
        help="do not check for unauthorized certificates",
    )
    parser.add_argument(
        "--auth", metavar="USERNAME:PASSWORD", help="add basic HTTP authentication header"
    )
    parser.add_argument("--ca", help="specify a Certificate Authority file")
    parser.add_argument("--cert", help="specify a client SSL certificate file")
    parser.add_argument("--key", help="specify the client SSL certificate's key file")
    parser.add_argument("--passphrase", help="passphrase of the client SSL certificate's key")


def run(args: argparse.Namespace) -> int:
    """Run one ``wsgate cat`` session; return 0, or 255 after an error (as wscat does)."""
    return client.run(args)
