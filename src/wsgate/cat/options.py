"""What a ``wsgate cat`` run was asked to do, decoupled from argparse, and its error type.

:class:`CatOptions` carries wscat's flags and the new ones; :func:`options_from_args` builds it
from the namespace :func:`wsgate.cli.cat.add_arguments` fills. Everything here is pure.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from typing import Final

from wsgate.cat.display import BinaryDisplay
from wsgate.errors import WsgateError

__all__ = [
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_RECONNECT",
    "DEFAULT_WAIT",
    "ERROR_EXIT",
    "HOLD_OPEN",
    "MAX_PAYLOAD",
    "SUPPORTED_VERSIONS",
    "CatError",
    "CatOptions",
    "normalize_url",
    "options_from_args",
    "protocol_version",
]

#: wscat's exit code after an error: ``process.exit(-1)``.
ERROR_EXIT: Final = 255
#: Seconds to wait after ``-x`` (and, in wsgate, after stdin EOF) when ``-w`` is not given.
DEFAULT_WAIT: Final = 2.0
#: The ``-w`` value that keeps the connection open.
HOLD_OPEN: Final = -1.0
#: ws' default ``maxPayload`` (100 MiB); websockets' own default of 1 MiB would be stricter.
MAX_PAYLOAD: Final = 100 * 2**20
#: wscat's ``--max-redirects`` default (ws' ``maxRedirects``).
DEFAULT_MAX_REDIRECTS: Final = 10
#: First delay of ``--reconnect`` when no value is given, in seconds.
DEFAULT_RECONNECT: Final = 1.0
#: ws' ``protocolVersions``: the values ``-p`` accepts.
SUPPORTED_VERSIONS: Final = (8, 13)

# wscat: a URL that does not start with a scheme gets "ws://" (note that "localhost:8010"
# *does* start with a scheme, "localhost:", and is then refused by ws, as in wscat).
_HAS_SCHEME = re.compile(r"^[a-z][a-z0-9.+-]*:", re.IGNORECASE)
# JavaScript's Number(): decimal literals; hex, octal and binary integers are handled apart.
_JS_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_JS_PREFIXED = re.compile(r"0([xXoObB])([0-9a-fA-F]+)")


class CatError(WsgateError):
    """A failure wscat reports as ``error: <message>`` before exiting with 255.

    ``message`` is the text after ``error: ``, worded as node's ``ws`` words it. ``transient``
    tells ``--reconnect`` that trying again may work (network errors, 5xx responses).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


@dataclasses.dataclass(frozen=True, slots=True)
class CatOptions:
    """Everything ``wsgate cat`` needs (see :func:`options_from_args` for the flags).

    ``wait`` is ``None`` when ``-w`` was not given (then :data:`DEFAULT_WAIT` applies) and
    :data:`HOLD_OPEN` to keep the connection open. ``headers`` are ``(name, value)`` pairs.
    ``listen`` is the ``-l`` port (then ``url`` is unused). ``protocol`` is ``-p`` as typed.
    ``passphrase`` is ``None`` when not given; ``prompt_passphrase`` is ``--passphrase``
    without a value. ``reconnect`` and ``ping_interval`` are in seconds, ``None`` when off.
    """

    url: str = ""
    execute: tuple[str, ...] = ()
    wait: float | None = None
    headers: tuple[tuple[str, str], ...] = ()
    origin: str | None = None
    host: str | None = None
    subprotocols: tuple[str, ...] = ()
    color: bool = True
    show_ping_pong: bool = False
    slash: bool = False
    check: bool = True
    auth: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    passphrase: str | None = None
    prompt_passphrase: bool = False
    listen: int | None = None
    protocol: str | None = None
    location: bool = False
    max_redirects: float = DEFAULT_MAX_REDIRECTS
    proxy: str | None = None
    binary: bool = False
    binary_display: BinaryDisplay = BinaryDisplay.TEXT
    json: bool = False
    reconnect: float | None = None
    ping_interval: float | None = None
    timestamps: bool = False

    @property
    def wait_seconds(self) -> float:
        """``-w`` in seconds: :data:`HOLD_OPEN`, or a delay >= 0 (wscat treats < 0 as 0)."""
        if self.wait is None:
            return DEFAULT_WAIT
        if self.wait == HOLD_OPEN:
            return HOLD_OPEN
        return max(self.wait, 0.0)


def options_from_args(args: argparse.Namespace) -> CatOptions:
    """Build :class:`CatOptions` from the namespace :func:`wsgate.cli.cat.add_arguments` fills."""
    passphrase = args.passphrase
    return CatOptions(
        url=args.connect or "",
        execute=tuple(args.execute or ()),
        wait=args.wait,
        headers=tuple(args.header or ()),
        origin=args.origin,
        host=args.host,
        subprotocols=tuple(args.subprotocol or ()),
        color=args.color,
        show_ping_pong=args.show_ping_pong,
        slash=args.slash,
        check=args.check,
        auth=args.auth,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        passphrase=passphrase if isinstance(passphrase, str) else None,
        prompt_passphrase=passphrase is True,
        listen=args.listen,
        protocol=args.protocol,
        location=args.location,
        max_redirects=args.max_redirects,
        proxy=args.proxy,
        binary=args.binary,
        binary_display=BinaryDisplay(args.binary_display),
        json=args.json,
        reconnect=args.reconnect,
        ping_interval=args.ping_interval,
        timestamps=args.timestamps,
    )


def normalize_url(url: str) -> str:
    """Prefix ``ws://`` when ``url`` has no scheme, exactly as wscat decides it."""
    return url if _HAS_SCHEME.match(url) else f"ws://{url}"


def _js_number(text: str) -> float:
    """JavaScript's unary ``+`` on a string (what wscat applies to ``-p``)."""
    text = text.strip()
    if not text:
        return 0.0
    if text.lstrip("+-") == "Infinity":
        return -math.inf if text.startswith("-") else math.inf
    if _JS_DECIMAL.fullmatch(text):
        return float(text)
    prefixed = _JS_PREFIXED.fullmatch(text)
    if prefixed is not None:
        base = {"x": 16, "o": 8, "b": 2}[prefixed.group(1).lower()]
        try:
            return float(int(prefixed.group(2), base))
        except ValueError:
            return math.nan
    return math.nan


def _js_format(value: float) -> str:
    """How JavaScript prints a number in a template string (the common cases)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    if value.is_integer():
        return str(int(value))
    return repr(value)


def protocol_version(text: str | None) -> int:
    """The ``Sec-WebSocket-Version`` to send for ``-p TEXT`` (13 when not given).

    Raises:
        CatError: ws' ``Unsupported protocol version: N (supported versions: 8, 13)``.
    """
    if not text:  # wscat sets protocolVersion only when the option is truthy
        return 13
    value = _js_number(text)
    if value in SUPPORTED_VERSIONS:
        return int(value)
    supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
    raise CatError(
        f"Unsupported protocol version: {_js_format(value)} (supported versions: {supported})"
    )
