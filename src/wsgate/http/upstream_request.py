"""The request head wsgate sends to a peer (nginx-semantics.md §1.4, classic defaults).

Mirrors ``ngx_http_proxy_create_request`` with the header list of
``ngx_http_proxy_init_headers``: the location's ``proxy_set_header`` entries, then the
defaults they do not name; entries whose value is empty are dropped; then the client's
headers in the order received, except those whose names the list mentions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["DEFAULT_HEADERS", "build_request_head", "escape_uri", "valid_header_name"]

# ngx_http_proxy_headers[] of nginx <= 1.29.6; values other than these four are empty.
DEFAULT_HEADERS = (
    "Host",
    "Connection",
    "Content-Length",
    "Transfer-Encoding",
    "TE",
    "Keep-Alive",
    "Expect",
    "Upgrade",
)

_NAME = re.compile(r"[A-Za-z0-9-]+\Z")
_NAME_UNDERSCORE = re.compile(r"[A-Za-z0-9_-]+\Z")


def valid_header_name(name: str, underscores: bool) -> bool:
    """Whether nginx keeps a client header line (``ngx_http_parse_header_line`` with
    ``ignore_invalid_headers on``): letters, digits and ``-``, plus ``_`` if allowed."""
    return (_NAME_UNDERSCORE if underscores else _NAME).match(name) is not None


def build_request_head(
    *,
    method: str,
    uri: str,
    http_version: str,
    set_headers: Iterable[tuple[str, str]],
    client_headers: Iterable[tuple[str, str]],
    proxy_host: str,
    body_length: int | None,
    pass_request_headers: bool = True,
) -> bytes:
    """Return the whole head (request line, headers, blank line) as bytes.

    Args:
        set_headers: ``proxy_set_header`` entries of the location, values evaluated.
        client_headers: the client's (valid) header lines in the order received.
        body_length: length of the (buffered) request body, ``None`` when there is none.
    """
    entries = list(set_headers)
    named = {n.lower() for n, _ in entries}
    for name in DEFAULT_HEADERS:
        low = name.lower()
        if low in named:
            continue
        named.add(low)
        if low == "host":
            entries.append((name, proxy_host))
        elif low == "connection":
            entries.append((name, "close"))
        elif low == "content-length" and body_length is not None:
            entries.append((name, str(body_length)))
    lines = [f"{method} {uri} HTTP/{http_version}\r\n"]
    lines.extend(f"{n}: {v}\r\n" for n, v in entries if v)
    if pass_request_headers:
        lines.extend(f"{n}: {v}\r\n" for n, v in client_headers if n.lower() not in named)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1", errors="surrogateescape")


# ngx_escape_uri(NGX_ESCAPE_URI): bytes escaped when a rewritten URI is sent upstream.
_ESCAPE = frozenset(range(0x21)) | frozenset(b'"#%<>?\\^`{|}') | frozenset(range(0x7F, 0x100))


def escape_uri(path: str) -> str:
    """Percent-escape a decoded path for the request line (nginx-semantics.md §4.4)."""
    data = path.encode("utf-8", errors="surrogateescape")
    if not any(b in _ESCAPE for b in data):
        return path
    return "".join(f"%{b:02X}" if b in _ESCAPE else chr(b) for b in data)
