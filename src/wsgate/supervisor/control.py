"""``wsgate proxy -s stop|quit|reopen|reload``: signal the running master through its pid
file (``ngx_signal_process``; messages are nginx's, nginx-semantics.md §6.5)."""

from __future__ import annotations

import os
import signal

from wsgate.conf.model import MainConf
from wsgate.supervisor.master import pid_path

__all__ = ["SIGNALS", "signal_master"]

SIGNALS = {
    "stop": signal.SIGTERM,
    "quit": signal.SIGQUIT,
    "reopen": signal.SIGUSR1,
    "reload": signal.SIGHUP,
}


def signal_master(conf: MainConf, name: str) -> tuple[int, str | None]:
    """Send the signal named ``name`` to the master whose pid file ``conf`` names.

    Returns (exit code, message to print as ``wsgate: MESSAGE`` or ``None``).
    """
    path = pid_path(conf)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        return 1, f'[error] open() "{path}" failed ({exc.errno}: {exc.strerror})'
    text = raw.strip().decode("latin-1")
    if not text.isdigit():
        return 1, f'[error] invalid PID number "{text}" in "{path}"'
    pid = int(text)
    sig = SIGNALS[name]
    try:
        os.kill(pid, sig)
    except OSError as exc:
        return 1, f"[alert] kill({pid}, {int(sig)}) failed ({exc.errno}: {exc.strerror})"
    return 0, None
