"""Run a terminal program under tmux, type into it and read its screen (for TTY transcripts).

Each :class:`Tmux` has its own server (``tmux -L`` with a name made of the test process' PID
and a counter), so tests never touch anyone else's tmux, and :meth:`Tmux.close` kills only
that server. The program runs as ``sh -c 'PROGRAM; echo "[exit $?]"; exec cat'``: the exit
line shows where the program left the cursor and its exit code, and ``cat`` keeps the pane
open for the last capture. Waits poll
``capture-pane`` until the text appears, with a deadline.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from tests.support.procs import require_peer

__all__ = ["EXIT_LINE", "Tmux", "require_tmux"]

#: How a finished program's exit code shows on the screen.
EXIT_LINE = re.compile(r"\[exit (\d+)\]")
POLL = 0.02
_NAMES = itertools.count()


def require_tmux() -> str:
    """Path of tmux; skips the test (fails under WSGATE_REQUIRE_PEERS=1) when missing."""
    path = shutil.which("tmux")
    require_peer("tmux (Debian package tmux)", path is not None)
    assert path is not None
    return path


class Tmux:
    """One tmux server with one window of ``width`` x ``height`` running a program."""

    def __init__(self, *, width: int = 120, height: int = 30) -> None:
        self.tmux = require_tmux()
        self.socket = f"wsgate-test-{os.getpid()}-{next(_NAMES)}"
        self.width = width
        self.height = height
        self.started = False

    def _run(self, *args: str) -> str:
        out = subprocess.run(
            [self.tmux, "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout

    def start(self, command: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        """Start ``command`` in a new window; call :meth:`wait_for` before typing."""
        script = f'{shlex.join(command)}; echo "[exit $?]"; exec cat'
        full_env = {**os.environ, **(env or {})}
        full_env.pop("TMUX", None)
        subprocess.run(
            [
                self.tmux,
                "-L",
                self.socket,
                "-f",
                os.devnull,
                "new-session",
                "-d",
                "-x",
                str(self.width),
                "-y",
                str(self.height),
                "sh",
                "-c",
                script,
            ],
            env=full_env,
            timeout=10,
            check=True,
        )
        self.started = True

    def keys(self, *keys: str) -> None:
        """Press keys by tmux name (``Enter``, ``C-c``, ``BSpace``, ``Left``...)."""
        self._run("send-keys", *keys)

    def type(self, text: str) -> None:
        """Type ``text`` literally."""
        self._run("send-keys", "-l", text)

    def screen(self, *, colors: bool = False) -> str:
        """The visible screen, one line per row, trailing blank rows dropped."""
        args = ["capture-pane", "-p"] + (["-e"] if colors else [])
        return self._run(*args).rstrip("\n")

    def wait_for(self, text: str | re.Pattern[str], timeout: float = 20.0) -> str:
        """Poll the screen until ``text`` (or the pattern) shows; return the screen.

        Raises:
            AssertionError: it did not show within ``timeout`` seconds (the screen is shown).
        """
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            found = text.search(screen) if isinstance(text, re.Pattern) else text in screen
            if found:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on the screen after {timeout}s:\n{screen}")
            time.sleep(POLL)

    def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait until the program has exited; return its exit code."""
        match = EXIT_LINE.search(self.wait_for(EXIT_LINE, timeout))
        assert match is not None
        return int(match.group(1))

    def close(self) -> None:
        """Kill this tmux server (and so the program, if it still runs)."""
        if self.started:
            subprocess.run(
                [self.tmux, "-L", self.socket, "kill-server"],
                capture_output=True,
                timeout=10,
                check=False,
            )
            self.started = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
