"""Flags of ``wsgate cat``: wscat 6.1.0's, then wsgate's own; the client is in ``wsgate.cat``.

wscat's flags keep wscat's meaning, so that ``wsgate cat`` is a drop-in for it; the flags under
"beyond wscat" are new and change nothing unless given.
"""

from __future__ import annotations

import argparse
import math
import re
import sys

from wsgate.cat import client
from wsgate.cat.display import BinaryDisplay
from wsgate.cat.options import DEFAULT_MAX_REDIRECTS, DEFAULT_RECONNECT, ERROR_EXIT
from wsgate.cat.terminal import DEFAULT, YELLOW
from wsgate.cli.args import port

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


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _max_redirects(text: str) -> float:
    """JavaScript's ``parseInt`` (what wscat applies): a leading integer, else no limit.

    ws compares ``redirects > maxRedirects``, which is never true for ``NaN``.
    """
    match = re.match(r"\s*([+-]?\d+)", text)
    return math.inf if match is None else int(match.group(1))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``cat`` flags on ``parser``; the caller then parses and calls :func:`run`."""
    parser.set_defaults(cat_help=parser.format_help)
    mode = parser.add_argument_group("mode (one of)")
    mode.add_argument("-c", "--connect", metavar="URL", help="connect to a WebSocket server")
    mode.add_argument("-l", "--listen", type=port, metavar="PORT", help="listen on port")

    wscat = parser.add_argument_group("wscat options")
    wscat.add_argument(
        "-x",
        "--execute",
        action="append",
        metavar="MSG",
        help="send MSG once connected, print the replies and close after --wait seconds; "
        "repeat to send several (stdin is not read) (--connect only)",
    )
    wscat.add_argument(
        "-w",
        "--wait",
        type=_seconds,
        metavar="SEC",
        help=f"seconds to wait after -x, or after stdin EOF for missing replies "
        f"(default {client.DEFAULT_WAIT:g}; -1 holds the connection open)",
    )
    wscat.add_argument(
        "-H",
        "--header",
        action="append",
        type=_header,
        metavar="NAME:VALUE",
        help="set an HTTP header; repeat to set several (--connect only)",
    )
    wscat.add_argument("-o", "--origin", help="optional origin")
    wscat.add_argument("--host", help="optional host (the Host header)")
    wscat.add_argument(
        "-s",
        "--subprotocol",
        action="append",
        metavar="PROTOCOL",
        help="optional subprotocol; repeat to offer several",
    )
    wscat.add_argument(
        "-p", "--protocol", metavar="VERSION", help="optional protocol version (8 or 13)"
    )
    wscat.add_argument("--no-color", dest="color", action="store_false", help="run without color")
    wscat.add_argument(
        "-P",
        "--show-ping-pong",
        action="store_true",
        help="print a notification when a ping or pong is received (--connect only)",
    )
    wscat.add_argument(
        "--slash",
        action="store_true",
        help="enable slash commands for control frames "
        "(/ping [data], /pong [data], /close [code [reason]]) (--connect only)",
    )
    wscat.add_argument(
        "-n",
        "--no-check",
        dest="check",
        action="store_false",
        help="do not check for unauthorized certificates (--connect only)",
    )
    wscat.add_argument(
        "--auth", metavar="USERNAME:PASSWORD", help="add basic HTTP authentication header"
    )
    wscat.add_argument("--ca", help="specify a Certificate Authority file (--connect only)")
    wscat.add_argument("--cert", help="specify a client SSL certificate file (--connect only)")
    wscat.add_argument(
        "--key", help="specify the client SSL certificate's key file (--connect only)"
    )
    wscat.add_argument(
        "--passphrase",
        nargs="?",
        const=True,
        metavar="PASSPHRASE",
        help="passphrase of the client SSL certificate's key (--connect only); "
        "prompted for when no value is given",
    )
    wscat.add_argument("-L", "--location", action="store_true", help="follow redirects")
    wscat.add_argument(
        "--max-redirects",
        nargs="?",
        type=_max_redirects,
        const=1,
        default=DEFAULT_MAX_REDIRECTS,
        metavar="NUM",
        help="maximum number of redirects allowed (default: %(default)s)",
    )
    wscat.add_argument(
        "--proxy",
        metavar="[http://]HOST[:PORT]",
        help="connect via a proxy; the proxy must support the CONNECT method",
    )

    extra = parser.add_argument_group("beyond wscat")
    extra.add_argument(
        "-b", "--binary", action="store_true", help="send each line (and -x) as a binary message"
    )
    extra.add_argument(
        "--binary-display",
        choices=[display.value for display in BinaryDisplay],
        default=BinaryDisplay.TEXT.value,
        help="show incoming binary messages as UTF-8 text (wscat), space-separated hex "
        "or base64 (default: %(default)s)",
    )
    extra.add_argument(
        "--json",
        action="store_true",
        help="pretty-print text messages that are JSON objects or arrays",
    )
    extra.add_argument(
        "--reconnect",
        nargs="?",
        type=_positive_seconds,
        const=DEFAULT_RECONNECT,
        metavar="SECONDS",
        help="after a drop or a temporary connection error, connect again; the first delay "
        f"is SECONDS (default {DEFAULT_RECONNECT:g}), doubled after each failed attempt "
        f"up to {client.MAX_RECONNECT_DELAY:g} (--connect only)",
    )
    extra.add_argument(
        "--ping-interval",
        type=_positive_seconds,
        metavar="SEC",
        help="send a ping every SEC seconds and show each round-trip time",
    )
    extra.add_argument(
        "--timestamps", action="store_true", help="start every line with the local time"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``wsgate cat``; return 0, or 255 after an error (as wscat does)."""
    if args.listen is not None and args.connect is not None:
        # wscat writes this one with colour codes, terminal or not.
        sys.stderr.write(f"{YELLOW}error: Use either --listen or --connect{DEFAULT}\n")
        return ERROR_EXIT
    if args.listen is None and args.connect is None:
        sys.stdout.write(args.cat_help())  # wscat: program.help(), exit code 0
        return 0
    if args.listen is not None and args.reconnect is not None:
        sys.stderr.write("error: --reconnect needs --connect\n")
        return ERROR_EXIT
    return client.run(args)
