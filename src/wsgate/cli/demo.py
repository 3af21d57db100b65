"""``wsgate demo``: the whole seed article in one command.

Two echo servers (ports 8010 and 8011, the article's ``server.js``) and the proxy on 8080
with the embedded default configuration, in one process and one event loop. Prints the
command to try, runs until Ctrl-C, then stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import uvloop

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``wsgate demo``."""
    parser.add_argument("--port", type=int, default=8080, help="proxy port (default 8080)")
    parser.add_argument(
        "--backend-ports",
        type=int,
        nargs=2,
        default=(8010, 8011),
        metavar=("A", "B"),
        help="echo server ports (default 8010 8011)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo until SIGINT/SIGTERM; 0 on a clean stop, 1 if a port is taken."""
    return uvloop.run(_demo(args.port, tuple(args.backend_ports)))


async def _demo(port: int, backends: tuple[int, ...]) -> int:
    from wsgate.cli.proxy import DEFAULT_CONF_NAME, default_conf_text
    from wsgate.conf.build import load
    from wsgate.echo.server import serve_echo
    from wsgate.proxy.worker import Worker

    text = default_conf_text()
    text = text.replace("listen    8080;", f"listen    {port};")
    for default, actual in zip((8010, 8011), backends, strict=True):
        text = text.replace(f"localhost:{default};", f"localhost:{actual};")
    conf = load(DEFAULT_CONF_NAME, text=text, prefix=".")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready = asyncio.Event()
    echo = asyncio.create_task(serve_echo(ports=list(backends), ready=ready, stop=stop))
    await ready.wait()
    worker = Worker(conf, loop)
    try:
        await worker.start()
    except OSError as exc:
        print(
            f"wsgate: [emerg] bind() to 0.0.0.0:{port} failed ({exc.errno}: {exc.strerror})",
            file=sys.stderr,
        )
        stop.set()
        await echo
        return 1
    print(
        f"wsgate demo: echo servers on ports {backends[0]} and {backends[1]}, "
        f"proxy on port {port} (the article's config).\n"
        f"Try:  wsgate cat -c ws://127.0.0.1:{port}\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    await stop.wait()
    await worker.stop(graceful=False)
    await echo
    print("wsgate demo: stopped.", flush=True)
    return 0
