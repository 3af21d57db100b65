"""Configuration checks found by the differential fuzz (tests/interop/test_nginx_config_fuzz.py).

Each refused configuration gives nginx 1.22's message at nginx's line (every message and
line here was checked against ``nginx -t``); each accepted one loads. The nginx function
that makes the check is named next to its cases.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wsgate.conf.build import finish, load, parse
from wsgate.conf.model import LocationConf, NextUpstream
from wsgate.conf.table import Url, UrlError, parse_url
from wsgate.errors import ConfigError

FILE = "/etc/wsgate/nginx.conf"  # never read: every test passes text= or writes tmp files


def conf(body: str) -> str:
    """``events`` and ``http``; BODY starts at line 3."""
    return "events {}\nhttp {\n" + body + "}\n"


def loc(body: str) -> str:
    """A server with ``location /``; BODY starts at line 5."""
    return conf(" server {\n  listen 127.0.0.1:8080;\n  location / {\n" + body + "  }\n }\n")


PP = "   proxy_pass http://127.0.0.1:9;\n"

# (id, text, message, line)
REFUSED: list[tuple[str, str, str, int]] = [
    # ngx_conf_read_token: a parameter (or comment) of NGX_CONF_BUFFER bytes, at its first line
    (
        "too-long-word",
        conf(" server {\n  server_name " + "a" * 4096 + ";\n }\n"),
        'too long parameter "aaaaaaaaaa..." started',
        4,
    ),
    (
        "too-long-quoted-over-lines",
        conf(' server {\n  server_name "' + "a\n" * 2100 + '";\n }\n'),
        'too long parameter, probably missing terminating """ character',
        4,
    ),
    (
        "too-long-single-quoted",
        conf(" server {\n  server_name '" + "b" * 5000 + "';\n }\n"),
        'too long parameter, probably missing terminating "\'" character',
        4,
    ),
    (
        "too-long-comment",
        conf(" #" + "c" * 5000 + "\n"),
        'too long parameter "#ccccccccc..." started',
        3,
    ),
    (
        "too-long-counts-bytes",
        conf(" server {\n  server_name " + "é" * 2048 + ";\n }\n"),
        'too long parameter "ééééé..." started',
        4,
    ),
    (
        "too-long-cut-character",
        conf(" server {\n  server_name a" + "é" * 2048 + ";\n }\n"),
        'too long parameter "aéééé\ufffd..." started',
        4,
    ),
    # ngx_conf_set_*_slot, ngx_set_worker_processes, ngx_event_connections,
    # ngx_http_core_keepalive: "is duplicate" comes before the value is looked at
    (
        "duplicate-before-value-flag",
        loc(PP + "   proxy_buffering on;\n   proxy_buffering maybe;\n"),
        '"proxy_buffering" directive is duplicate',
        8,
    ),
    (
        "duplicate-before-value-msec",
        loc(PP + "   proxy_read_timeout 1s;\n   proxy_read_timeout 5x;\n"),
        '"proxy_read_timeout" directive is duplicate',
        8,
    ),
    (
        "duplicate-before-value-worker-processes",
        "worker_processes 1;\nworker_processes x;\nevents {}\n",
        '"worker_processes" directive is duplicate',
        2,
    ),
    (
        "duplicate-before-value-worker-connections",
        "events {\n worker_connections 1;\n worker_connections -1;\n}\n",
        '"worker_connections" directive is duplicate',
        3,
    ),
    (
        "duplicate-before-value-keepalive-timeout",
        conf(" keepalive_timeout 5s;\n keepalive_timeout 5x;\n"),
        '"keepalive_timeout" directive is duplicate',
        4,
    ),
    (
        "duplicate-before-value-bufs",
        conf(" large_client_header_buffers 4 8k;\n large_client_header_buffers x 8k;\n"),
        '"large_client_header_buffers" directive is duplicate',
        4,
    ),
    # ngx_atoi: at most NGX_MAX_INT_T_VALUE; types_hash_bucket_size is a number slot
    (
        "number-overflow",
        conf(" keepalive_requests 9223372036854775808;\n"),
        '"keepalive_requests" directive invalid number',
        3,
    ),
    (
        "types-hash-bucket-size-is-a-number",
        conf(" types_hash_bucket_size 1k;\n"),
        '"types_hash_bucket_size" directive invalid number',
        3,
    ),
    (
        "limit-conn-status-not-a-number",
        loc(PP + "   limit_conn_status x;\n"),
        '"limit_conn_status" directive invalid number',
        7,
    ),
    # ngx_http_core_listen -> ngx_parse_url
    (
        "listen-no-host",
        conf(" server {\n  listen :80;\n }\n"),
        'no host in ":80" of the "listen" directive',
        4,
    ),
    (
        "listen-ipv6-unclosed",
        conf(" server {\n  listen [::1;\n }\n"),
        'invalid host in "[::1" of the "listen" directive',
        4,
    ),
    (
        "listen-ipv6-bad",
        conf(" server {\n  listen [::g]:80;\n }\n"),
        'invalid IPv6 address in "[::g]:80" of the "listen" directive',
        4,
    ),
    (
        "listen-uri",
        conf(" server {\n  listen 127.0.0.1:80/x;\n }\n"),
        'invalid host in "127.0.0.1:80/x" of the "listen" directive',
        4,
    ),
    (
        "listen-backlog",
        conf(" server {\n  listen 8080 backlog=0;\n }\n"),
        'invalid backlog "backlog=0"',
        4,
    ),
    (
        "listen-rcvbuf",
        conf(" server {\n  listen 8080 rcvbuf=1q;\n }\n"),
        'invalid rcvbuf "rcvbuf=1q"',
        4,
    ),
    (
        "listen-ipv6only",
        conf(" server {\n  listen [::]:8080 ipv6only=of;\n }\n"),
        'invalid ipv6only flags "of"',
        4,
    ),
    (
        "listen-so-keepalive",
        conf(" server {\n  listen 8080 so_keepalive=x;\n }\n"),
        'invalid so_keepalive value: "x"',
        4,
    ),
    # ngx_http_add_addresses
    (
        "listen-duplicate-default-server",
        conf(
            " server {\n  listen 127.0.0.1:8080 default_server;\n }\n"
            " server {\n  listen 127.0.0.1:8080 default;\n }\n"
        ),
        "a duplicate default server for 127.0.0.1:8080",
        7,
    ),
    # ngx_http_proxy_pass -> ngx_http_upstream_add -> ngx_parse_url, at the proxy_pass line
    (
        "proxy-pass-empty-port",
        loc("   proxy_pass http://127.0.0.1:;\n"),
        'invalid port in upstream "127.0.0.1:"',
        6,
    ),
    (
        "proxy-pass-ipv6-unclosed",
        loc("   proxy_pass http://[::1;\n"),
        'invalid host in upstream "[::1"',
        6,
    ),
    # ngx_http_log_set_log: variables in the path, with and without a buffer
    (
        "access-log-buffered-variables",
        conf(" access_log logs/$host.log combined buffer=32k;\n"),
        "buffered logs cannot have variables in name",
        3,
    ),
    (
        "access-log-variables",
        conf(" access_log logs/$host.log;\n"),
        'variables in the "access_log" path are not supported by wsgate in "logs/$host.log"',
        3,
    ),
    (
        "proxy-pass-unix",
        loc("   proxy_pass http://unix:/tmp/x.sock:;\n"),
        'unix domain sockets are not supported by wsgate in "http://unix:/tmp/x.sock:"',
        6,
    ),
    # ngx_http_upstream_server: no URI part in a server's address
    (
        "upstream-server-uri",
        conf(" upstream u {\n  server 127.0.0.1:8001/x;\n }\n"),
        'invalid host in upstream "127.0.0.1:8001/x"',
        4,
    ),
    (
        "upstream-server-scheme",
        conf(" upstream u {\n  server http://127.0.0.1:8001;\n }\n"),
        'invalid host in upstream "http://127.0.0.1:8001"',
        4,
    ),
    # ngx_http_log_set_log
    (
        "access-log-buffer",
        conf(" access_log logs/a.log combined buffer=x;\n"),
        'invalid buffer size "x"',
        3,
    ),
    (
        "access-log-flush",
        conf(" access_log logs/a.log combined flush=0;\n"),
        'invalid flush time "0"',
        3,
    ),
    (
        "access-log-gzip",
        conf(" access_log logs/a.log combined gzip=10;\n"),
        'invalid compression level "10"',
        3,
    ),
    (
        "access-log-flush-without-buffer",
        conf(" access_log logs/a.log combined flush=5s;\n"),
        'no buffer is defined for access_log "logs/a.log"',
        3,
    ),
    # ngx_http_limit_conn_zone, ngx_shared_memory_add, ngx_http_limit_conn
    (
        "limit-conn-zone-bound",
        conf(" limit_conn_zone $uri zone=z:1m;\n limit_conn_zone $uri zone=z:1m;\n"),
        'limit_conn_zone "z" is already bound to key "$uri"',
        4,
    ),
    (
        "limit-conn-zone-size-conflict",
        conf(" limit_conn_zone $uri zone=z:1m;\n limit_conn_zone $host zone=z:2m;\n"),
        'the size 2097152 of shared memory zone "z" conflicts with already declared size 1048576',
        4,
    ),
    (
        "limit-conn-zone-too-small",
        conf(" limit_conn_zone $uri zone=z:1k;\n"),
        'zone "zone=z:1k" is too small',
        3,
    ),
    (
        "limit-conn-too-many",
        conf(" limit_conn_zone $uri zone=z:1m;\n limit_conn z 65536;\n"),
        "connection limit must be less 65536",
        4,
    ),
    # ngx_http_init_static_location_trees: after the http block, nested levels first
    (
        "duplicate-location-found-after-the-block",
        conf(
            " server {\n  location /a { }\n  location /a { }\n"
            "  location /b {\n   bogus_x;\n  }\n }\n"
        ),
        'unknown directive "bogus_x"',
        7,
    ),
    (
        "duplicate-location-nested-first",
        conf(
            " server {\n  location /a { }\n  location /a { }\n"
            "  location /b {\n   location /b/c { }\n   location /b/c { }\n  }\n }\n"
        ),
        'duplicate location "/b/c"',
        8,
    ),
    # ngx_http_ssl_init: the default server's line, before unknown variables
    (
        "ssl-without-certificate-server-line",
        conf(" server\n {\n  listen 127.0.0.1:8443 ssl;\n }\n"),
        'no "ssl_certificate" is defined for the "listen ... ssl" directive',
        4,
    ),
    (
        "ssl-without-certificate-before-variables",
        conf(
            " server {\n  listen 127.0.0.1:8443 ssl;\n  location / {\n"
            + PP
            + "   proxy_set_header X $nosuch;\n  }\n }\n"
        ),
        'no "ssl_certificate" is defined for the "listen ... ssl" directive',
        3,
    ),
]

