"""Differential: ``nginx -t`` against ``wsgate proxy -t`` on the same configuration text
(nginx-semantics.md sections 1.1-1.3 and 6.1-6.5).

Each case is written to ``tmp_path/nginx/nginx.conf`` and tested by the real nginx
(``tests.support.nginx.nginx_test``, which adds its prefix-local paths on the ``http {``
line, so line numbers stay true). The file is then rewritten with the case's own text and
``python -m wsgate proxy -t -c ABSOLUTE_PATH`` is run on it, so both name the same file.

Both outputs are reduced to the same shape and compared as a whole:

* an ``[emerg]`` line becomes ``[emerg] MESSAGE in FILE:LINE`` (nginx's
  ``YYYY/MM/DD HH:MM:SS [emerg] PID#PID: `` and wsgate's ``wsgate: [emerg] `` prefixes
  dropped);
* a ``nginx: ...`` / ``wsgate: ...`` line (``syntax is ok``, ``test is successful``,
  ``test failed``) keeps its text without the program name;
* the temporary directory is replaced by ``PREFIX``.

Lines at other levels (``[warn]``, ``[notice]``) are not compared. The exit statuses must
be equal too.

Known differences (``KNOWN_DIFFERENCES``): nginx accepts ``if`` blocks, named locations,
variables in ``proxy_pass`` and unix-socket upstreams; wsgate refuses each with its own
"not supported" message at the directive's line. The balancing methods are compared in
``test_nginx_balancer_conf.py``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.nginx import nginx_test, require_nginx
from tests.support.procs import wsgate_cmd

WSGATE_TIMEOUT = 30.0  # seconds for one `wsgate proxy -t`

_NGINX_LOG = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: (.*)$")
_WSGATE_LOG = re.compile(r"^wsgate: \[(\w+)\] (.*)$")
_CLI = re.compile(r"^(?:nginx|wsgate): (.*)$")


@dataclass(frozen=True)
class Case:
    """One configuration; ``files`` are extra files (path relative to the main file)."""

    id: str
    text: str
    files: dict[str, str] = field(default_factory=dict)
    refusal: str = ""  # KNOWN_DIFFERENCES: part of wsgate's own [emerg] message
    line: int = 0  # KNOWN_DIFFERENCES: the line wsgate reports


def _conf(body: str) -> str:
    """An ``events`` line plus ``http {`` BODY ``}``; BODY lines start at line 3."""
    return "events {}\nhttp {\n" + body + "}\n"


def _loc(body: str) -> str:
    """A server with ``location /`` around BODY; BODY lines start at line 5."""
    return _conf(" server {\n  listen 127.0.0.1:8080;\n  location / {\n" + body + "  }\n }\n")


PP = "   proxy_pass http://127.0.0.1:9;\n"  # a valid proxy_pass (nothing need listen)

SEED = _conf(
    " map $http_upgrade $connection_upgrade {\n"
    "  default upgrade;\n"
    "  ''      close;\n"
    " }\n"
    " upstream backend {\n"
    "  server 127.0.0.1:8001;\n"
    "  server 127.0.0.1:8002;\n"
    " }\n"
    " server {\n"
    "  listen 127.0.0.1:8080;\n"
    "  server_name example.com;\n"
    "  location / {\n"
    "   proxy_pass http://backend;\n"
    "   proxy_read_timeout 300s;\n"
    "   proxy_http_version 1.1;\n"
    "   proxy_set_header Host $host;\n"
    "   proxy_set_header X-Real-IP $remote_addr;\n"
    "   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
    "   proxy_set_header Upgrade $http_upgrade;\n"
    "   proxy_set_header Connection $connection_upgrade;\n"
    "  }\n"
    " }\n"
)


def _upstream(server_line: str) -> str:
    return _conf(
        " upstream u {\n"
        f"  {server_line}\n"
        " }\n"
        " server {\n  listen 127.0.0.1:8080;\n  location / { proxy_pass http://u; }\n }\n"
    )


def _map(entries: str, use: bool = True) -> str:
    server = (
        " server {\n  listen 127.0.0.1:8080;\n  location / {\n"
        + PP
        + "   proxy_set_header Connection $m;\n  }\n }\n"
        if use
        else ""
    )
    return _conf(" map $http_upgrade $m {\n" + entries + " }\n" + server)


BAD: list[Case] = [
    # --- generic dispatch errors (section 6.2)
    Case("unknown-directive", _conf(" foo_bar 1;\n")),
    Case("unknown-directive-main", "events {}\nfoo_bar;\n"),
    Case(
        "not-allowed-upstream-in-server",
        _conf(" server {\n  upstream u { server 127.0.0.1:1; }\n }\n"),
    ),
    Case("not-allowed-proxy-pass-in-http", _conf(" proxy_pass http://127.0.0.1:9;\n")),
    Case("not-allowed-listen-in-http", _conf(" listen 8080;\n")),
    Case("not-allowed-worker-connections-in-http", _conf(" worker_connections 10;\n")),
    Case("invalid-args-proxy-pass-none", _loc("   proxy_pass;\n")),
    Case("invalid-args-proxy-read-timeout-two", _loc(PP + "   proxy_read_timeout 1s 2s;\n")),
    Case("invalid-args-proxy-set-header-one", _loc(PP + "   proxy_set_header Host;\n")),
    Case("invalid-args-upstream-none", _conf(" upstream {\n  server 127.0.0.1:1;\n }\n")),
    Case("invalid-args-events", "events x {}\n"),
    Case("not-terminated-by-semicolon", _loc("   proxy_pass http://127.0.0.1:9 {\n   }\n")),
    Case("no-opening-brace-events", "events;\nhttp {}\n"),
    Case("no-opening-brace-location", _conf(" server {\n  location /;\n }\n")),
    # --- missing ";" shows up on the next line (section 6.1)
    Case(
        "missing-semicolon-timeout",
        _loc(PP + "   proxy_read_timeout 10s\n   proxy_http_version 1.1;\n"),
    ),
    Case(
        "missing-semicolon-listen",
        _conf(" server {\n  listen 8080\n  server_name x;\n }\n"),
    ),
    Case(
        "missing-semicolon-before-brace",
        _conf(" server {\n  location / { proxy_pass http://127.0.0.1:9 }\n }\n"),
    ),
    # --- tokenizer errors (section 6.1)
    Case("quote-then-char", _conf(' server {\n  server_name "a"b;\n }\n')),
    Case("single-quote-then-char", _conf(" server {\n  server_name 'a'b;\n }\n")),
    Case("stray-semicolon-after-block", _conf(" server {\n  listen 8080;\n } ;\n")),
    Case("stray-semicolon-top", "events {}\n;\n"),
    Case("unexpected-close-brace-top", "events {}\n}\n"),
    Case("unexpected-close-brace-extra", _conf(" server {\n  listen 8080;\n }\n }\n")),
    Case("unexpected-open-brace", _conf(" server {\n  {\n }\n")),
    Case("eof-expecting-brace", "events {}\nhttp {\n server {\n  listen 8080;\n }\n"),
    Case("eof-expecting-brace-no-newline", "events {}\nhttp {"),
    Case("eof-unterminated-directive", "events {}\nhttp {\n server {\n  listen 8080"),
    Case("eof-unterminated-quote", 'events {}\nhttp {\n server_name "abc;\n}\n'),
    # --- duplicates and bad values (section 6.2)
    Case("duplicate-proxy-pass", _loc(PP + PP)),
    Case(
        "duplicate-proxy-read-timeout",
        _loc(PP + "   proxy_read_timeout 10s;\n   proxy_read_timeout 20s;\n"),
    ),
    Case(
        "duplicate-proxy-http-version",
        _loc(PP + "   proxy_http_version 1.1;\n   proxy_http_version 1.0;\n"),
    ),
    Case("duplicate-events", "events {}\nevents {}\n"),
    Case("bad-time-10x", _loc(PP + "   proxy_read_timeout 10x;\n")),
    Case("bad-time-ascending", _loc(PP + "   proxy_read_timeout 30m1h;\n")),
    Case("bad-time-year-msec", _loc(PP + "   proxy_connect_timeout 1y;\n")),
    Case("bad-time-negative", _loc(PP + "   send_timeout -1;\n")),
    Case("bad-size-g", _loc(PP + "   proxy_buffer_size 1g;\n")),
    Case("bad-offset-x", _loc(PP + "   client_max_body_size 10x;\n")),
    Case("bad-flag", _loc(PP + "   proxy_buffering maybe;\n")),
    Case("bad-flag-http-level", _conf(" underscores_in_headers yes;\n")),
    Case("proxy-http-version-2.0", _loc(PP + "   proxy_http_version 2.0;\n")),
    Case("proxy-next-upstream-bogus", _loc(PP + "   proxy_next_upstream error bogus;\n")),
    Case("worker-connections-1k", "events {\n worker_connections 1k;\n}\nhttp {}\n"),
    Case("worker-processes-bad", "worker_processes lots;\nevents {}\n"),
    Case("keepalive-timeout-bad", _conf(" keepalive_timeout 10x;\n")),
    Case("keepalive-timeout-second-bad", _conf(" keepalive_timeout 10s 5x;\n")),
    Case("large-client-header-buffers-zero", _conf(" large_client_header_buffers 0 8k;\n")),
    Case(
        "access-log-buffered-variables",
        _conf(" access_log logs/$host.log combined buffer=32k;\n"),
    ),
    Case("large-client-header-buffers-size-bad", _conf(" large_client_header_buffers 4 8x;\n")),
    Case("server-tokens-bad", _conf(" server_tokens maybe;\n")),
    Case("num-slot-proxy-next-upstream-tries", _loc(PP + "   proxy_next_upstream_tries x;\n")),
    Case("num-slot-keepalive-requests", _loc(PP + "   keepalive_requests x;\n")),
    Case("num-slot-worker-rlimit-nofile", "worker_rlimit_nofile x;\nevents {}\n"),
    Case("http-duplicate", "events {}\nhttp {}\nhttp {}\n"),
    Case("events-inside-events", "events {\n events {}\n}\n"),
    Case("missing-events", "http {\n server {\n  listen 127.0.0.1:8080;\n }\n}\n"),
    # --- variables and map (section 1.1)
    Case("unknown-variable", _loc(PP + "   proxy_set_header X-Foo $nosuchvar;\n")),
    Case(
        "unknown-variable-map-missing",
        _loc(PP + "   proxy_set_header Connection $connection_upgrade;\n"),
    ),
    Case("map-duplicate-default", _map("  default a;\n  default b;\n")),
    Case("map-conflicting-parameter", _map("  websocket a;\n  WebSocket b;\n")),
    Case("map-conflicting-parameter-upper", _map("  WEBSOCKET a;\n  WebSocket b;\n")),
    Case("map-regex-missing-paren", _map("  default a;\n  ~^(x b;\n")),
    Case("map-wrong-param-count", _map("  a b c;\n")),
    Case("map-one-param", _map("  a;\n")),
    Case("map-wrong-arg-count", _conf(" map $http_upgrade {\n  default a;\n }\n")),
    Case("map-in-server", _conf(" server {\n  map $a $b { }\n }\n")),
    # variable syntax: proxy_set_header values are compiled when the http block is merged,
    # so nginx reports them at the line of the "}" that closes http
    Case(
        "variable-name-invalid-proxy-set-header",
        _loc(PP + "   proxy_set_header X a$;\n"),
    ),
    Case(
        "variable-name-invalid-proxy-set-header-http-level",
        _conf(" proxy_set_header X a$;\n server {\n  listen 8080;\n }\n\n"),
    ),
    Case("variable-name-empty-braces", _loc(PP + "   proxy_set_header X ${};\n")),
    Case("variable-missing-bracket", _loc(PP + "   proxy_set_header X ${host;\n")),
    Case("variable-name-invalid-add-header", _conf(" add_header X a$;\n")),
    Case("variable-name-invalid-return", _conf(" server {\n  return 200 a$;\n }\n")),
    Case("variable-name-invalid-map-value", _map("  x a$;\n", use=False)),
    Case("variable-name-invalid-log-format", _conf(" log_format a 'a$';\n")),
    Case("map-target-builtin-variable", _conf(" map $http_a $host {\n }\n")),
    Case("map-bad-target-name", _conf(" map $http_a b {\n }\n")),
    Case("map-block-entry", _conf(" map $http_a $b {\n  a {\n }\n")),
    # --- upstream (section 1.2)
    Case(
        "upstream-empty",
        _conf(" upstream u {\n }\n server {\n  location / { proxy_pass http://u; }\n }\n"),
    ),
    Case("upstream-weight-0", _upstream("server 127.0.0.1:8001 weight=0;")),
    Case("upstream-weight-x", _upstream("server 127.0.0.1:8001 weight=x;")),
    Case("upstream-fail-timeout-ms", _upstream("server 127.0.0.1:8001 fail_timeout=10ms;")),
    Case("upstream-max-fails-x", _upstream("server 127.0.0.1:8001 max_fails=x;")),
    Case("upstream-bogus-param", _upstream("server 127.0.0.1:8001 bogus;")),
    Case("upstream-slow-start", _upstream("server 127.0.0.1:8001 slow_start=10s;")),
    Case("upstream-max-conns-x", _upstream("server 127.0.0.1:8001 max_conns=x;")),
    Case("upstream-port-0", _upstream("server 127.0.0.1:0;")),
    Case("upstream-only-down-backup", _upstream("server 127.0.0.1:8001 down backup;")),
    Case("upstream-server-no-args", _upstream("server;")),
    # --- upstream keepalive (ngx_http_upstream_keepalive_module)
    Case("upstream-keepalive-0", _upstream("server 127.0.0.1:8001; keepalive 0;")),
    Case("upstream-keepalive-x", _upstream("server 127.0.0.1:8001; keepalive x;")),
    Case("upstream-keepalive-no-args", _upstream("server 127.0.0.1:8001; keepalive;")),
    Case("upstream-keepalive-two-args", _upstream("server 127.0.0.1:8001; keepalive 1 2;")),
    Case(
        "upstream-keepalive-duplicate",
        _upstream("server 127.0.0.1:8001;\n  keepalive 2;\n  keepalive 2;"),
    ),
    Case(
        "upstream-keepalive-duplicate-after-method",
        _upstream("server 127.0.0.1:8001;\n  keepalive 2;\n  ip_hash;\n  keepalive 2;"),
    ),
    Case(
        "upstream-keepalive-timeout-bad",
        _upstream("server 127.0.0.1:8001; keepalive 2; keepalive_timeout 5x;"),
    ),
    Case(
        "upstream-keepalive-timeout-two-args",
        _upstream("server 127.0.0.1:8001; keepalive 2; keepalive_timeout 5s 5s;"),
    ),
    Case(
        "upstream-keepalive-timeout-duplicate",
        _upstream("server 127.0.0.1:8001;\n  keepalive_timeout 5s;\n  keepalive_timeout 5s;"),
    ),
    Case(
        "upstream-keepalive-requests-bad",
        _upstream("server 127.0.0.1:8001; keepalive 2; keepalive_requests 1k;"),
    ),
    Case(
        "upstream-keepalive-time-bad",
        _upstream("server 127.0.0.1:8001; keepalive 2; keepalive_time 1hx;"),
    ),
    Case("keepalive-in-location", _loc(PP + "   keepalive 2;\n")),
    Case("keepalive-time-in-http-bad", _conf(" keepalive_time 1x;\n")),
    Case("upstream-bad-port", _upstream("server 127.0.0.1:99999;")),
    Case("upstream-host-not-found", _upstream("server nosuchhost.invalid:8001;")),
    Case("upstream-host-not-found-no-port", _upstream("server nosuchhost.invalid;")),
    Case(
        "upstream-duplicate",
        _conf(
            " upstream u {\n  server 127.0.0.1:8001;\n }\n"
            " upstream U {\n  server 127.0.0.1:8002;\n }\n"
        ),
    ),
    Case(
        "upstream-only-backup",
        _upstream("server 127.0.0.1:8001 backup;"),
    ),
    # --- proxy_pass (section 1.3)
    Case(
        "proxy-pass-upstream-with-port",
        _conf(
            " upstream u {\n  server 127.0.0.1:8001;\n }\n"
            " server {\n  location / {\n   proxy_pass http://u:80;\n  }\n }\n"
        ),
    ),
    Case("proxy-pass-ftp", _loc("   proxy_pass ftp://127.0.0.1;\n")),
    Case("proxy-pass-no-scheme", _loc("   proxy_pass 127.0.0.1:9;\n")),
    Case("proxy-pass-host-not-found", _loc("   proxy_pass http://nosuchupstream.invalid;\n")),
    Case(
        "proxy-pass-host-not-found-port",
        _loc("   proxy_pass http://nosuchupstream.invalid:8080/x;\n"),
    ),
    Case("proxy-pass-no-host", _loc("   proxy_pass http://;\n")),
    Case("proxy-pass-bad-port", _loc("   proxy_pass http://127.0.0.1:99999;\n")),
    Case(
        "proxy-pass-uri-in-regex-location",
        _conf(" server {\n  location ~ ^/ws {\n   proxy_pass http://127.0.0.1:9/x;\n  }\n }\n"),
    ),
    # --- include
    Case("include-missing-file", _conf(" include missing.conf;\n")),
    Case("include-missing-in-location", _loc(PP + "   include nope.conf;\n")),
    Case("include-two-args", _conf(" include a b;\n")),
    Case(
        "include-error-inside",
        _conf(" include conf.d/*.conf;\n"),
        files={"conf.d/a.conf": "# a\nfoo_bar;\n"},
    ),
    # --- server / location / listen
    Case(
        "location-duplicate",
        _conf(
            " server {\n  location /a { proxy_pass http://127.0.0.1:9; }\n"
            "  location /a { proxy_pass http://127.0.0.1:9; }\n }\n"
        ),
    ),
    Case(
        "location-regex-missing-paren",
        _conf(" server {\n  location ~ ^/(a {\n   proxy_pass http://127.0.0.1:9;\n  }\n }\n"),
    ),
    Case(
        "location-regex-unmatched-paren",
        _conf(" server {\n  location ~ ^/a) {\n   proxy_pass http://127.0.0.1:9;\n  }\n }\n"),
    ),
    Case("server-name-regex-missing-paren", _conf(" server {\n  server_name ~^(x;\n }\n")),
    Case("location-bad-modifier", _conf(" server {\n  location ~~ /a {\n  }\n }\n")),
    Case(
        "location-outside-parent",
        _conf(" server {\n  location /a/ {\n   location /b/ {\n   }\n  }\n }\n"),
    ),
    Case(
        "location-inside-exact",
        _conf(" server {\n  location = /a {\n   location /a/b {\n   }\n  }\n }\n"),
    ),
    Case("listen-host-not-found", _conf(" server {\n  listen nosuch.invalid:8080;\n }\n")),
    Case("listen-port-0", _conf(" server {\n  listen 0;\n }\n")),
    Case("location-no-args", _conf(" server {\n  location {\n  }\n }\n")),
    Case(
        "listen-duplicate",
        _conf(
            " server {\n  listen 127.0.0.1:8080;\n  listen 8080;\n  listen 127.0.0.1:8080;\n }\n"
        ),
    ),
    Case("listen-bogus-param", _conf(" server {\n  listen 80 bogus;\n }\n")),
    Case("listen-three-lines", _conf(" server {\n  listen\n   8080\n   bogus;\n }\n")),
    Case("listen-bad-port", _conf(" server {\n  listen 127.0.0.1:99999;\n }\n")),
    Case("listen-no-args", _conf(" server {\n  listen;\n }\n")),
    # --- logs
    Case(
        "log-format-duplicate",
        _conf(" log_format a '$status';\n log_format a '$request';\n"),
    ),
    Case("log-format-combined", _conf(" log_format combined '$status';\n")),
    Case("access-log-unknown-format", _conf(" access_log logs/a.log nosuchformat;\n")),
    Case("log-format-bad-escape", _conf(" log_format a escape=xml '$status';\n")),
    Case("access-log-off-extra", _conf(" access_log off combined;\n")),
    Case("access-log-bad-param", _conf(" access_log logs/a.log combined bogus=1;\n")),
    Case("add-header-bad-param", _conf(" add_header X y sometimes;\n")),
    Case("return-bad-code", _conf(" server {\n  return 1000;\n }\n")),
    Case("error-log-three-args", "error_log logs/e.log info x;\nevents {}\n"),
    Case("error-log-bad-level", "error_log logs/e.log loud;\nevents {}\n"),
]

GOOD: list[Case] = [
    Case("good-empty-http", "events {}\nhttp {}\n"),
    # nginx needs no http block; wsgate refuses one ("nothing to proxy").
    Case("good-no-http-block", "events {}\n"),
    Case("good-seed-article", SEED),
    Case("good-map-without-default", _map("  websocket upgrade;\n")),
    Case(
        "good-include-glob",
        _conf(" include conf.d/*.conf;\n include none.d/*.conf;\n"),
        files={
            "conf.d/a.conf": "upstream a { server 127.0.0.1:8001; }\n",
            "conf.d/b.conf": (
                "server {\n listen 127.0.0.1:8080;\n location / { proxy_pass http://a; }\n}\n"
            ),
        },
    ),
    Case(
        "good-times-and-sizes",
        _loc(
            PP + '   proxy_read_timeout "1m 30s";\n   proxy_send_timeout 1h30m;\n'
            "   proxy_connect_timeout 500ms;\n   proxy_buffer_size 8k;\n"
            "   client_max_body_size 1g;\n   send_timeout 0;\n"
        ),
    ),
    Case(
        "good-quoting-and-comments",
        _conf(
            " # comment; with { braces }\n"
            " log_format q '$remote_addr#x \"$request\"' ;\n"
            " access_log logs/q.log q;\n"
            " server {\n  listen 127.0.0.1:8080;  server_name a#b ${host}x '';\n"
            "  location / {\n" + PP + '   proxy_set_header "X-A" "a\\"b";\n  }\n }\n'
        ),
    ),
    Case("good-worker-processes-auto", "worker_processes auto;\nevents {}\nhttp {}\n"),
    Case(
        "good-listen-forms",
        _conf(
            " server {\n  listen localhost:8080;\n  listen [::1]:8080;\n"
            "  listen 8081 default_server;\n  location = {\n  }\n }\n"
        ),
    ),
    Case("good-map-hostnames", _conf(" map $host $b {\n  hostnames;\n  *.example.com 1;\n }\n")),
    # the target of a map is a changeable variable: a second map may set it again
    Case("good-map-same-target-twice", _conf(" map $http_a $b {\n }\n map $http_c $b {\n }\n")),
    Case("good-log-format-escape-only", _conf(" log_format a escape=json;\n")),
    Case(
        "good-upstream-params",
        _upstream(
            "server localhost:8001 weight=3 max_fails=0 fail_timeout=1h30m max_conns=5 down;"
        ),
    ),
]

GOOD.append(
    Case(
        "good-upstream-keepalive",
        _conf(
            " keepalive_timeout 30s 20;\n keepalive_requests 10;\n keepalive_time 2h;\n"
            " upstream u {\n  least_conn;\n  server 127.0.0.1:8001;\n  keepalive 16;\n"
            "  keepalive_timeout 5s;\n  keepalive_requests 100;\n  keepalive_time 10m;\n }\n"
            " server {\n  listen 127.0.0.1:8080;\n  keepalive_timeout 5;\n"
            "  location / {\n   proxy_pass http://u;\n   proxy_http_version 1.1;\n"
            '   proxy_set_header Connection "";\n   keepalive_requests 3;\n  }\n }\n'
        ),
    )
)

KNOWN_DIFFERENCES: list[Case] = [
    Case(
        "if-block",
        _loc(PP + "   if ($request_method = POST) {\n    return 405;\n   }\n"),
        refusal='"if" directive is not supported',
        line=7,
    ),
    Case(
        "named-location",
        _conf(" server {\n  location @x {\n  }\n }\n"),
        refusal='named locations are not supported by wsgate in "@x"',
        line=4,
    ),
    Case(
        "proxy-pass-with-variable",
        _loc("   proxy_pass http://$host;\n"),
        refusal='variables in the host part of "proxy_pass" are not supported by wsgate in '
        '"http://$host"',
        line=6,
    ),
    Case(
        "upstream-unix-socket",
        _upstream("server unix:/tmp/x.sock;"),
        refusal='unix domain sockets are not supported by wsgate in "unix:/tmp/x.sock"',
        line=4,
    ),
]


def _normalise(stderr: str, prefix: Path, *, nginx: bool) -> list[str]:
    """The comparable lines of one stderr (see the module docstring)."""
    out = []
    log_re = _NGINX_LOG if nginx else _WSGATE_LOG
    for raw in stderr.splitlines():
        line = raw.replace(str(prefix), "PREFIX")
        m = log_re.match(line)
        if m is not None:
            if m.group(1) == "emerg":
                out.append(f"[emerg] {m.group(2)}")
            continue
        m = _CLI.match(line)
        if m is not None:
            out.append(m.group(1))
            continue
        out.append(f"UNPARSED: {line}")
    return out


def _run_both(case: Case, tmp_path: Path) -> tuple[tuple[int, list[str]], tuple[int, list[str]]]:
    require_nginx()
    prefix = tmp_path / "nginx"
    for rel, text in case.files.items():
        path = prefix / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    rc, stderr = nginx_test(case.text, tmp_path)
    nginx = (rc, _normalise(stderr, prefix, nginx=True))
    conf = prefix / "nginx.conf"
    conf.write_text(case.text)  # without the prefix-local paths nginx_test added
    done = subprocess.run(
        wsgate_cmd("proxy", "-t", "-c", str(conf)),
        capture_output=True,
        timeout=WSGATE_TIMEOUT,
        check=False,
        cwd=tmp_path,
    )
    wsgate = (
        done.returncode,
        _normalise(done.stderr.decode(errors="replace"), prefix, nginx=False),
    )
    return nginx, wsgate


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_config_same_error(case: Case, tmp_path: Path) -> None:
    nginx, wsgate = _run_both(case, tmp_path)
    assert nginx[0] == 1, f"the case is not bad for nginx: {nginx}"
    # (exit status, [emerg] MESSAGE in FILE:LINE and the -t lines) must be identical.
    assert wsgate == nginx


@pytest.mark.parametrize("case", GOOD, ids=[c.id for c in GOOD])
def test_good_config_accepted(case: Case, tmp_path: Path) -> None:
    nginx, wsgate = _run_both(case, tmp_path)
    expected = (
        0,
        [
            "the configuration file PREFIX/nginx.conf syntax is ok",
            "configuration file PREFIX/nginx.conf test is successful",
        ],
    )
    assert nginx == expected
    assert wsgate == expected


@pytest.mark.parametrize("case", KNOWN_DIFFERENCES, ids=[c.id for c in KNOWN_DIFFERENCES])
def test_known_difference_refused(case: Case, tmp_path: Path) -> None:
    """nginx accepts; wsgate refuses with its own message, at the directive's line."""
    nginx, wsgate = _run_both(case, tmp_path)
    assert nginx[0] == 0, nginx
    rc, lines = wsgate
    assert rc == 1, wsgate
    emerg = [line for line in lines if line.startswith("[emerg] ")]
    assert len(emerg) == 1, wsgate
    assert case.refusal in emerg[0]
    assert emerg[0].endswith(f" in PREFIX/nginx.conf:{case.line}"), emerg
