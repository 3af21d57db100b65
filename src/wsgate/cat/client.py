"""``wsgate cat``: wscat 6.1.0's connect mode (``-c URL``) and the command-line entry point.

Strings, exit codes and output rules are wscat's (``bin/wscat`` and the ``ws`` 8.x error texts,
see docs/peers.md section 2 "wscat exact behaviour"). Deliberate differences, all of them fixes
of wscat's known gaps (wscat#4, #141, PR #166):

* ``-x`` does not read stdin at all, so it works with stdin closed, at EOF or on a pipe.
* Lines read from stdin before the connection opens are queued and sent once it is open.
* At stdin EOF (a pipe or a file, not a terminal) the client does not quit at once: it waits
  until as many messages have arrived as lines were sent, or ``-w`` seconds (default 2; ``-1``
  holds the connection open), then closes with 1000 and exits 0.
* On a TTY, control characters from the peer are escaped (see :mod:`wsgate.cat.terminal`).
* When stdout is not a terminal, wscat's readline still writes its ``> `` prompt there after
  each line it sends (and, in listen mode, when a client connects); wsgate writes only the
  messages, so that ``wsgate cat ... < in > out`` gives clean output.
* wscat crashes with a stack trace (exit code 1) on a bad URL scheme, a bad ``-p`` value or a
  missing certificate file; wsgate prints ``error: <ws' message>`` and exits 255.
* ``--proxy host:port`` without a scheme means ``http://host:port`` (wscat's help promises
  it; its agent rejects it). Only ``http://`` proxies are supported.

New flags, off by default so that wscat's behaviour is kept: ``-b/--binary``,
``--binary-display``, ``--json``, ``--reconnect``, ``--ping-interval``, ``--timestamps`` (see
:mod:`wsgate.cli.cat`).

Theory of operation: :func:`run` prepares stdin and stdout (raw mode and a line editor when
both are terminals, see :mod:`wsgate.cat.input`), asks for the passphrase if needed, and runs
:func:`cat` or :func:`wsgate.cat.listen.listen`. :func:`cat` opens the connection with
:func:`wsgate.cat.connector.open_connection`; a session then runs tasks side by side: the
receiver shows every message until the connection closes; the driver sends the ``-x``
messages or the queued stdin lines; the pinger (``--ping-interval``). Whoever finishes first
ends the session, and the close code decides the last line and the exit code. With
``--reconnect``, a session that this side did not close, or a connection error that may be
temporary (refused, reset, 5xx), is followed by a new attempt after a growing delay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import io
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, Final, TextIO

import uvloop
from websockets.exceptions import ConnectionClosed

from wsgate.cat.connector import CatConnection, frame_error, open_connection, peer_failure
from wsgate.cat.editor import DEFAULT_COLUMNS, LineEditor
from wsgate.cat.input import KeyboardInput, LineQueue, PipeInput, raw_mode, start_reader
from wsgate.cat.options import (
    DEFAULT_WAIT,
    ERROR_EXIT,
    HOLD_OPEN,
    MAX_PAYLOAD,
    CatError,
    CatOptions,
    normalize_url,
    options_from_args,
    protocol_version,
)
from wsgate.cat.session import Session
from wsgate.cat.terminal import Terminal

__all__ = [
    "DEFAULT_WAIT",
    "ERROR_EXIT",
    "HOLD_OPEN",
    "MAX_PAYLOAD",
    "MAX_RECONNECT_DELAY",
    "CatError",
    "CatOptions",
    "cat",
    "normalize_url",
    "options_from_args",
    "run",
]

#: How long Ctrl-C waits for the closing handshake before dropping the TCP connection.
INTERRUPT_CLOSE_TIMEOUT: Final = 1.0
#: ``--reconnect`` doubles its delay after each failed attempt, up to this many seconds.
MAX_RECONNECT_DELAY: Final = 30.0
#: read's prompt in wscat (``read({prompt: 'Passphrase: ', silent: true, replace: '*'})``).
PASSPHRASE_PROMPT: Final = "Passphrase: "
#: Exit code when the passphrase prompt is cancelled (wscat dies of an unhandled rejection).
CANCELLED_EXIT: Final = 1


async def _race(task: asyncio.Future[Any], stop: asyncio.Event) -> bool:
    """Wait for ``task`` or ``stop``; return ``True`` if ``stop`` came first."""
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    return not task.done()


async def _finish(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait for them; re-raise the first unexpected error."""
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            raise result


class _Backoff:
    """``--reconnect`` delays: ``initial`` seconds, doubled after each failed attempt."""

    def __init__(self, initial: float) -> None:
        self.initial = initial
        self.delay = initial
        self.attempt = 0

    def reset(self) -> None:
        """Call once a connection opened: the next drop starts from ``initial`` again."""
        self.delay = self.initial
        self.attempt = 0

    async def wait(self, terminal: Terminal, stop: asyncio.Event) -> bool:
        """Announce the next attempt and wait for it; ``True`` when ``stop`` came first."""
        self.attempt += 1
        terminal.notice(f"Reconnecting in {self.delay:g} s (attempt {self.attempt})")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.delay):
                await stop.wait()
        self.delay = min(self.delay * 2, MAX_RECONNECT_DELAY)
        return stop.is_set()


