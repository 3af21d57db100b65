"""How ``wsgate cat`` turns a message into text: wscat's rule, plus the new display flags.

Pure functions, no I/O. wscat prints every message as text: node concatenates the ``Buffer``
into a string, so binary data is decoded as UTF-8 with U+FFFD for invalid bytes. wsgate keeps
that by default (``--binary-display text``) and adds:

* ``--binary-display hex``: binary messages as lowercase hex pairs separated by spaces
  (``00 ff 10``), which ``bytes.fromhex`` and ``xxd -r -p`` read back;
* ``--binary-display base64``: binary messages in standard base64 (one line, padded);
* ``--json``: a text message that is a JSON object or array is printed indented by two
  spaces; numbers, strings and key order are kept exactly as received (no ``jq`` needed).
  Anything else, including invalid JSON, is printed unchanged.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["BinaryDisplay", "format_binary", "pretty_json"]

_INDENT: Final = "  "


class BinaryDisplay(enum.StrEnum):
    """How a binary message is shown (``--binary-display``)."""

    TEXT = "text"  # wscat: UTF-8, invalid bytes as U+FFFD
    HEX = "hex"
    BASE64 = "base64"


def format_binary(data: bytes, display: BinaryDisplay) -> str:
    """Return the text to print for the binary message ``data``."""
    if display is BinaryDisplay.HEX:
        return data.hex(" ")
    if display is BinaryDisplay.BASE64:
        return base64.b64encode(data).decode("ascii")
    return data.decode(errors="replace")


class _Raw(str):
    """A JSON number or constant, kept as the text it was received as."""

    __slots__ = ()


class _Object(list[tuple[str, Any]]):
    """A JSON object: its ``(key, value)`` pairs, duplicate keys and order included."""

    __slots__ = ()


def pretty_json(text: str) -> str | None:
    """Return ``text`` indented when it is a JSON object or array, else ``None``.

    Call it on a text message when ``--json`` is on; print the message unchanged when it
    returns ``None``. The result has no trailing newline.
    """
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        value = json.loads(
            stripped,
            object_pairs_hook=_Object,
            parse_float=_Raw,
            parse_int=_Raw,
            parse_constant=_Raw,
        )
    except (ValueError, RecursionError):  # invalid, or nested deeper than the parser allows
        return None
    return "".join(_dump(value, 0))


def _dump(value: Any, depth: int) -> Iterator[str]:
    if isinstance(value, _Raw):
        yield str(value)
    elif isinstance(value, str):
        yield json.dumps(value, ensure_ascii=False)
    elif value is True:
        yield "true"
    elif value is False:
        yield "false"
    elif value is None:
        yield "null"
    elif isinstance(value, _Object):
        yield from _dump_container(value, depth, "{", "}", is_object=True)
    else:
        yield from _dump_container(value, depth, "[", "]", is_object=False)


def _dump_container(
    items: list[Any], depth: int, opening: str, closing: str, *, is_object: bool
) -> Iterator[str]:
    if not items:
        yield opening + closing
        return
    inner = _INDENT * (depth + 1)
    yield opening
    for index, item in enumerate(items):
        yield "\n" + inner
        if is_object:
            key, member = item
            yield json.dumps(key, ensure_ascii=False) + ": "
            yield from _dump(member, depth + 1)
        else:
            yield from _dump(item, depth + 1)
        if index < len(items) - 1:
            yield ","
    yield "\n" + _INDENT * depth + closing
