"""The response head wsgate sends to a client (nginx-semantics.md §1.5).

Mirrors ``ngx_http_upstream_process_headers`` (which upstream headers are kept) and
``ngx_http_header_filter`` (the order: status line, Server, Date, Content-Type,
Content-Length, Transfer-Encoding, Connection, Keep-Alive, then the rest of the upstream's
headers in order, duplicates kept). An upstream's ``Content-Type`` is not a header line
for nginx but a field of the response (ngx_http_upstream_copy_content_type): the last one
wins and is printed once, in its own place; ``Last-Modified`` stays where it was.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from wsgate.http.status import status_line

__all__ = ["HIDDEN", "build_response_head", "http_date"]

# Never copied from the upstream: regenerated hop-by-hop headers and proxy_hide_header's
# defaults (ngx_http_proxy_hide_headers[]).
HIDDEN = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "date",
        "server",
        "x-pad",
        "x-accel-expires",
        "x-accel-redirect",
        "x-accel-limit-rate",
        "x-accel-buffering",
        "x-accel-charset",
    }
)

_date_cache: tuple[int, str] = (0, "")


def http_date(now: float | None = None) -> str:
    """The ``Date`` header value, cached for the current second."""
    global _date_cache
    t = int(time.time() if now is None else now)
    if _date_cache[0] != t:
        _date_cache = (t, formatdate(t, usegmt=True))
    return _date_cache[1]


def build_response_head(
    *,
    status: int,
    reason: str | None,
    headers: list[tuple[str, str]],
    server: str,
    content_length: int | None,
    chunked: bool,
    connection: str,
    keepalive_header: float | None = None,
    location: str | None = None,
    status_text: str | None = None,
) -> bytes:
    """Return the head for the client.

    Args:
        reason: the upstream's reason phrase, copied verbatim (``None``: nginx's own).
        headers: the upstream's headers (hidden ones are dropped here).
        server: the ``Server`` value (``wsgate/VERSION`` or ``wsgate``).
        content_length: sent as ``Content-Length`` when not ``None``.
        chunked: the body is re-chunked for the client.
        connection: ``upgrade``, ``keep-alive`` or ``close``.
        location: a ``Location`` wsgate made absolute, printed in nginx's own place for it
            (other ``Location`` headers stay in ``headers`` order).
        status_text: the upstream's status line from the code on, as sent (``200 OK``,
            ``200``); nginx copies it after ``HTTP/1.1 `` (``reason`` is then unused).
    """
    if status_text is not None:
        first = f"HTTP/1.1 {status_text}\r\n"
    else:
        first = status_line(status, reason).decode("latin-1")
    out = [first, f"Server: {server}\r\n"]
    out.append(f"Date: {http_date()}\r\n")
    content_type = ""
    for n, v in headers:
        if len(n) == 12 and n.lower() == "content-type":
            content_type = v
    if content_type:
        out.append(f"Content-Type: {content_type}\r\n")
    if content_length is not None:
        out.append(f"Content-Length: {content_length}\r\n")
    if location is not None:
        out.append(f"Location: {location}\r\n")
    if chunked:
        out.append("Transfer-Encoding: chunked\r\n")
    out.append(f"Connection: {connection}\r\n")
    if connection == "keep-alive" and keepalive_header is not None:
        out.append(f"Keep-Alive: timeout={int(keepalive_header)}\r\n")
    for n, v in headers:
        low = n.lower()
        if low in HIDDEN or low == "content-type":
            continue
        out.append(f"{n}: {v}\r\n")
    out.append("\r\n")
    return "".join(out).encode("latin-1", errors="surrogateescape")
