"""Output side of ``wsgate cat``: wscat 6.1.0's ``Console.print`` rules, prompt and escaping.

wscat (``bin/wscat``, class ``Console``) decides everything from ``isatty(1)``:

* stdout is a TTY: clear the line (``\\r ESC[2K ESC[3D``), write ``color + prefix + message +
  ESC[39m`` and a newline to **stdout** (errors included), then re-prompt with ``> ``. With
  ``-x`` the colour and the prefix are both dropped (errors too); ``--no-color`` drops only the
  colour. The reset ``ESC[39m`` is written in every case.
* stdout is not a TTY: incoming messages go to stdout bare, errors go to stderr as
  ``error: <message>`` without colour, control lines (Connected, Disconnected) are dropped.

wsgate adds one thing: on a TTY, control characters coming from the peer are escaped so that
a message cannot move the cursor or change the terminal's state.
"""

from __future__ import annotations

import enum
import re
from typing import TextIO

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
    """wscat's ``Console.Types``: the prefix of a line, which also selects its destination."""

    INCOMING = "< "
    CONTROL = ""
    ERROR = "error: "


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


class Terminal:
    """Where ``wsgate cat`` writes: wscat's console rules for one pair of output streams.

    Build one per session; the client calls :meth:`print` for every event and
    :meth:`prompt` after handling an input line, and :meth:`clear` before exiting.

    Args:
        stdout: Stream for messages and, on a TTY, for everything else.
        stderr: Stream for errors when ``stdout`` is not a TTY.
        tty: Whether ``stdout`` is a terminal (wscat tests ``isatty(1)``).
        color: ``False`` for ``--no-color``.
        execute: ``True`` when ``-x`` was given: TTY lines lose colour and prefix.
    """

    def __init__(
        self,
        stdout: TextIO,
        stderr: TextIO,
        *,
        tty: bool,
        color: bool = True,
        execute: bool = False,
    ) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.tty = tty
        self.color = color
        self.execute = execute

    def print(self, kind: Kind, message: str, color: str) -> None:
        """Show one line the way wscat's ``Console.print`` does, then flush.

        On a TTY the prompt is written again afterwards, so the caller does not re-prompt.
        """
        if self.tty:
            prefix: str = kind
            if self.execute:
                color = prefix = ""
            elif not self.color:
                color = ""
            self.stdout.write(f"{CLEAR_LINE}{color}{prefix}{escape_controls(message)}{DEFAULT}\n")
            self.stdout.write(PROMPT)
            self.stdout.flush()
        elif kind is Kind.INCOMING:
            self.stdout.write(f"{message}\n")
            self.stdout.flush()
        elif kind is Kind.ERROR:
            self.stderr.write(f"{kind}{message}\n")
            self.stderr.flush()
        # else: a control line on a pipe; wscat drops it.

    def incoming(self, message: str) -> None:
        """Show a message (or a ping/pong notice) from the peer: ``< msg`` in blue."""
        self.print(Kind.INCOMING, message, BLUE)

    def control(self, message: str) -> None:
        """Show a status line such as ``Connected (press CTRL+C to quit)`` in green."""
        self.print(Kind.CONTROL, message, GREEN)

    def error(self, message: str) -> None:
        """Show ``error: <message>`` in yellow; the caller decides whether to exit (255)."""
        self.print(Kind.ERROR, message, YELLOW)

    def prompt(self) -> None:
        """Write the ``> `` prompt (TTY only); call it after handling each input line."""
        if self.tty:
            self.stdout.write(PROMPT)
            self.stdout.flush()

    def clear(self) -> None:
        """Erase the current line (TTY only); wscat does this right before it exits."""
        if self.tty:
            self.stdout.write(CLEAR_LINE)
            self.stdout.flush()
