"""Line editing for ``wsgate cat`` on a terminal: the keys and screen updates of node's readline.

wscat reads a terminal through node's ``readline`` module in raw mode: readline echoes what is
typed, edits the line, and redraws it (``prompt(true)``) after every line wscat prints, so a
message arriving while the user types does not lose the half-typed text. ``wsgate cat`` must
leave the same screen, so it puts the terminal in raw mode too and edits lines here.

Theory of operation: :class:`LineEditor` is sans-I/O. The caller feeds it the text read from
the terminal with :meth:`LineEditor.feed`, which returns what the user did (a submitted line,
Ctrl-C, Ctrl-D on an empty line) and queues the screen updates; the caller then writes
:meth:`LineEditor.data_to_send` to the terminal. After printing a line of its own, the caller
asks for :meth:`LineEditor.refresh` and writes that too.

Screen updates use the same terminal operations as readline (``lib/internal/readline/
interface.js``: ``[kRefreshLine]``, ``[kInsertString]``, ``[kMoveCursor]``, ``clearLine``), so the
screen ends up the same: a key at the end of the line is echoed as is; any other change
redraws the line (cursor up to its first row, ``CSI 1 G``, ``CSI 0 J``, prompt and text, cursor
back to its column). Invariants: ``0 <= cursor <= len(line)``; ``prev_rows`` is the row of the
cursor inside the drawn input, counted from the row where the prompt starts.

Keys: printable text (and Tab) insert; Enter submits; Backspace/Ctrl-H, Delete, Ctrl-D (non-empty
line) delete; Left/Right/Ctrl-B/Ctrl-F, Home/End/Ctrl-A/Ctrl-E and Ctrl-Left/Ctrl-Right move;
Ctrl-U/Ctrl-K/Ctrl-W cut; Up/Down/Ctrl-P/Ctrl-N walk the history; Ctrl-L clears the screen.
Ctrl-C, and Ctrl-D on an empty line, end input (readline closes, and wscat exits). Other
control keys are ignored, as readline ignores them.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import unicodedata
from typing import Final

__all__ = [
    "DEFAULT_COLUMNS",
    "Close",
    "Key",
    "KeyDecoder",
    "LineEditor",
    "Submit",
    "display_width",
]

#: Terminal width assumed when the real one is unknown (node uses 80 too).
DEFAULT_COLUMNS: Final = 80
#: readline's tab size when measuring the line.
TAB_SIZE: Final = 8
#: readline keeps 30 lines of history by default.
HISTORY_SIZE: Final = 30

CSI: Final = "\x1b["


class Key(enum.Enum):
    """Editing keys, after escape sequences and control characters are decoded."""

    RETURN = "return"  # \r
    ENTER = "enter"  # \n
    BACKSPACE = "backspace"
    DELETE = "delete"
    LEFT = "left"
    RIGHT = "right"
    HOME = "home"
    END = "end"
    UP = "up"
    DOWN = "down"
    WORD_LEFT = "word-left"
    WORD_RIGHT = "word-right"
    DELETE_WORD_LEFT = "delete-word-left"
    DELETE_WORD_RIGHT = "delete-word-right"
    DELETE_LINE_LEFT = "delete-line-left"
    DELETE_LINE_RIGHT = "delete-line-right"
    CLEAR_SCREEN = "clear-screen"
    INTERRUPT = "ctrl-c"
    EOF = "ctrl-d"
    IGNORED = "ignored"


_CONTROL_KEYS: Final = {
    "\r": Key.RETURN,
    "\n": Key.ENTER,
    "\x7f": Key.BACKSPACE,
    "\x08": Key.BACKSPACE,
    "\x01": Key.HOME,
    "\x05": Key.END,
    "\x02": Key.LEFT,
    "\x06": Key.RIGHT,
    "\x10": Key.UP,
    "\x0e": Key.DOWN,
    "\x0b": Key.DELETE_LINE_RIGHT,
    "\x15": Key.DELETE_LINE_LEFT,
    "\x17": Key.DELETE_WORD_LEFT,
    "\x0c": Key.CLEAR_SCREEN,
    "\x03": Key.INTERRUPT,
    "\x04": Key.EOF,
}
# CSI and SS3 sequences, by what follows "ESC [" or "ESC O" (xterm, rxvt and the VT220 forms).
_SEQUENCES: Final = {
    "A": Key.UP,
    "B": Key.DOWN,
    "C": Key.RIGHT,
    "D": Key.LEFT,
    "H": Key.HOME,
    "F": Key.END,
    "1~": Key.HOME,
    "7~": Key.HOME,
    "4~": Key.END,
    "8~": Key.END,
    "3~": Key.DELETE,
    "1;5C": Key.WORD_RIGHT,
    "1;5D": Key.WORD_LEFT,
    "1;3C": Key.WORD_RIGHT,
    "1;3D": Key.WORD_LEFT,
    "3;5~": Key.DELETE_WORD_RIGHT,
}
# ESC followed by one character: readline's meta keys.
_META: Final = {
    "b": Key.WORD_LEFT,
    "f": Key.WORD_RIGHT,
    "d": Key.DELETE_WORD_RIGHT,
    "\x7f": Key.DELETE_WORD_LEFT,
    "\x08": Key.DELETE_WORD_LEFT,
}
_CSI_SEQUENCE = re.compile(r"\x1b\[([0-9;]*[\x40-\x7e])")
_SS3_SEQUENCE = re.compile(r"\x1bO(.)", re.DOTALL)


class KeyDecoder:
    """Split terminal input into keys and text; an escape sequence may span two reads.

    Call :meth:`decode` with each chunk read from the terminal; it returns :class:`Key` values
    and strings of printable text, in order.
    """

    def __init__(self) -> None:
        self._pending = ""

    def decode(self, text: str) -> list[Key | str]:
        """Decode ``text`` (plus anything held back from the previous call)."""
        data = self._pending + text
        self._pending = ""
        out: list[Key | str] = []
        i = 0
        while i < len(data):
            char = data[i]
            if char == "\x1b":
                if i + 1 == len(data):
                    self._pending = data[i:]  # maybe the start of a sequence: wait for more
                    break
                consumed, key = self._escape(data, i)
                if consumed == 0:
                    self._pending = data[i:]
                    break
                out.append(key)
                i += consumed
            elif char in _CONTROL_KEYS:
                out.append(_CONTROL_KEYS[char])
                i += 1
            elif char == "\t" or char >= " ":
                j = i + 1
                while j < len(data) and (data[j] == "\t" or data[j] >= " ") and data[j] != "\x7f":
                    j += 1
                # readline inserts text one key at a time; keep that granularity for echo.
                out.extend(data[i:j])
                i = j
            else:
                out.append(Key.IGNORED)
                i += 1
        return out

    @staticmethod
    def _escape(data: str, i: int) -> tuple[int, Key]:
        """Decode the escape sequence at ``data[i]``; ``(0, _)`` when it is incomplete."""
        nxt = data[i + 1]
        if nxt == "[":
            match = _CSI_SEQUENCE.match(data, i)
            if match is None:
                # Incomplete when only parameter bytes follow so far.
                rest = data[i + 2 :]
                return (0, Key.IGNORED) if re.fullmatch(r"[0-9;]*", rest) else (2, Key.IGNORED)
            return match.end() - i, _SEQUENCES.get(match.group(1), Key.IGNORED)
        if nxt == "O":
            match = _SS3_SEQUENCE.match(data, i)
            if match is None:
                return 0, Key.IGNORED
            return 3, _SEQUENCES.get(match.group(1), Key.IGNORED)
        return 2, _META.get(nxt, Key.IGNORED)


def _char_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal (wide East Asian characters count twice)."""
    return sum(_char_width(char) for char in text)


