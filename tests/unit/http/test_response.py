"""The response head for the client (§1.5 order) and nginx's error pages."""

from __future__ import annotations

from wsgate.http.response import build_response_head
from wsgate.http.status import error_page


def _lines(head: bytes) -> list[str]:
    return [line for line in head.decode().split("\r\n") if not line.startswith("Date: ")]


def test_101_head_like_nginx() -> None:
    head = build_response_head(
        status=101,
        reason="Switching Protocols",
        headers=[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", "dummy"),
            ("X-Backend", "b9002"),
        ],
        server="nginx/1.22.1",
        content_length=None,
        chunked=False,
        connection="upgrade",
    )
    assert _lines(head) == [
        "HTTP/1.1 101 Switching Protocols",
        "Server: nginx/1.22.1",
        "Connection: upgrade",
        "Upgrade: websocket",
        "Sec-WebSocket-Accept: dummy",
        "X-Backend: b9002",
        "",
        "",
    ]


def test_hidden_and_moved_headers() -> None:
    head = build_response_head(
        status=200,
        reason="OK",
        headers=[
            ("X-A", "1"),
            ("Server", "up"),
            ("Date", "then"),
            ("Content-Type", "text/plain"),
            ("X-Accel-Buffering", "no"),
            ("X-Dup", "1"),
            ("X-Dup", "2"),
            ("Keep-Alive", "timeout=5"),
        ],
        server="wsgate/0",
        content_length=3,
        chunked=False,
        connection="keep-alive",
        keepalive_header=20,
    )
    assert _lines(head) == [
        "HTTP/1.1 200 OK",
        "Server: wsgate/0",
        "Content-Type: text/plain",
        "Content-Length: 3",
        "Connection: keep-alive",
        "Keep-Alive: timeout=20",
        "X-A: 1",
        "X-Dup: 1",
        "X-Dup: 2",
        "",
        "",
    ]


def test_error_page_is_nginx_byte_count() -> None:
    # nginx 1.22.1 sends 157 bytes for its 502 page with server_tokens on (§3.5).
    assert len(error_page(502, "nginx/1.22.1")) == 157
    assert b"<title>504 Gateway Time-out</title>" in error_page(504, "x")
    assert b"<title>400 Request Header Or Cookie Too Large</title>" in error_page(494, "x")


def test_content_type_last_wins_and_last_modified_stays() -> None:
    """ngx_http_upstream_copy_content_type keeps one Content-Type (the last); an
    upstream's Last-Modified is an ordinary header line, in its place."""
    head = build_response_head(
        status=200,
        reason=None,
        status_text="200",
        headers=[
            ("Content-Type", "text/html"),
            ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ("X-A", "1"),
            ("content-type", "text/plain"),
        ],
        server="wsgate/0",
        content_length=3,
        chunked=False,
        connection="close",
    )
    assert _lines(head) == [
        "HTTP/1.1 200",
        "Server: wsgate/0",
        "Content-Type: text/plain",
        "Content-Length: 3",
        "Connection: close",
        "Last-Modified: Mon, 01 Jan 2024 00:00:00 GMT",
        "X-A: 1",
        "",
        "",
    ]
