"""``wsgate`` root command: dispatches to ``proxy``, ``echo``, ``cat`` and ``demo``.

Each subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from wsgate import __version__

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the root parser with every subcommand registered."""
    from wsgate.cli import cat, demo, echo, proxy

    parser = argparse.ArgumentParser(
        prog="wsgate",
        description="WebSocket-aware reverse proxy that reads nginx configuration, "
        "with an echo server and a wscat-compatible client.",
    )
    parser.add_argument("--version", action="version", version=f"wsgate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module, help_text in (
        ("proxy", proxy, "run the reverse proxy (nginx-compatible flags)"),
        ("echo", echo, "run the article's WebSocket echo server"),
        ("cat", cat, "wscat-compatible WebSocket client"),
        ("demo", demo, "run the whole article: two echo servers and the proxy"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text, add_help=name != "proxy")
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the subcommand, return its exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "proxy":
        # nginx-style flags (-t, -T, -s reload, -g ...) are parsed by hand, as nginx does.
        from wsgate.cli import proxy

        return proxy.main(args_list[1:])
    parser = build_parser()
    args = parser.parse_args(args_list)
    code: int = args.run(args)
    return code
