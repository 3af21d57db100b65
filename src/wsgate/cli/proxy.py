"""``wsgate proxy``: nginx's command line (``ngx_get_options``, nginx-semantics.md §6.5).

Flags: ``-c FILE``, ``-p PREFIX``, ``-t``, ``-T``, ``-q``, ``-s stop|quit|reopen|reload``,
``-v``, ``-V``, ``-h``/``-?``. With ``master_process on`` (the default) the proxy runs as
a master and ``worker_processes`` workers (``supervisor``); with ``off``, in one process.
Messages are nginx's with ``wsgate:`` in place of ``nginx:``. With no ``-c`` the embedded
default (the seed article's configuration on port 8080) is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from importlib import resources

import uvloop

from wsgate import __version__
from wsgate.conf.build import finish, parse
from wsgate.conf.model import MainConf
from wsgate.errors import ConfigError
from wsgate.supervisor.control import SIGNALS, signal_master
from wsgate.supervisor.master import Master
from wsgate.supervisor.worker import main as worker_main

__all__ = ["DEFAULT_CONF_NAME", "add_arguments", "default_conf_text", "main", "run"]

DEFAULT_CONF_NAME = "<embedded>/default.conf"

USAGE = f"""wsgate version: wsgate/{__version__}
Usage: wsgate proxy [-?hvVtTq] [-s signal] [-c filename] [-p prefix]

