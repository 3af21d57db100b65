"""Child processes for tests: start, wait for readiness, stop by PID (only our own)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.ports import wait_for_port

__all__ = ["REPO", "node_module", "require_peer", "running", "wsgate_cmd"]

REPO = Path(__file__).resolve().parents[2]


def require_peer(what: str, present: bool) -> None:
    """Skip the test when a real peer is missing, or fail when WSGATE_REQUIRE_PEERS=1 (CI)."""
    if present:
        return
    if os.environ.get("WSGATE_REQUIRE_PEERS") == "1":
        pytest.fail(f"required interop peer is missing: {what}")
    pytest.skip(f"interop peer not installed: {what}")


def node_module(name: str) -> Path:
    """Path of an npm package installed by `make node` (skips or fails when absent)."""
    path = REPO / "node_modules" / name
    require_peer(
        f"npm package {name} (run `make node`)", path.is_dir() and bool(shutil.which("node"))
    )
    return path


def wsgate_cmd(*args: str) -> list[str]:
    """The command line that runs ``wsgate ARGS`` with this interpreter."""
    return [sys.executable, "-m", "wsgate", *args]


@contextmanager
def running(
    cmd: Sequence[str],
    *,
    port: int | None = None,
    ports: Sequence[int] = (),
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    stdout: int | None = subprocess.PIPE,
    stderr: int | None = subprocess.PIPE,
    stdin: int | None = subprocess.DEVNULL,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd``, wait until it listens on every port given, and stop it (by PID) on exit.

    The process runs in its own session so that SIGTERM reaches nothing else.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=full_env,
        stdout=stdout,
        stderr=stderr,
        stdin=stdin,
        start_new_session=True,
    )
    try:
        for p in [*(() if port is None else (port,)), *ports]:
            try:
                wait_for_port(p)
            except TimeoutError:
                proc.kill()
                out, err = proc.communicate(timeout=5)
                raise AssertionError(
                    f"{cmd} did not listen on {p}: rc={proc.returncode}\n"
                    f"stdout={out!r}\nstderr={err!r}"
                ) from None
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream is not None:
                stream.close()