@dataclasses.dataclass(frozen=True, slots=True)
class _Outcome:
    """How a session ended: Ctrl-C, a frame error from the peer, or a close."""

    interrupted: bool
    failure: Exception | None
    closed_here: bool


async def _drive(session: Session, lines: LineQueue) -> None:
    """Send the ``-x`` messages or the stdin lines; return once the connection is closing."""
    try:
        if session.options.execute:
            await session.execute()
            return
        while (line := await lines.get()) is not None:
            if not await session.send_line(line):
                return  # /close: the closing handshake is under way
            session.terminal.prompt()
        await session.linger(wait_for_replies=True)
    except ConnectionClosed:
        pass  # the receiver sees the close too and ends the session


async def _run_session(
    options: CatOptions,
    terminal: Terminal,
    connection: CatConnection,
    lines: LineQueue,
    stop: asyncio.Event,
) -> _Outcome:
    session = Session(options, terminal, connection, slash=options.slash)
    if not options.execute:
        terminal.control("Connected (press CTRL+C to quit)")
    receiver = asyncio.ensure_future(session.receive())
    driver = asyncio.ensure_future(_drive(session, lines))
    stopper = asyncio.ensure_future(stop.wait())
    tasks = [receiver, driver, stopper]
    if options.ping_interval is not None:
        tasks.append(asyncio.ensure_future(session.ping_loop(options.ping_interval)))
    await asyncio.wait({receiver, driver, stopper}, return_when=asyncio.FIRST_COMPLETED)
    interrupted = stopper.done() and not receiver.done() and not driver.done()
    if interrupted:
        driver.cancel()
        session.closing = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(INTERRUPT_CLOSE_TIMEOUT):
                await connection.close()
        connection.transport.abort()
    else:
        # Idempotent: a no-op when the peer or the driver closed the connection; otherwise
        # the driver failed (say, stdout became a broken pipe) and its error is re-raised.
        await connection.close()
    await connection.wait_closed()
    await asyncio.wait({receiver})
    await _finish(tasks)
    return _Outcome(interrupted, peer_failure(connection), session.closing)


async def cat(
    options: CatOptions,
    terminal: Terminal,
    *,
    stdin_fd: int | None = None,
    stop: asyncio.Event | None = None,
    lines: LineQueue | None = None,
) -> int:
    """Run one ``wsgate cat -c`` session and return the exit code (0, or 255 after an error).

    Call it inside a running event loop; :func:`run` does that for the command line. Output
    goes through ``terminal``. Lines come from ``lines`` when given (the caller feeds it);
    otherwise they are read from ``stdin_fd`` unless ``-x`` was given, and ``stdin_fd=None``
    counts as stdin already at EOF. Setting ``stop`` acts as Ctrl-C: the connection is closed
    and 0 returned without a ``Disconnected`` line (wscat prints none, and leaves the prompt).
    """
    stop = asyncio.Event() if stop is None else stop
    try:
        protocol_version(options.protocol)  # ws checks it before the URL
        normalize_url(options.url)
    except CatError as exc:
        terminal.error(exc.message)
        return ERROR_EXIT
    if lines is None:
        lines = LineQueue()
        if options.execute or stdin_fd is None:
            lines.end()
        else:
            start_reader(stdin_fd, asyncio.get_running_loop(), PipeInput(lines).data)

    backoff = None if options.reconnect is None else _Backoff(options.reconnect)
    while True:
        connecting = asyncio.ensure_future(open_connection(options))
        if await _race(connecting, stop):
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, CatError):
                await connecting
            return 0
        try:
            connection = connecting.result()
        except CatError as exc:
            terminal.error(exc.message)
            if backoff is not None and exc.transient:
                if await backoff.wait(terminal, stop):
                    return 0
                continue
            return ERROR_EXIT
        if backoff is not None:
            backoff.reset()

        outcome = await _run_session(options, terminal, connection, lines, stop)
        if outcome.interrupted:
            return 0
        if outcome.failure is not None:
            terminal.error(frame_error(outcome.failure))
            if backoff is None:
                return ERROR_EXIT
        elif not options.execute:
            code = connection.close_code
            reason = connection.close_reason or ""
            terminal.control(f'Disconnected (code: {code}, reason: "{reason}")')
        if backoff is not None and not outcome.closed_here:
            if await backoff.wait(terminal, stop):
                return 0
            continue
        terminal.clear()
        return 0


