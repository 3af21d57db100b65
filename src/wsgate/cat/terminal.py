"""Output side of ``wsgate cat``: wscat 6.1.0's ``Console.print`` rules, prompt and escaping.

wscat (``bin/wscat``, class ``Console``) decides everything from ``isatty(1)``:

* stdout is a TTY: clear the line (``\\r ESC[2K ESC[3D``), write ``color + prefix + message +
  ESC[39m`` and a newline to **stdout** (errors included), then re-prompt with ``> ``. With
  ``-x`` the colour and the prefix are both dropped (errors too); ``--no-color`` drops only the
  colour. The reset ``ESC[39m`` is written in every case.
* stdout is not a TTY: incoming messages go to stdout bare, errors go to stderr as
  ``error: <message>`` without colour, control lines (Connected, Disconnected) are dropped.

When stdin is a terminal too, a :class:`~wsgate.cat.editor.LineEditor` is attached: the
re-prompt then redraws the half-typed line as readline's ``prompt(true)`` does, and keys
typed while the line is *hidden* (listen mode with no client: wscat's ``Console.pause``) are
erased from the screen right after they are echoed.

wsgate adds, all but the first behind new flags:

* on a TTY, control characters coming from the peer are escaped so that a message cannot
  move the cursor or change the terminal's state;
* notices (``--reconnect``, ``--ping-interval``): on a TTY like control lines, otherwise on
  stderr without a prefix, so that stdout keeps only messages;
* ``--timestamps``: every line starts with the local time, ``HH:MM:SS.mmm``;
* blocks (``--json``): a multi-line message keeps its lines on a TTY, the later ones indented
  under the first.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Callable
from typing import TextIO

from wsgate.cat.editor import Event, LineEditor

__all__ = [
    "BLUE",
    "CLEAR_LINE",
    "DEFAULT",
    "GREEN",
    "PROMPT",
    "YELLOW",
    "Kind",
    "Terminal",
    "escape_controls",
]

GREEN = "\x1b[32m"
YELLOW = "\x1b[33m"
BLUE = "\x1b[34m"
#: Reset the foreground colour; wscat writes it after every TTY line, coloured or not.
DEFAULT = "\x1b[39m"
#: wscat's ``Console.clear()``: carriage return, erase the whole line, cursor 3 columns left.
CLEAR_LINE = "\r\x1b[2K\x1b[3D"
#: readline's default prompt in wscat.
PROMPT = "> "


class Kind(enum.StrEnum):
    """wscat's ``Console.Types`` (plus wsgate's notices): the prefix, and where a line goes."""

    INCOMING = "< "
    CONTROL = ""
    ERROR = "error: "
    NOTICE = " "  # not a prefix: distinguishes notices from control lines (see _prefix)


# C0 controls, DEL and C1 controls. U+00A0 and U+00AD are left alone: terminals show them.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


def escape_controls(text: str) -> str:
    """Return ``text`` with control characters spelled out (``\\n``, ``\\x1b``...).

    Call it on anything a peer sent before writing it to a terminal. Backslashes themselves
    are kept as they are, so the result is meant for display only, not for decoding back.
    """
    return _CONTROLS.sub(_escape_one, text)


def _prefix(kind: Kind) -> str:
    return "" if kind is Kind.NOTICE else str(kind)


def local_time() -> str:
    """The ``--timestamps`` stamp for now: local ``HH:MM:SS.mmm``."""
    return datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]


class Terminal:
    """Where ``wsgate cat`` writes: wscat's console rules for one pair of output streams.

    Build one per run; the client calls :meth:`incoming`, :meth:`control`, :meth:`error` or
    :meth:`notice` for every event, :meth:`prompt` after handling an input line, :meth:`keys`
    with what was typed when an editor is attached, and :meth:`clear` before exiting.

    Args:
        stdout: Stream for messages and, on a TTY, for everything else.
        stderr: Stream for errors (and notices) when ``stdout`` is not a TTY.
        tty: Whether ``stdout`` is a terminal (wscat tests ``isatty(1)``).
        color: ``False`` for ``--no-color``.
        execute: ``True`` when ``-x`` was given: TTY lines lose colour and prefix.
        timestamps: ``True`` for ``--timestamps``.
        editor: The line editor, when stdin is a terminal too (TTY only).
        clock: Returns the timestamp text; tests pass a fixed one.
    """

    def __init__(
        self,
        stdout: TextIO,
        stderr: TextIO,
        *,
        tty: bool,
        color: bool = True,
        execute: bool = False,
        timestamps: bool = False,
        editor: LineEditor | None = None,
        clock: Callable[[], str] = local_time,
    ) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.tty = tty
        self.color = color
        self.execute = execute
        self.timestamps = timestamps
        self.editor = editor if tty else None
        self.clock = clock
        #: Erase what is typed right after echoing it (listen mode while no client is there).
        self.hidden = False

    def print(self, kind: Kind, message: str, color: str, *, block: bool = False) -> None:
        """Show one line the way wscat's ``Console.print`` does, then flush.

        On a TTY the prompt is written again afterwards, so the caller does not re-prompt.
        ``block`` keeps the line breaks of ``message`` on a TTY (continuation lines are
        indented under the first) instead of escaping them.
        """
        stamp = f"{self.clock()} " if self.timestamps else ""
        if self.tty:
            prefix = _prefix(kind)
            if self.execute:
                color = prefix = ""
            elif not self.color:
                color = ""
            lead = stamp + prefix
            if block:
                indent = "\n" + " " * len(lead)
                text = indent.join(escape_controls(line) for line in message.split("\n"))
            else:
                text = escape_controls(message)
            self.stdout.write(f"{CLEAR_LINE}{color}{lead}{text}{DEFAULT}\n")
            self._write_prompt()
            self.stdout.flush()
        elif kind is Kind.INCOMING:
            self.stdout.write(f"{stamp}{message}\n")
            self.stdout.flush()
        elif kind is Kind.ERROR or kind is Kind.NOTICE:
            self.stderr.write(f"{stamp}{_prefix(kind)}{message}\n")
            self.stderr.flush()
        # else: a control line on a pipe; wscat drops it.

    def incoming(self, message: str, *, block: bool = False) -> None:
        """Show a message (or a ping/pong notice) from the peer: ``< msg`` in blue."""
        self.print(Kind.INCOMING, message, BLUE, block=block)

    def control(self, message: str) -> None:
        """Show a status line such as ``Connected (press CTRL+C to quit)`` in green."""
        self.print(Kind.CONTROL, message, GREEN)

    def error(self, message: str) -> None:
        """Show ``error: <message>`` in yellow; the caller decides whether to exit (255)."""
        self.print(Kind.ERROR, message, YELLOW)

    def notice(self, message: str) -> None:
        """Show a line of wsgate's own (reconnecting, round-trip time); see the docstring."""
        self.print(Kind.NOTICE, message, GREEN)

    def _write_prompt(self) -> None:
        if self.editor is not None:
            self.stdout.write(self.editor.refresh())
        else:
            self.stdout.write(PROMPT)

    def prompt(self) -> None:
        """Write the prompt (TTY only); call it after handling each input line.

        With an editor, this redraws the prompt and the half-typed line (readline's
        ``prompt(true)``).
        """
        if self.tty:
            self._write_prompt()
            self.stdout.flush()

    def clear(self) -> None:
        """Erase the current line (TTY only); wscat does this right before it exits."""
        if self.tty:
            self.stdout.write(CLEAR_LINE)
            self.stdout.flush()

    def keys(self, text: str) -> list[Event]:
        """Feed what was typed on the terminal to the editor and echo it; return the events.

        Call it only when :attr:`editor` is set. While :attr:`hidden`, the echo is erased
        again at once, as wscat's paused console does.
        """
        assert self.editor is not None
        if not self.hidden:
            events = self.editor.feed(text)
            self.stdout.write(self.editor.data_to_send())
        else:
            # wscat clears the line after every keypress, so an Enter leaves a blank line.
            events = []
            for char in text:
                events += self.editor.feed(char)
                self.stdout.write(self.editor.data_to_send() + CLEAR_LINE)
        self.stdout.flush()
        return events
