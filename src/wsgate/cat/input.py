"""Input side of ``wsgate cat``: stdin lines on a pipe, or keys on a terminal in raw mode.

stdin is read by a daemon thread with ``os.read`` and the bytes are handed to the event loop
with ``call_soon_threadsafe`` (the websockets CLI model; raw reads keep the thread off
``sys.stdin``'s lock, which a blocked reader would hold at interpreter exit). On the loop:

* :class:`PipeInput` splits the bytes into lines (``\\n`` or ``\\r\\n``; a last line without a
  newline counts, as node's readline does; invalid UTF-8 becomes U+FFFD) and puts them in a
  :class:`LineQueue`, then marks the end of input;
* :class:`KeyboardInput` hands the text to :meth:`wsgate.cat.terminal.Terminal.keys` (the line
  editor echoes it) and queues the submitted lines; Ctrl-C and Ctrl-D on an empty line call
  ``on_close`` instead, as readline's ``close`` makes wscat quit.

:func:`raw_mode` sets the terminal the way libuv's ``uv_tty_set_mode(UV_TTY_MODE_RAW)`` does
for node (no echo, no line buffering, no signals from keys; output processing stays on) and
restores it afterwards.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import os
import termios
import threading
from collections.abc import Callable, Iterator

from wsgate.cat.editor import Close, Submit
from wsgate.cat.terminal import Terminal

__all__ = ["KeyboardInput", "LineQueue", "PipeInput", "raw_mode", "start_reader"]


class LineQueue:
    """Lines waiting to be sent, then the end of input, which stays once reached.

    Producers call :meth:`put` and :meth:`end`; the session awaits :meth:`get`, which returns
    ``None`` at (and forever after) the end of input. A line taken but not sent (the peer went
    away meanwhile) goes back to the front with :meth:`unget`.
    """

    def __init__(self) -> None:
        self._lines: collections.deque[str] = collections.deque()
        self._ended = False
        self._changed = asyncio.Event()
        self._end = asyncio.Event()

    def put(self, line: str) -> None:
        """Queue ``line`` (ignored after :meth:`end`)."""
        if not self._ended:
            self._lines.append(line)
            self._changed.set()

    def end(self) -> None:
        """Mark the end of input: :meth:`get` returns ``None`` once the lines are taken."""
        self._ended = True
        self._changed.set()
        self._end.set()

    def unget(self, line: str) -> None:
        """Put ``line`` back at the front of the queue."""
        self._lines.appendleft(line)
        self._changed.set()

    @property
    def pending(self) -> int:
        """How many lines wait to be taken."""
        return len(self._lines)

    @property
    def ended(self) -> bool:
        """Whether :meth:`end` was called (lines may still wait to be taken)."""
        return self._ended

    async def wait_ended(self) -> None:
        """Wait until :meth:`end` is called."""
        await self._end.wait()

    @property
    def exhausted(self) -> bool:
        """Whether input has ended and every line was taken."""
        return self._ended and not self._lines

    async def get(self) -> str | None:
        """Wait for the next line; ``None`` once input has ended and no line is left."""
        while not self._lines:
            if self._ended:
                return None
            self._changed.clear()
            await self._changed.wait()
        return self._lines.popleft()


def start_reader(
    fd: int, loop: asyncio.AbstractEventLoop, on_data: Callable[[bytes], None]
) -> threading.Thread:
    """Read ``fd`` in a daemon thread and call ``on_data`` on ``loop`` with each chunk.

    ``on_data(b"")`` marks the end of input (EOF or a read error); the thread then ends. It
    ends quietly too once ``loop`` is closed.
    """

    def read() -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            try:
                loop.call_soon_threadsafe(on_data, chunk)
            except RuntimeError:  # the loop is closed: the session is over
                return
            if not chunk:
                return

    thread = threading.Thread(target=read, name="wsgate-cat-stdin", daemon=True)
    thread.start()
    return thread


class PipeInput:
    """Turn stdin bytes from a pipe (or a file, or a terminal in cooked mode) into lines.

    Pass :meth:`data` to :func:`start_reader` as ``on_data``.
    """

    def __init__(self, lines: LineQueue) -> None:
        self.lines = lines
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def data(self, chunk: bytes) -> None:
        """Handle one chunk read from stdin; ``b""`` is the end of input."""
        self._partial += self._decoder.decode(chunk, final=not chunk)
        *complete, self._partial = self._partial.split("\n")
        for line in complete:
            self.lines.put(line.removesuffix("\r"))
        if not chunk:
            if self._partial:
                self.lines.put(self._partial)
                self._partial = ""
            self.lines.end()


class KeyboardInput:
    """Turn keys typed on a terminal in raw mode into lines, through the line editor.

    Pass :meth:`data` to :func:`start_reader` as ``on_data``. ``on_close`` is called for Ctrl-C,
    Ctrl-D on an empty line, and the terminal going away.
    """

    def __init__(self, terminal: Terminal, lines: LineQueue, on_close: Callable[[], None]) -> None:
        self.terminal = terminal
        self.lines = lines
        self.on_close = on_close
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def data(self, chunk: bytes) -> None:
        """Handle one chunk read from the terminal; ``b""`` means it went away."""
        if not chunk:
            self.on_close()
            return
        for event in self.terminal.keys(self._decoder.decode(chunk)):
            if isinstance(event, Submit):
                self.lines.put(event.line)
            elif isinstance(event, Close):
                self.on_close()


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """Put the terminal ``fd`` in node's raw mode for the duration of the block."""
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
    mode[1] |= termios.ONLCR | termios.OPOST
    mode[2] |= termios.CS8
    mode[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
    mode[6][termios.VMIN] = 1
    mode[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSADRAIN, mode)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