ACCEPTED: list[tuple[str, str]] = [
    ("word-of-4095-bytes", conf(" server {\n  server_name " + "a" * 4095 + ";\n }\n")),
    (
        "regex-locations-are-not-compared",
        conf(" server {\n  location ~ ^/a { }\n  location ~ ^/a { }\n }\n"),
    ),
    (
        "exact-and-prefix-of-one-name",
        conf(" server {\n  location = /a { }\n  location /a { }\n }\n"),
    ),
    ("ssl-session-cache-twice", conf(" ssl_session_cache none;\n ssl_session_cache off;\n")),
    ("limit-conn-before-its-zone", conf(" limit_conn z 1;\n limit_conn_zone $uri zone=z:1m;\n")),
    ("listen-so-keepalive-tuned", conf(" server {\n  listen 8080 so_keepalive=30m::10;\n }\n")),
    (
        "access-log-parameters",
        conf(" access_log logs/a.log combined buffer=32k flush=5s gzip=9 if=$status;\n"),
    ),
]


@pytest.mark.parametrize(
    ("text", "message", "line"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_refused_with_nginx_message(text: str, message: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        load(FILE, text=text)
    assert (info.value.message, info.value.file, info.value.line) == (message, FILE, line)


@pytest.mark.parametrize("text", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_accepted(text: str) -> None:
    load(FILE, text=text)


def _location(text: str) -> LocationConf:
    http = load(FILE, text=text).http
    assert http is not None
    return http.servers[0].locations[0]


def test_bitmask_directives_add_up_and_ignore_case() -> None:
    # ngx_conf_set_bitmask_slot: a second line at one level adds to the first
    location = _location(
        loc(PP + "   proxy_next_upstream error;\n   proxy_next_upstream TIMEOUT;\n")
    )
    assert location.proxy_next_upstream == NextUpstream.ERROR | NextUpstream.TIMEOUT
    location = _location(loc(PP + "   proxy_next_upstream off;\n   proxy_next_upstream error;\n"))
    assert location.proxy_next_upstream == NextUpstream.OFF
    http = load(
        FILE, text=conf(" ssl_protocols TLSv1.2;\n ssl_protocols tlsv1.3;\n server {\n }\n")
    ).http
    assert http is not None
    assert http.servers[0].defaults.ssl_protocols == ("TLSv1.2", "TLSv1.3")


def test_enum_directives_ignore_case() -> None:
    # ngx_conf_set_enum_slot compares with ngx_strcasecmp
    location = _location(loc(PP + "   server_tokens OFF;\n   limit_conn_log_level Warn;\n"))
    assert location.server_tokens is False
    assert location.limit_conn_log_level == "warn"


def test_unknown_zone_is_found_after_syntax_is_ok() -> None:
    # ngx_init_cycle: a zone named by limit_conn and never defined has no size
    parsed = parse(FILE, text=conf(" limit_conn nosuch 1;\n"))
    with pytest.raises(ConfigError) as info:
        finish(parsed)
    assert (info.value.message, info.value.file) == ('zero size shared memory zone "nosuch"', None)


def test_cr_is_a_space_not_a_line(tmp_path: Path) -> None:
    # ngx_conf_read_token counts LF only; the file is read without newline translation
    path = tmp_path / "nginx.conf"
    path.write_bytes(b"events {}\r\nhttp {\r server {\r  bogus_y;\r }\r\n}\n")
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert (info.value.message, info.value.line) == ('unknown directive "bogus_y"', 2)


def test_include_of_a_directory_is_a_read_error(tmp_path: Path) -> None:
    # ngx_read_file logs pread()'s failure at [crit], with no place
    (tmp_path / "dir.d").mkdir()
    path = tmp_path / "nginx.conf"
    path.write_text(conf(" include dir.d;\n"))
    with pytest.raises(ConfigError) as info:
        load(str(path))
    error = info.value
    assert (error.level, error.file, error.line) == ("crit", None, None)
    assert error.message == f'pread() "{tmp_path / "dir.d"}" failed (21: Is a directory)'


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("backend", {}, Url("backend", 80, True, None, False)),
        ("backend:8080/x", {"uri_part": True}, Url("backend", 8080, False, "/x", False)),
        ("backend?x", {"uri_part": True}, Url("backend", 80, True, "?x", False)),
        ("a/b:1", {"uri_part": True}, Url("a", 80, True, "/b:1", False)),
        ("[::1]:9/p", {"uri_part": True}, Url("::1", 9, False, "/p", True)),
        ("8080", {"listen": True}, Url("*", 8080, False, None, False)),
        ("*:80", {"listen": True}, Url("*", 80, False, None, False)),
    ],
)
def test_parse_url(text: str, options: dict[str, bool], expected: Url) -> None:
    assert parse_url(text, 80, **options) == expected


@pytest.mark.parametrize(
    ("text", "options", "error"),
    [
        ("backend:", {}, "invalid port"),
        ("backend:0", {}, "invalid port"),
        ("backend:65536", {}, "invalid port"),
        ("backend/x", {}, "invalid host"),
        ("8080/x", {"listen": True}, "invalid host"),
        (":80", {"listen": True}, "no host"),
        ("[::1", {}, "invalid host"),
        ("[::1]x", {}, "invalid host"),
        ("[]:80", {}, "no host"),
        ("[::g]", {}, "invalid IPv6 address"),
        ("0", {"listen": True}, "invalid port"),
    ],
)
def test_parse_url_errors(text: str, options: dict[str, bool], error: str) -> None:
    with pytest.raises(UrlError, match=f"^{error}$"):
        parse_url(text, 80, **options)
