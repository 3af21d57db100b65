"""Status lines and nginx's built-in error pages (src/http/ngx_http_special_response.c)."""

from __future__ import annotations

__all__ = ["REASONS", "error_page", "status_line"]

# Reason phrases nginx prints for the statuses it generates (ngx_http_status_lines[]).
REASONS: dict[int, str] = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Not Allowed",
    406: "Not Acceptable",
    408: "Request Time-out",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Large",
    415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable",
    421: "Misdirected Request",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
    505: "HTTP Version Not Supported",
    507: "Insufficient Storage",
}

# Titles of the error pages that differ from the status line (494 is sent as 400).
_PAGE_TITLES: dict[int, str] = {
    302: "302 Found",
    401: "401 Authorization Required",
    494: "400 Request Header Or Cookie Too Large",
    495: "400 The SSL certificate error",
    496: "400 No required SSL certificate was sent",
    497: "400 The plain HTTP request was sent to HTTPS port",
}


def status_line(status: int, reason: str | None = None) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n``; nginx prints no phrase for unknown codes."""
    phrase = reason if reason is not None else REASONS.get(status, "")
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


def error_page(status: int, server_token: str) -> bytes:
    """The HTML body nginx sends for an error status it generates itself.

    ``server_token`` is ``wsgate/VERSION`` (server_tokens on) or ``wsgate`` (off).
    """
    title = _PAGE_TITLES.get(status, f"{status} {REASONS.get(status, '')}")
    if 494 <= status <= 497:
        # ngx_http_error_494_page .. _497_page: a 400 heading, then the reason in a line
        # of its own.
        heading = f"<center><h1>400 Bad Request</h1></center>\r\n<center>{title[4:]}</center>"
    else:
        heading = f"<center><h1>{title}</h1></center>"
    return (
        "<html>\r\n"
        f"<head><title>{title}</title></head>\r\n"
        "<body>\r\n"
        f"{heading}\r\n"
        f"<hr><center>{server_token}</center>\r\n"
        "</body>\r\n"
        "</html>\r\n"
    ).encode("latin-1")