Options:
  -?,-h         : this help
  -v            : show version and exit
  -V            : show version and configure options then exit
  -t            : test configuration and exit
  -T            : test configuration, dump it and exit
  -q            : suppress non-error messages during configuration testing
  -s signal     : send signal to a master process: stop, quit, reopen, reload
  -p prefix     : set prefix path (default: the configuration file's directory)
  -c filename   : set configuration file (default: the embedded article config)
"""


def default_conf_text() -> str:
    """The embedded default configuration (the article's, on port 8080)."""
    return resources.files("wsgate.conf").joinpath("default.conf").read_text(encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registered for ``wsgate --help`` only; the flags are parsed by :func:`main`."""
    parser.add_argument("nginx_flags", nargs=argparse.REMAINDER, help="nginx-style flags")


def run(args: argparse.Namespace) -> int:
    """Entry from the argparse root (not normally used: cli.main calls :func:`main`)."""
    return main(list(args.nginx_flags))


def _err(message: str) -> None:
    sys.stderr.write(f"wsgate: {message}\n")


def main(argv: Sequence[str]) -> int:
    """Parse nginx-style flags and run, test or dump the configuration. Returns the exit
    code (0, or 1 for every error, as nginx)."""
    conf_file: str | None = None
    prefix: str | None = None
    signal_name: str | None = None
    test = dump = quiet = False
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or arg == "-":
            _err(f'invalid option: "{arg}"')
            return 1
        j = 1
        while j < len(arg):
            ch = arg[j]
            j += 1
            if ch in "?h":
                sys.stderr.write(USAGE)
                return 0
            if ch in "vV":
                sys.stderr.write(f"wsgate version: wsgate/{__version__}\n")
                return 0
            if ch == "t":
                test = True
            elif ch == "T":
                test = dump = True
            elif ch == "q":
                quiet = True
            elif ch in "cps":
                value = arg[j:]
                if not value:
                    i += 1
                    if i >= len(args):
                        what = {"c": "file name", "p": "directory name", "s": "parameter"}[ch]
                        _err(f'option "-{ch}" requires {what}')
                        return 1
                    value = args[i]
                if ch == "c":
                    conf_file = value
                elif ch == "p":
                    prefix = value
                elif value in SIGNALS:
                    signal_name = value
                else:
                    _err(f'invalid option: "-s {value}"')
                    return 1
                break
            else:
                _err(f'invalid option: "{arg[j - 1 :]}"')
                return 1
        i += 1
    name = conf_file if conf_file is not None else DEFAULT_CONF_NAME
    try:
        conf = _load(name, conf_file is None, prefix, test, dump, quiet or signal_name is not None)
    except ConfigError as exc:
        _err(f"[{exc.level}] {exc}")
        if test:
            _err(f"configuration file {name} test failed")
        return 1
    except OSError as exc:
        _err(f'[emerg] open() "{exc.filename}" failed ({exc.errno}: {exc.strerror})')
        if test:
            _err(f"configuration file {name} test failed")
        return 1
    if test:
        if not quiet:
            _err(f"configuration file {name} test is successful")
        return 0
    if signal_name is not None:
        code, message = signal_master(conf, signal_name)
        if message is not None:
            _err(message)
        return code
    if not conf.master_process:
        return serve(conf)

    def reload_conf() -> MainConf:
        # HUP: the configuration is read again from the same place, and checked first.
        return _load(name, conf_file is None, prefix, False, False, True)

    return Master(conf, reload_conf, worker_main).run()


def _load(
    name: str, embedded: bool, prefix: str | None, test: bool, dump: bool, quiet: bool
) -> MainConf:
    text = default_conf_text() if embedded else None
    if embedded and prefix is None:
        prefix = os.getcwd()
    parsed = parse(name, text=text, prefix=prefix)
    if test and not quiet:
        _err(f"the configuration file {name} syntax is ok")
    conf = finish(parsed)
    _check_files(conf)
    if dump:
        for path, content in conf.files:
            sys.stdout.write(f"# configuration file {path}:\n{content}")
            if not content.endswith("\n"):
                sys.stdout.write("\n")
            sys.stdout.write("\n")
        sys.stdout.flush()
    return conf


def _check_files(conf: MainConf) -> None:
    """Open the log files as nginx does at start-up (and for ``-t``)."""
    from wsgate.log.access_log import AccessLogs
    from wsgate.log.error_log import ErrorLog

    ErrorLog(conf.error_log, conf.prefix).close()
    if conf.http is not None:
        # Certificates are loaded as nginx loads them for -t: a bad one fails the test.
        from wsgate.routing import Router
        from wsgate.tls import server_contexts, upstream_context

        router = Router(conf.http)
        server_contexts(conf.http, router.listen_addresses(), router.select_server)
        for server in conf.http.servers:
            stack = [*server.locations]
            while stack:
                loc = stack.pop()
                stack.extend(loc.locations)
                if loc.proxy_pass is not None and loc.proxy_pass.scheme == "https":
                    upstream_context(loc)
    logs = AccessLogs(conf.prefix)
    try:
        for server in conf.http.servers if conf.http is not None else ():
            stack = [server.defaults, *server.locations]
            while stack:
                loc = stack.pop()
                stack.extend(loc.locations)
                for al in loc.access_log:
                    logs.open(al.path)
    finally:
        logs.close()


def serve(conf: MainConf) -> int:
    """``master_process off``: run the proxy in this process until TERM/INT (fast) or
    QUIT (graceful)."""
    return uvloop.run(_serve(conf))


async def _serve(conf: MainConf) -> int:
    from wsgate.proxy.worker import Worker, settle_gc

    loop = asyncio.get_running_loop()
    stop: asyncio.Future[bool] = loop.create_future()
    worker: Worker | None = None
    if conf.http is not None:  # a config without http{} is valid and serves nothing
        worker = Worker(conf, loop)
        try:
            await worker.start()
        except OSError as exc:
            _err(f"[emerg] bind() failed ({exc.errno}: {exc.strerror})")
            return 1
        settle_gc()

    def on_signal(graceful: bool) -> None:
        if not stop.done():
            stop.set_result(graceful)

    for sig, graceful in ((signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGQUIT, True)):
        loop.add_signal_handler(sig, on_signal, graceful)
    if worker is not None:
        loop.add_signal_handler(signal.SIGUSR1, worker.reopen_logs)
    graceful = await stop
    if worker is not None:
        await worker.stop(graceful=graceful, timeout=conf.worker_shutdown_timeout)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
    return 0
