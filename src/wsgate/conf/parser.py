"""The generic reader, after ``ngx_conf_parse`` / ``ngx_conf_handler`` (src/core/ngx_conf_file.c).

It reads statements from :mod:`conf.lexer`, checks them against the directive table
(:mod:`conf.table`: name, contexts, arity, block or not) with nginx's generic messages, and
calls the directive's handler at once, so errors come out in the order nginx finds them.
Block handlers call :meth:`Parser.parse_block` with the inner context. ``include`` is
expanded in place (globs sorted, relative to the main file's directory).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from dataclasses import dataclass

from wsgate.conf.builders import Ctx
from wsgate.conf.lexer import End, Lexer, Word
from wsgate.errors import ConfigError

__all__ = ["Parser", "Stmt"]


@dataclass(frozen=True, slots=True)
class Stmt:
    """One statement as a handler sees it; ``line`` is where nginx reports its errors."""

    name: str
    args: tuple[Word, ...]
    file: str
    line: int
    end: End

    def error(self, message: str) -> ConfigError:
        """A ConfigError located at this statement."""
        return ConfigError(message, self.file, self.line)

    @property
    def values(self) -> list[str]:
        """The arguments' texts."""
        return [a.text for a in self.args]


Resolver = Callable[[str, int], list[str]]


class Parser:
    """Reads one configuration (main file plus includes) into builders."""

    def __init__(self, conf_dir: str, read_file: Callable[[str], str] | None = None) -> None:
        self.conf_dir = conf_dir
        self.files: list[tuple[str, str]] = []
        self._read = read_file or _read_text
        self._lexers: list[Lexer] = []

    @property
    def lexer(self) -> Lexer:
        """The lexer of the file being read now."""
        return self._lexers[-1]

    def parse_file(self, path: str, ctx: Ctx, *, text: str | None = None) -> None:
        """Read a whole file in ``ctx`` (the main file, or an include)."""
        if text is None:
            text = self._read(path)
        self.files.append((path, text))
        self._lexers.append(Lexer(text, path))
        try:
            self._parse(ctx, block=False)
        finally:
            self._lexers.pop()

    def parse_block(self, ctx: Ctx) -> None:
        """Read statements up to the ``}`` that closes the block just opened."""
        self._parse(ctx, block=True)

    def _parse(self, ctx: Ctx, *, block: bool) -> None:
        from wsgate.conf.table import dispatch

        lexer = self.lexer
        while True:
            words, end = lexer.next_statement()
            if end is End.FILE_DONE:
                if block:
                    raise lexer.error('unexpected end of file, expecting "}"')
                return
            if end is End.BLOCK_DONE:
                if not block:
                    raise lexer.error('unexpected "}"')
                return
            stmt = Stmt(words[0].text, tuple(words[1:]), lexer.file, lexer.line, end)
            if stmt.name == "include" and ctx.kind != "map":
                self._include(stmt, ctx)
                continue
            dispatch(self, ctx, stmt)

    def _include(self, stmt: Stmt, ctx: Ctx) -> None:
        # ngx_conf_include: one argument, a glob; no match is fine for a glob pattern.
        if stmt.end is not End.OK:
            raise stmt.error('directive "include" is not terminated by ";"')
        if len(stmt.args) != 1:
            raise stmt.error('invalid number of arguments in "include" directive')
        pattern = stmt.args[0].text
        full = pattern if os.path.isabs(pattern) else os.path.join(self.conf_dir, pattern)
        if glob.has_magic(full):
            for path in sorted(glob.glob(full)):
                if os.path.isfile(path):
                    self.parse_file(path, ctx)
            return
        try:
            text = self._read(full)
        except IsADirectoryError as exc:
            # nginx opens a directory, then its read fails (ngx_read_file, no location).
            raise ConfigError(
                f'pread() "{full}" failed ({exc.errno}: {exc.strerror})', level="crit"
            ) from exc
        except OSError as exc:
            raise stmt.error(f'open() "{full}" failed ({exc.errno}: {exc.strerror})') from exc
        self.parse_file(full, ctx, text=text)


def _read_text(path: str) -> str:
    # newline="": the bytes as they are; nginx counts lines by LF only, and a CR is a space.
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return f.read()
