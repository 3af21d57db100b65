"""nginx's configuration tokenizer, after ``ngx_conf_read_token`` (src/core/ngx_conf_file.c).

Theory of operation: the text is read one character at a time with nginx's flags
(``last_space``, ``need_space``, quotes, ``$`` variables, ``#`` comments). Each call to
:meth:`Lexer.next_statement` returns the words of one statement and what ended it:

* ``OK`` - a ``;``; ``BLOCK_START`` - a ``{``; ``BLOCK_DONE`` - a ``}``;
  ``FILE_DONE`` - end of text with no words pending.

``Lexer.line`` is nginx's ``cf->conf_file->line`` at that moment: the line of the terminating
character, which is the line nginx prints in ``in FILE:LINE`` for directive errors
(nginx-semantics.md §6.1). nginx reads the file through a buffer of ``NGX_CONF_BUFFER``
(4096) bytes and refuses a parameter (or comment) that does not fit in it ("too long
parameter"); the lexer keeps the same byte offsets to refuse the same ones.

Invariants: a statement has at least one word unless it is ``BLOCK_DONE`` or
``FILE_DONE``; errors raise :class:`ConfigError` at the current line.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from wsgate.errors import ConfigError

__all__ = ["End", "Lexer", "Word"]

_SPACE = " \t\r\n"
CONF_BUFFER = 4096  # NGX_CONF_BUFFER: ngx_conf_read_token's buffer, in bytes
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "t": "\t", "r": "\r", "n": "\n"}


class End(enum.Enum):
    """What ended a statement (nginx ``NGX_OK``, ``NGX_CONF_BLOCK_START``, ...)."""

    OK = ";"
    BLOCK_START = "{"
    BLOCK_DONE = "}"
    FILE_DONE = "EOF"


@dataclass(frozen=True, slots=True)
class Word:
    """One argument: its unescaped text, whether it was quoted, and its first line."""

    text: str
    quoted: bool
    line: int


class Lexer:
    """Reads statements from one file's text; call :meth:`next_statement` until FILE_DONE."""

    def __init__(self, text: str, file: str) -> None:
        self.text = text
        self.file = file
        self.pos = 0
        self.line = 1
        # Byte offsets, for the buffer nginx reads the file through: where the next
        # character starts, where the buffer's data ends, and the file's size.
        self.byte = 0
        self.buffer_end = 0
        self.size = len(text.encode("utf-8", "surrogateescape"))

    def error(self, message: str) -> ConfigError:
        """A ConfigError at the lexer's current line (nginx ``ngx_conf_log_error``)."""
        return ConfigError(message, self.file, self.line)

    def next_statement(self) -> tuple[list[Word], End]:
        """Read the next statement: its words and the character that ended it.

        Raises:
            ConfigError: nginx's tokenizer errors (unexpected characters, unexpected end
                of file inside a statement).
        """
        text = self.text
        words: list[Word] = []
        last_space = True
        need_space = False
        quoted = s_quoted = d_quoted = sharp_comment = variable = False
        start = self.pos
        start_byte = self.byte  # nginx's `start`, for the length check
        start_line = self.line
        while True:
            if self.byte >= self.buffer_end:
                if self.buffer_end >= self.size:
                    if words or not last_space:
                        raise self.error('unexpected end of file, expecting ";" or "}"')
                    return words, End.FILE_DONE
                if self.byte - start_byte >= CONF_BUFFER:  # > when a character straddles it
                    raise self._too_long(start_byte, start_line, d_quoted, s_quoted)
                # The unfinished parameter moves to the buffer's start; the rest is read.
                self.buffer_end = min(self.size, start_byte + CONF_BUFFER)
            ch = text[self.pos]
            self.pos += 1
            ch_byte = self.byte
            self.byte += 1 if ch < "\x80" else len(ch.encode("utf-8", "surrogateescape"))
            if ch == "\n":
                self.line += 1
                if sharp_comment:
                    sharp_comment = False
            if sharp_comment:
                continue
            if quoted:
                quoted = False
                continue
            if need_space:
                if ch in _SPACE:
                    last_space = True
                    need_space = False
                    continue
                if ch == ";":
                    return words, End.OK
                if ch == "{":
                    return words, End.BLOCK_START
                if ch == ")":
                    last_space = True
                    need_space = False
                else:
                    raise self.error(f'unexpected "{ch}"')
            if last_space:
                start = self.pos - 1
                start_byte = ch_byte
                start_line = self.line
                if ch in _SPACE:
                    continue
                if ch in ";{":
                    if not words:
                        raise self.error(f'unexpected "{ch}"')
                    return words, End.BLOCK_START if ch == "{" else End.OK
                if ch == "}":
                    if words:
                        raise self.error('unexpected "}"')
                    return words, End.BLOCK_DONE
                if ch == "#":
                    sharp_comment = True
                    continue
                if ch == "\\":
                    quoted = True
                    last_space = False
                    continue
                if ch == '"':
                    start += 1
                    start_byte += 1
                    d_quoted = True
                    last_space = False
                    continue
                if ch == "'":
                    start += 1
                    start_byte += 1
                    s_quoted = True
                    last_space = False
                    continue
                if ch == "$":
                    variable = True
                last_space = False
                continue
            # inside a word
            if ch == "{" and variable:
                continue
            variable = False
            if ch == "\\":
                quoted = True
                continue
            if ch == "$":
                variable = True
                continue
            found = False
            was_quoted = d_quoted or s_quoted
            if d_quoted:
                if ch == '"':
                    d_quoted = False
                    need_space = True
                    found = True
            elif s_quoted:
                if ch == "'":
                    s_quoted = False
                    need_space = True
                    found = True
            elif ch in _SPACE or ch in ";{":
                last_space = True
                found = True
            if not found:
                continue
            words.append(Word(_unescape(text[start : self.pos - 1]), was_quoted, start_line))
            if ch == ";":
                return words, End.OK
            if ch == "{":
                return words, End.BLOCK_START

    def _too_long(
        self, start_byte: int, start_line: int, d_quoted: bool, s_quoted: bool
    ) -> ConfigError:
        """ngx_conf_read_token's error for a parameter of a whole buffer, at its first line."""
        self.line = start_line
        if d_quoted or s_quoted:
            quote = '"' if d_quoted else "'"
            return self.error(
                f'too long parameter, probably missing terminating "{quote}" character'
            )
        # nginx prints the parameter's first 10 bytes; a character they cut becomes U+FFFD.
        data = self.text.encode("utf-8", "surrogateescape")[start_byte : start_byte + 10]
        head = data.decode("utf-8", "replace")
        return self.error(f'too long parameter "{head}..." started')


def _unescape(raw: str) -> str:
    """Apply nginx's escape rules to a finished word: ``\\" \\' \\\\ \\t \\r \\n``."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if ch == "\\" and i + 1 < n and raw[i + 1] in _ESCAPES:
            out.append(_ESCAPES[raw[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
