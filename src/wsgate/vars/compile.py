"""Compile nginx strings with variables ("$host:$server_port") once, at configuration load.

Mirrors ``ngx_http_script_compile`` / ``ngx_http_compile_complex_value``: ``$name`` and
``${name}`` (name = letters, digits, ``_``), ``$1``..``$9`` regex captures. Per request the
proxy only concatenates the pre-split parts (``vars.registry``); no string is parsed twice.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Capture",
    "ComplexValue",
    "Var",
    "VariableSyntaxError",
    "ascii_lower",
    "compile_value",
    "to_bytes",
    "wire",
]


def wire(text: str) -> str:
    """``text`` (Unicode, as read from the configuration) in the form request strings
    have: one character per byte (latin-1). nginx handles bytes; wsgate keeps every value
    that reaches the wire or a log in this form, and writes it out with :func:`to_bytes`.
    """
    return text if text.isascii() else text.encode("utf-8", "surrogateescape").decode("latin-1")


def to_bytes(text: str) -> bytes:
    """The bytes a :func:`wire` string stands for."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:  # not a wire string after all: keep what it says
        return text.encode("utf-8", "surrogateescape")


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """Lower-case ASCII letters only, as ``ngx_strlow`` does."""
    return text.translate(_ASCII_LOWER)


class VariableSyntaxError(ValueError):
    """The string has a malformed ``$`` reference; the message is nginx's."""


@dataclass(frozen=True, slots=True)
class Var:
    """A reference to a variable, by lower-cased name (nginx variable names ignore case)."""

    name: str


@dataclass(frozen=True, slots=True)
class Capture:
    """A numbered regex capture ``$1``..``$9`` (``$0`` is the whole match)."""

    index: int


@dataclass(frozen=True, slots=True)
class ComplexValue:
    """A compiled string: literal parts (as :func:`wire` strings) and variable
    references, in order; ``text`` is the source as written."""

    text: str
    parts: tuple[str | Var | Capture, ...]

    @property
    def static(self) -> str | None:
        """The value when it has no variables, else ``None``."""
        if all(isinstance(p, str) for p in self.parts):
            return "".join(p for p in self.parts if isinstance(p, str))
        return None

    @property
    def variables(self) -> tuple[str, ...]:
        """Names of the variables referenced, in order."""
        return tuple(p.name for p in self.parts if isinstance(p, Var))


def _is_name_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def compile_value(text: str) -> ComplexValue:
    """Split ``text`` into literals and variable references.

    Raises:
        VariableSyntaxError: ``$`` with no name, or ``${`` without ``}`` (nginx's wording).
    """
    parts: list[str | Var | Capture] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$":
            literal.append(ch)
            i += 1
            continue
        i += 1
        if i < n and text[i].isdigit():
            if literal:
                parts.append(wire("".join(literal)))
                literal = []
            parts.append(Capture(int(text[i])))
            i += 1
            continue
        bracket = i < n and text[i] == "{"
        if bracket:
            i += 1
        start = i
        while i < n and _is_name_char(text[i]):
            i += 1
        name = text[start:i]
        if bracket:
            if i >= n or text[i] != "}":
                raise VariableSyntaxError(f'the closing bracket in "{name}" variable is missing')
            i += 1
        if not name:
            raise VariableSyntaxError("invalid variable name")
        if literal:
            parts.append(wire("".join(literal)))
            literal = []
        parts.append(Var(name.lower()))
    if literal:
        parts.append(wire("".join(literal)))
    return ComplexValue(text, tuple(parts))
