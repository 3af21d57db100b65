"""Run the wsgate proxy for tests: in-process on the test's event loop, or as a process.

``proxy_in_process(conf_text, tmp_path)`` loads the config text (literal free ports), starts
a :class:`~wsgate.proxy.worker.Worker` on the running loop and stops it on exit.
``proxy_process(conf_text, tmp_path, port)`` runs ``python -m wsgate proxy -c FILE`` and
waits until ``port`` accepts connections.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from tests.support.procs import running, wsgate_cmd
from wsgate.conf.build import load
from wsgate.proxy.worker import Worker

__all__ = ["proxy_in_process", "proxy_process"]


@asynccontextmanager
async def proxy_in_process(conf_text: str, tmp_path: Path) -> AsyncIterator[Worker]:
    """Load ``conf_text`` (written to ``tmp_path/wsgate.conf``) and serve it here."""
    path = tmp_path / "wsgate.conf"
    path.write_text(conf_text)
    (tmp_path / "logs").mkdir(exist_ok=True)
    conf = load(str(path), prefix=str(tmp_path))
    worker = Worker(conf)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop(graceful=False)


@contextmanager
def proxy_process(conf_text: str, tmp_path: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``wsgate proxy -c tmp_path/wsgate.conf`` until the block ends."""
    path = tmp_path / "wsgate.conf"
    path.write_text(conf_text)
    (tmp_path / "logs").mkdir(exist_ok=True)
    with running(wsgate_cmd("proxy", "-c", str(path)), port=port) as proc:
        yield proc