@dataclasses.dataclass(frozen=True, slots=True)
class Submit:
    """The user pressed Enter: send ``line``."""

    line: str


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    """Ctrl-C, or Ctrl-D on an empty line: readline closes and wscat quits."""

    key: Key


Event = Submit | Close

# readline's word-left rule: skip spaces, then a run of punctuation or a run of word characters.
_WORD_LEFT = re.compile(r"^\s*(?:[^\w\s]+|\w+)?")
_WORD_RIGHT = re.compile(r"^\s*(?:[^\w\s]+|\w+)\s*")


class LineEditor:
    """One line of input being typed after a prompt, drawn the way node's readline draws it.

    Args:
        prompt: Text drawn before the line (readline's default is ``"> "``).
        columns: Terminal width; update :attr:`columns` when the terminal is resized.
        mask: Draw every character of the line as this one (``"*"`` for a passphrase).
        history: Remember submitted lines for Up/Down.
    """

    def __init__(
        self,
        prompt: str = "> ",
        *,
        columns: int = DEFAULT_COLUMNS,
        mask: str | None = None,
        history: bool = True,
    ) -> None:
        self.prompt = prompt
        self.columns = max(columns, 1)
        self.mask = mask
        self.line = ""
        self.cursor = 0
        self.prev_rows = 0
        self._keep_history = history
        self._history: list[str] = []  # newest first, as readline keeps it
        self._history_index = -1
        self._saved_line = ""
        self._saw_return = False
        self._decoder = KeyDecoder()
        self._output: list[str] = []

    # --- I/O boundary --------------------------------------------------------------------

    def feed(self, text: str) -> list[Event]:
        """Process ``text`` typed on the terminal; return what the user did, in order.

        Call :meth:`data_to_send` afterwards and write the result to the terminal.
        """
        events: list[Event] = []
        for key in self._decoder.decode(text):
            event = self._press(key)
            if event is not None:
                events.append(event)
        return events

    def data_to_send(self) -> str:
        """Return (and forget) the screen output queued since the last call."""
        data = "".join(self._output)
        self._output.clear()
        return data

    def refresh(self) -> str:
        """Redraw the prompt and the line, keeping the cursor (readline's ``prompt(true)``).

        Call it right after writing a line of output; write the returned text next.
        """
        self._refresh()
        return self.data_to_send()

    # --- geometry ------------------------------------------------------------------------

    def _shown(self, text: str) -> str:
        return text if self.mask is None else self.mask * len(text)

    def _position(self, text: str) -> tuple[int, int]:
        """(rows, cols) where the cursor ends after drawing ``text`` from column 0."""
        offset = 0
        for char in text:
            if char == "\t":
                offset += TAB_SIZE - offset % TAB_SIZE
            else:
                width = _char_width(char)
                # A wide character that does not fit at the end of a row starts the next one.
                if width == 2 and (offset + 1) % self.columns == 0:
                    offset += 1
                offset += width
        return divmod(offset, self.columns)

    def _cursor_position(self) -> tuple[int, int]:
        return self._position(self.prompt + self._shown(self.line[: self.cursor]))

    # --- drawing -------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        self._output.append(text)

    def _move(self, dx: int, dy: int) -> None:
        if dx < 0:
            self._write(f"{CSI}{-dx}D")
        elif dx > 0:
            self._write(f"{CSI}{dx}C")
        if dy < 0:
            self._write(f"{CSI}{-dy}A")
        elif dy > 0:
            self._write(f"{CSI}{dy}B")

    def _refresh(self) -> None:
        drawn = self.prompt + self._shown(self.line)
        line_rows, line_cols = self._position(drawn)
        cursor_rows, cursor_cols = self._cursor_position()
        if self.prev_rows > 0:
            self._move(0, -self.prev_rows)
        self._write(f"{CSI}1G{CSI}0J{drawn}")
        if line_cols == 0:
            self._write(" ")  # make the terminal wrap now, so the cursor can go there
        self._write(f"{CSI}{cursor_cols + 1}G")
        if line_rows > cursor_rows:
            self._move(0, cursor_rows - line_rows)
        self.prev_rows = cursor_rows

    def _move_cursor(self, dx: int) -> None:
        old_rows, old_cols = self._cursor_position()
        self.cursor = min(max(self.cursor + dx, 0), len(self.line))
        new_rows, new_cols = self._cursor_position()
        if old_rows == new_rows:
            self._move(new_cols - old_cols, 0)
        else:
            self._refresh()

    # --- keys ----------------------------------------------------------------------------

    def _press(self, key: Key | str) -> Event | None:
        if key is Key.ENTER and self._saw_return:
            self._saw_return = False  # "\r\n" is one Enter
            return None
        self._saw_return = key is Key.RETURN
        if isinstance(key, str):
            self._insert(key)
            return None
        if key in (Key.RETURN, Key.ENTER):
            return self._submit()
        if key is Key.INTERRUPT:
            return Close(key)
        if key is Key.EOF:
            if not self.line:
                return Close(key)
            self._delete_right()
        else:
            self._edit(key)
        return None

    def _edit(self, key: Key) -> None:
        if key is Key.BACKSPACE:
            if self.cursor > 0:
                self.line = self.line[: self.cursor - 1] + self.line[self.cursor :]
                self.cursor -= 1
                self._refresh()
        elif key is Key.DELETE:
            self._delete_right()
        elif key is Key.LEFT:
            self._move_cursor(-1)
        elif key is Key.RIGHT:
            self._move_cursor(1)
        elif key is Key.HOME:
            self._move_cursor(-self.cursor)
        elif key is Key.END:
            self._move_cursor(len(self.line) - self.cursor)
        elif key is Key.WORD_LEFT:
            before = self.line[: self.cursor][::-1]
            match = _WORD_LEFT.match(before)
            self._move_cursor(-(len(match.group()) if match else 0))
        elif key is Key.WORD_RIGHT:
            match = _WORD_RIGHT.match(self.line[self.cursor :])
            self._move_cursor(len(match.group()) if match else 0)
        elif key is Key.DELETE_WORD_LEFT:
            if self.cursor > 0:
                before = self.line[: self.cursor]
                match = _WORD_LEFT.match(before[::-1])
                cut = len(match.group()) if match else 0
                self.line = before[: len(before) - cut] + self.line[self.cursor :]
                self.cursor -= cut
                self._refresh()
        elif key is Key.DELETE_WORD_RIGHT:
            if self.cursor < len(self.line):
                match = _WORD_RIGHT.match(self.line[self.cursor :])
                cut = len(match.group()) if match else 0
                self.line = self.line[: self.cursor] + self.line[self.cursor + cut :]
                self._refresh()
        elif key is Key.DELETE_LINE_LEFT:
            self.line = self.line[self.cursor :]
            self.cursor = 0
            self._refresh()
        elif key is Key.DELETE_LINE_RIGHT:
            self.line = self.line[: self.cursor]
            self._refresh()
        elif key is Key.CLEAR_SCREEN:
            self._write(f"{CSI}1;1H{CSI}0J")
            self.prev_rows = 0
            self._refresh()
        elif key is Key.UP:
            self._walk_history(1)
        elif key is Key.DOWN:
            self._walk_history(-1)
        # Key.IGNORED and anything else: readline does nothing either.

    def _insert(self, text: str) -> None:
        if self.cursor < len(self.line):
            self.line = self.line[: self.cursor] + text + self.line[self.cursor :]
            self.cursor += len(text)
            self._refresh()
            return
        old_rows, _ = self._cursor_position()
        self.line += text
        self.cursor += len(text)
        new_rows, _ = self._cursor_position()
        if old_rows < new_rows:
            self._refresh()
        else:
            self._write(self._shown(text))

    def _delete_right(self) -> None:
        if self.cursor < len(self.line):
            self.line = self.line[: self.cursor] + self.line[self.cursor + 1 :]
            self._refresh()

    def _submit(self) -> Submit:
        line = self.line
        if self._keep_history and line.strip() and (not self._history or self._history[0] != line):
            self._history.insert(0, line)
            del self._history[HISTORY_SIZE:]
        self._history_index = -1
        self._move_cursor(len(self.line) - self.cursor)
        self._write("\r\n")
        self.line = ""
        self.cursor = 0
        self.prev_rows = 0
        return Submit(line)

    def _walk_history(self, step: int) -> None:
        index = self._history_index + step
        if index >= len(self._history) or index < -1 or not self._history:
            return
        if self._history_index == -1:
            self._saved_line = self.line
        self._history_index = index
        self.line = self._saved_line if index == -1 else self._history[index]
        self.cursor = len(self.line)
        self._refresh()
