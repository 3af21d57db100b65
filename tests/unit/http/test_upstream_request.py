"""The request head sent upstream, checked against nginx 1.22 transcripts (§1.4)."""

from __future__ import annotations

from wsgate.http.upstream_request import build_request_head, escape_uri, valid_header_name

SEED_SET = [
    ("Host", "example.test"),
    ("X-Real-IP", "127.0.0.1"),
    ("X-Forwarded-For", "1.2.3.4, 5.6.7.8, 127.0.0.1"),
    ("Upgrade", ""),
    ("Connection", "close"),
]


def test_seed_config_ordinary_request() -> None:
    client = [
        ("Host", "Example.TEST:8080"),
        ("User-Agent", "t"),
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-For", "5.6.7.8"),
        ("Connection", "keep-alive"),
        ("Keep-Alive", "300"),
        ("TE", "trailers"),
        ("Expect", "100-continue"),
        ("X-Empty", ""),
        ("Accept", "*/*"),
        ("Proxy-Connection", "x"),
    ]
    head = build_request_head(
        method="GET",
        uri="/foo?a=1",
        http_version="1.1",
        set_headers=SEED_SET,
        client_headers=client,
        proxy_host="backend",
        body_length=None,
    )
    assert head == (
        b"GET /foo?a=1 HTTP/1.1\r\n"
        b"Host: example.test\r\n"
        b"X-Real-IP: 127.0.0.1\r\n"
        b"X-Forwarded-For: 1.2.3.4, 5.6.7.8, 127.0.0.1\r\n"
        b"Connection: close\r\n"
        b"User-Agent: t\r\n"
        b"X-Empty: \r\n"
        b"Accept: */*\r\n"
        b"Proxy-Connection: x\r\n"
        b"\r\n"
    )


def test_no_proxy_set_header_defaults() -> None:
    head = build_request_head(
        method="GET",
        uri="/h",
        http_version="1.0",
        set_headers=[],
        client_headers=[("Host", "x"), ("User-Agent", "curl/7.88.1"), ("Accept", "*/*")],
        proxy_host="127.0.0.1:27001",
        body_length=None,
    )
    assert head == (
        b"GET /h HTTP/1.0\r\nHost: 127.0.0.1:27001\r\nConnection: close\r\n"
        b"User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
    )


def test_body_length_and_duplicate_set_headers() -> None:
    head = build_request_head(
        method="POST",
        uri="/",
        http_version="1.0",
        set_headers=[("X-C", "1"), ("X-C", "2")],
        client_headers=[("Content-Length", "5"), ("X-C", "client")],
        proxy_host="b",
        body_length=5,
    )
    assert head == (
        b"POST / HTTP/1.0\r\nX-C: 1\r\nX-C: 2\r\nHost: b\r\nConnection: close\r\n"
        b"Content-Length: 5\r\n\r\n"
    )


def test_pass_request_headers_off() -> None:
    head = build_request_head(
        method="GET",
        uri="/",
        http_version="1.1",
        set_headers=[],
        client_headers=[("Accept", "*/*")],
        proxy_host="b",
        body_length=None,
        pass_request_headers=False,
    )
    assert head == b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"


def test_header_names_nginx_keeps() -> None:
    assert valid_header_name("X-Forwarded-For", underscores=False)
    assert not valid_header_name("X_under", underscores=False)
    assert valid_header_name("X_under", underscores=True)
    assert not valid_header_name("X.dot", underscores=True)
    assert not valid_header_name("", underscores=True)


def test_escape_uri() -> None:
    assert escape_uri("/a b") == "/a%20b"
    assert escape_uri("/plain/path") == "/plain/path"
    assert escape_uri("/q?x#y") == "/q%3Fx%23y"
    assert escape_uri("/caf\u00e9") == "/caf%C3%A9"