async def _ask_passphrase(
    terminal: Terminal, lines: LineQueue, stop: asyncio.Event, keyboard: bool
) -> str | None:
    """wscat's ``--passphrase`` prompt; ``None`` when cancelled with Ctrl-C.

    On a terminal the answer is typed after ``Passphrase: `` and shown as ``*``; otherwise
    the prompt is written to stdout and the first stdin line is the answer (EOF: empty).
    """
    if keyboard and terminal.editor is not None:
        session_editor = terminal.editor
        masked = LineEditor(PASSPHRASE_PROMPT, columns=session_editor.columns, mask="*")
        terminal.editor = masked
        terminal.stdout.write(masked.refresh())
        terminal.stdout.flush()
        try:
            line = asyncio.ensure_future(lines.get())
            if await _race(line, stop):
                line.cancel()
                return None
            return line.result() or ""
        finally:
            terminal.editor = session_editor
    terminal.stdout.write(PASSPHRASE_PROMPT)
    terminal.stdout.flush()
    return await lines.get() or ""


def _reserve_standard_fds() -> None:
    """Point closed descriptors 0-2 at /dev/null, so that no socket is given one of them.

    Run with ``<&-``, the first socket would otherwise become fd 0, and the event loop (uvloop
    asserts ``fd > STDERR_FILENO``) or a later write to "stdout" would misbehave.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _output_stream(stream: TextIO | None, fd: int) -> TextIO:
    """``sys.stdout``/``sys.stderr``, or a stream on ``fd`` when Python started without one.

    Characters the stream's encoding cannot represent are written as backslash escapes
    instead of failing the session.
    """
    if stream is None:  # fd was closed at startup; _reserve_standard_fds reopened it
        return open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(errors="backslashreplace")
    return stream


def _stdin_fd() -> int | None:
    if sys.stdin is None:  # started with fd 0 closed
        return None
    try:
        return sys.stdin.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def _isatty(fd: int | None) -> bool:
    try:
        return fd is not None and os.isatty(fd)
    except OSError:
        return False


def _columns(fd: int) -> int:
    try:
        return os.get_terminal_size(fd).columns or DEFAULT_COLUMNS
    except OSError:
        return DEFAULT_COLUMNS


async def _main(
    options: CatOptions, terminal: Terminal, stdin_fd: int | None, keyboard: bool
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    editor = terminal.editor
    if editor is not None:
        stdout_fd = terminal.stdout.fileno()

        def resized() -> None:
            editor.columns = _columns(stdout_fd)

        loop.add_signal_handler(signal.SIGWINCH, resized)
    try:
        lines = LineQueue()
        reads_stdin = not options.execute or options.listen is not None
        if stdin_fd is None or not (reads_stdin or options.prompt_passphrase):
            lines.end()
        elif keyboard:
            start_reader(stdin_fd, loop, KeyboardInput(terminal, lines, stop.set).data)
        else:
            start_reader(stdin_fd, loop, PipeInput(lines).data)
        if options.prompt_passphrase:
            passphrase = await _ask_passphrase(terminal, lines, stop, keyboard)
            if passphrase is None:
                return CANCELLED_EXIT
            options = dataclasses.replace(options, passphrase=passphrase)
            if not reads_stdin:
                lines.end()
        if options.listen is not None:
            from wsgate.cat.listen import listen

            return await listen(options, terminal, lines=lines, stop=stop)
        return await cat(options, terminal, stop=stop, lines=lines)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if editor is not None:
            loop.remove_signal_handler(signal.SIGWINCH)


def run(args: argparse.Namespace) -> int:
    """Run ``wsgate cat`` with options parsed by :func:`wsgate.cli.cat.add_arguments`.

    Uses the process' stdin, stdout and stderr and handles Ctrl-C; returns the exit code for
    ``sys.exit``. Call it with no event loop running; inside a loop, call :func:`cat`.
    """
    options = options_from_args(args)
    stdin_fd = _stdin_fd()  # before fd 0 may be reopened on /dev/null: closed stdin is EOF
    _reserve_standard_fds()
    stdout = _output_stream(sys.stdout, 1)
    stderr = _output_stream(sys.stderr, 2)
    try:
        tty = os.isatty(stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        tty = False
    # node's readline edits lines itself when stdout is a terminal; raw mode needs stdin one.
    reads_stdin = not options.execute or options.listen is not None or options.prompt_passphrase
    keyboard = tty and reads_stdin and _isatty(stdin_fd)
    editor = LineEditor(columns=_columns(stdout.fileno())) if keyboard else None
    terminal = Terminal(
        stdout,
        stderr,
        tty=tty,
        color=options.color,
        execute=bool(options.execute),
        timestamps=options.timestamps,
        editor=editor,
    )
    raw = raw_mode(stdin_fd) if keyboard and stdin_fd is not None else contextlib.nullcontext()
    try:
        with raw, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_main(options, terminal, stdin_fd, keyboard))
    except BrokenPipeError:
        # stdout's reader went away (`wsgate cat ... | head -1`): end quietly, and keep the
        # interpreter's final flush from failing again.
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stdout.fileno())
        os.close(null)
        return 0
