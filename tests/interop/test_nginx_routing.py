"""Differential routing suite: one ``nginx.conf``, one request script, nginx and wsgate.

The configuration (:data:`CONF`) has thirteen ``server`` blocks on three ports (a specific
address, a wildcard address, IPv6), locations of every kind, ``proxy_pass`` with and
without a URI part (and with variables), ``return``, ``add_header``, ``proxy_redirect``,
``types``, maps, and seven access logs in five formats (every variable of section 5.1,
``escape=json``, ``escape=none``, ``combined``, ``access_log off`` and a location's own
log). Six :class:`RecordingBackend` peers stand behind it (three ``upstream{}`` groups and
three literal ``host:port`` targets), and every location sends ``X-Loc: NAME`` upstream,
so a request head tells which location and which peer served a request (nginx-semantics.md
sections 4, 5.1 and 5.2).

The script (:data:`CASES`) is run once through nginx and once through wsgate
(``proxy_in_process``), on the same ports one after the other, so the config text is the
same byte for byte. Every request has its own connection, which the proxy closes; the
access-log lines it adds are then collected (waiting for as many as nginx writes, since a
lingering close logs after the client saw the end). For each case:

* ``test_nginx_does_what_the_case_says``: nginx's status, its log lines and, for proxied
  cases, the ``X-Loc`` and peer; a case that no longer tests what it names fails;
* ``test_status_and_location``: equal status and ``Location``;
* ``test_upstream_heads``: equal request heads at every peer, byte for byte;
* ``test_response``: equal response heads and bodies after the ``Date`` value and the
  server token are replaced by placeholders;
* ``test_access_logs``: equal lines in every access log, after the times
  (``$time_local``, ``$time_iso8601``, ``$msec``, ``$request_time``,
  ``$upstream_response_time``) and ``$request_id`` are masked. Sizes (``$bytes_sent``,
  ``$body_bytes_sent``) and ``$remote_port`` are compared with what the client saw on its
  own connection (the server token differs in length). Where docs/behavior.md lists a
  known difference, nginx's line is first changed into what wsgate documents
  (:func:`documented`).
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import urllib.parse
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import uvloop

from tests.support.backend import RecordingBackend
from tests.support.nginx import require_nginx, run_nginx_async
from tests.support.ports import free_ports
from tests.support.wsgate import proxy_in_process
from wsgate import __version__

IO_TIMEOUT = 3.0  # seconds for one request (loopback: far more than enough)
LOG_TIMEOUT = 2.0  # seconds for a request's access-log lines to appear
RUN_TIMEOUT = 60.0  # seconds for the whole script through one proxy
WSGATE_TOKEN = f"wsgate/{__version__}"
BACKENDS = ("b1", "b2", "b3", "b4", "b5", "b6")
LOGS = ("vars.log", "maps.log", "js.log", "raw.log", "combined.log", "more.log", "loc.log")

CONF = r"""
worker_processes 1;
error_log logs/error.log info;
events {
    worker_connections 256;
}
http {
    log_format vars 'c=$http_x_case host=$host hh=$http_host ra=$remote_addr rp=$remote_port '
                    'sa=$server_addr sp=$server_port sn=$server_name sch=$scheme '
                    'req="$request" ru=$request_uri uri=$uri args=$args ia=$is_args '
                    'm=$request_method st=$status bbs=$body_bytes_sent bs=$bytes_sent '
                    'rl=$request_length ph=$proxy_host pxff=$proxy_add_x_forwarded_for '
                    'uad=$upstream_addr ust=$upstream_status urt=$upstream_response_time '
                    'rt=$request_time tl=[$time_local] ti=$time_iso8601 ms=$msec '
                    'cn=$connection cr=$connection_requests ru=$remote_user '
                    'ref="$http_referer" ua="$http_user_agent" xff="$http_x_forwarded_for" '
                    'arg=$arg_a argb=$arg_B ck=$cookie_sid';
    log_format maps 'c=$http_x_case mh=$m_host mu=$m_uri first=$first mk=$m_key '
                    'mv=$m_vol num=$num';
    log_format js escape=json '{"c":"$http_x_case","uri":"$uri","ua":"$http_user_agent",'
                              '"odd":"$http_x_odd","absent":"$http_x_absent"}';
    log_format raw escape=none 'c=$http_x_case uri=$uri ua=$http_user_agent '
                               'odd=$http_x_odd absent=$http_x_absent';
    access_log logs/vars.log vars;
    access_log logs/maps.log maps;
    access_log logs/js.log js;
    access_log logs/raw.log raw;
    log_format more 'c=$http_x_case rid=$request_id pipe=$pipe pp=$proxy_port '
                    'bra=$binary_remote_addr sct=$sent_http_content_type '
                    'scl=$sent_http_content_length sloc=$sent_http_location '
                    'sconn=$sent_http_connection ste=$sent_http_transfer_encoding '
                    'ssrv=$sent_http_server sxs=$sent_http_x_server '
                    'sxb=$sent_http_x_backend uxb=$upstream_http_x_backend '
                    'uct=$upstream_http_content_type ulen=$upstream_http_content_length '
                    'uloc=$upstream_http_location';
    access_log logs/combined.log;
    access_log logs/more.log more;
    types {
        text/html         html;
        application/json  json;
    }

    map $host $m_host {
        hostnames;
        default        other;
        example.com    exact;
        *.example.com  wild-head;
        www.example.*  wild-tail;
        .dot.test      dot;
        *.star.test    star;
    }
    map $uri $m_uri {
        default                          none;
        /map/exact                       exact;
        ~^/map/(?<first>[a-z]+)/(\d+)$   "$first-$2";
        ~*^/MAPCI/(.*)$                  ci-$1;
    }
    map $http_x_key $m_key {
        ''       empty;
        default  other-$http_x_key;
        abc      ABC;
    }
    map $uri $m_vol {
        volatile;
        default  vol-$uri;
    }

    upstream u1 { server 127.0.0.1:@b1@; }
    upstream u2 { server 127.0.0.1:@b2@; }
    upstream u3 { server 127.0.0.1:@b3@; }

    server {
        listen 127.0.0.1:@P1@;
        server_name first.test;
        location / { proxy_pass http://u1; proxy_set_header X-Loc first; }
    }
    server {
        listen 127.0.0.1:@P1@ default_server;
        server_name default.test alias.test;
        add_header X-Srv default;
        location / { proxy_pass http://u1; proxy_set_header X-Loc default; }
        location = /r10 { return 301 /target; }
        location = /text { return 200 "default $host $server_name\n"; }
        location /d1/ { proxy_pass http://u3/; proxy_set_header X-Loc d1; }
    }
    server {
        listen 127.0.0.1:@P1@;
        server_name example.com;
        add_header X-Server srv;

        location = /exact { proxy_pass http://u1; proxy_set_header X-Loc exact; }
        location /exact { proxy_pass http://u1; proxy_set_header X-Loc exact-prefix; }
        location / { proxy_pass http://u1; proxy_set_header X-Loc root; }
        location /images/ { proxy_pass http://u1; proxy_set_header X-Loc images; }
        location ^~ /static/ { proxy_pass http://u1; proxy_set_header X-Loc static; }
        location /static/deeper/ { proxy_pass http://u1; proxy_set_header X-Loc deeper; }
        location ~ \.(gif|jpg)$ { proxy_pass http://u1; proxy_set_header X-Loc gif; }
        location ~* \.PNG$ { proxy_pass http://u1; proxy_set_header X-Loc png; }
        location ~ /order/ { proxy_pass http://u1; proxy_set_header X-Loc order-1; }
        location ~ /order/b { proxy_pass http://u1; proxy_set_header X-Loc order-2; }
        location /nest/ {
            proxy_pass http://u1;
            proxy_set_header X-Loc nest;
            location /nest/inner/ { proxy_pass http://u1; proxy_set_header X-Loc inner; }
            location ~ \.txt$ { proxy_pass http://u1; proxy_set_header X-Loc nest-txt; }
            location ^~ /nest/nore/ { proxy_pass http://u1; proxy_set_header X-Loc nore; }
        }
        location ~ \.txt$ { proxy_pass http://u1; proxy_set_header X-Loc top-txt; }
        location ~ ^/rx/ {
            proxy_pass http://u1;
            proxy_set_header X-Loc rx;
            location ~ \.css$ { proxy_pass http://u1; proxy_set_header X-Loc rx-css; }
            location ~ /sub/ { proxy_pass http://u1; proxy_set_header X-Loc rx-sub; }
        }

        location /p3/ { proxy_pass http://u2; proxy_set_header X-Loc p3; }
        location /p1/ { proxy_pass http://u2/; proxy_set_header X-Loc p1; }
        location /p2/ { proxy_pass http://127.0.0.1:@b4@/new/; proxy_set_header X-Loc p2; }
        location /p4 { proxy_pass http://u2/x; proxy_set_header X-Loc p4; }
        location /p9/ { proxy_pass http://127.0.0.1:@b5@; proxy_set_header X-Loc p9; }
        location ~ ^/p8/(.*)$ {
            proxy_pass http://u2/r/$1$is_args$args;
            proxy_set_header X-Loc p8;
        }
        location ~ ^/p10/(?<rest>.*)$ {
            proxy_pass http://127.0.0.1:@b6@/ten/$rest;
            proxy_set_header X-Loc p10;
        }
        location "/with space/" { proxy_pass http://u2/; proxy_set_header X-Loc space; }
        location = /exactpp { proxy_pass http://u2/ep; proxy_set_header X-Loc exactpp; }
        location /p5 { proxy_pass http://u2; proxy_set_header X-Loc p5; }
        location /p5/ { proxy_pass http://u2; proxy_set_header X-Loc p5-slash; }
        location /p6/ {
            proxy_pass http://u2/six/;
            proxy_set_header X-Loc p6;
            add_header X-P6 yes;
        }
        location = /p7/ { proxy_pass http://u2; proxy_set_header X-Loc p7; }

        location = /ret/200 { return 200 "ok $host $request_uri\n"; }
        location = /ret/200empty { return 200; }
        location = /ret/204 { return 204; }
        location = /ret/404 { return 404; }
        location = /ret/500 { return 500; }
        location = /ret/403text { return 403 "denied\n"; }
        location = /ret/418 { return 418 teapot; }
        location = /ret/301 { return 301 /moved/here; }
        location = /ret/302abs { return 302 http://other.test/x; }
        location = /ret/url { return https://$host$request_uri; }
        location = /ret/scheme { return 301 $scheme://$host$request_uri; }
        location = /ret/307 { return 307 /tmp?q=1; }
        location = /ret/444 { return 444; }
        location = /ret/page.html { return 200 "<p>$uri</p>"; }
        location /ret/t/ {
            default_type application/x-default;
            types { text/x-custom cst CST2; }
            location = /ret/t/a.cst { return 200 a; }
            location = /ret/t/a.json { return 200 b; }
            location = /ret/t/a.cst2 { return 200 c; }
        }
        location = /ret/data.json { return 200 "{}"; }
        location = /ret/a.gif { return 200 "not in types"; }

        location /ah/ {
            proxy_pass http://u3/;
            proxy_set_header X-Loc ah;
            add_header X-Loc-Header a;
            add_header X-Always b always;
            add_header X-Empty $http_x_absent;
        }
        location /ah-inherit/ { proxy_pass http://u3/; proxy_set_header X-Loc ah-inherit; }

        location /rd1/ { proxy_pass http://u3/; proxy_set_header X-Loc rd1; }
        location /rd2/ { proxy_pass http://u3; proxy_set_header X-Loc rd2; }
        location /rd3/ {
            proxy_pass http://u3/;
            proxy_set_header X-Loc rd3;
            proxy_redirect off;
        }
        location /rd4/ {
            proxy_pass http://u3/;
            proxy_set_header X-Loc rd4;
            proxy_redirect http://u3/ /four/;
            proxy_redirect ~^http://(other)\.test/(.*)$ /$1/$2;
        }

        location /outer/ {
            proxy_pass http://u3/o/;
            proxy_set_header X-Loc outer;
            location /outer/inner/ { proxy_pass http://u3/i/; proxy_set_header X-Loc inner2; }
        }
        location /dead/ {
            proxy_pass http://127.0.0.1:@dead@;
            proxy_set_header X-Loc dead;
            add_header X-Dead always always;
        }
        location /quiet/ { proxy_pass http://u1; proxy_set_header X-Loc quiet; access_log off; }
        location /onelog/ {
            proxy_pass http://u1;
            proxy_set_header X-Loc onelog;
            access_log logs/loc.log vars;
        }
        location /vars/ { proxy_pass http://u1/; proxy_set_header X-Loc vars; }
        location /map/ {
            proxy_pass http://u1;
            proxy_set_header X-Loc map;
            proxy_set_header X-Key $m_key;
            proxy_set_header X-Host-Map $m_host;
        }
    }
    server {
        listen 127.0.0.1:@P1@;
        server_name *.example.com;
        location / { proxy_pass http://u3; proxy_set_header X-Loc wild-head; }
    }
    server {
        listen 127.0.0.1:@P1@;
        server_name www.example.*;
        location / { proxy_pass http://u3; proxy_set_header X-Loc wild-tail; }
    }
    server {
        listen 127.0.0.1:@P1@;
        server_name .dot.test;
        location / { proxy_pass http://u3; proxy_set_header X-Loc dot; }
    }
    server {
        listen 127.0.0.1:@P1@;
        server_name ~^re(?<num>\d+)\.test$ ~^(www\.)?regex2\.test$;
        location / {
            proxy_pass http://u3;
            proxy_set_header X-Loc regex-1;
            proxy_set_header X-Cap "$1 $num";
        }
        location ~ \.txt$ { return 200 "server captures: $1 $num\n"; }
        location ~ ^/(?<word>[a-z]+)\.cap$ { return 200 "location captures: $1 $num $word\n"; }
    }
    server {
        listen 127.0.0.1:@P1@;
        server_name ~^re;
        location / { proxy_pass http://u3; proxy_set_header X-Loc regex-2; }
    }
    server {
        listen 127.0.0.1:@P1@;
        server_name ret.test;
        add_header X-Ret r;
        return 200 "server-level $host $uri\n";
        location / { proxy_pass http://u1; proxy_set_header X-Loc never; }
    }
    server {
        listen 127.0.0.1:@P1@;
        server_name only.test;
        location /only/ { proxy_pass http://u1; proxy_set_header X-Loc only; }
    }
    server {
        listen [::1]:@P3@;
        server_name v6.test;
        location / { proxy_pass http://u2; proxy_set_header X-Loc v6; }
        location = /r { return 301 /t; }
    }
    server {
        listen @P2@;
        server_name wild.test;
        location / { proxy_pass http://u2; proxy_set_header X-Loc any-addr; }
    }
    server {
        listen 127.0.0.1:@P2@;
        server_name specific.test;
        location / { proxy_pass http://u2; proxy_set_header X-Loc specific-addr; }
    }
}
"""


def conf_text(ports: dict[str, int]) -> str:
    text = CONF
    for name, port in ports.items():
        text = text.replace(f"@{name}@", str(port))
    assert "@" not in text, "a port placeholder was not replaced"
    return text


# --- the script -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One request on its own connection, and what nginx answers (checked)."""

    id: str
    lines: tuple[str, ...]  # request line, then header lines
    status: int
    loc: str | None = None  # X-Loc the peer must receive; None: nothing goes upstream
    backend: str = ""  # the peer that must receive it (when loc is set)
    port: Literal["P1", "P2", "P3"] = "P1"
    addr: str = "127.0.0.1"
    logged: Literal["all", "none", "loc"] = "all"  # the http-level logs, none, loc.log
    then: tuple[str, ...] = ()  # a second request pipelined behind the first one

    def expected_lines(self, log: str) -> int:
        """Lines nginx writes to ``log`` for this request."""
        if self.logged == "none":
            return 0
        return int((log == "loc.log") == (self.logged == "loc")) * (2 if self.then else 1)

    def data(self) -> bytes:
        if self.then:
            return _head(*self.lines, f"X-Case: {self.id}") + _head(
                *self.then, f"X-Case: {self.id}", "Connection: close"
            )
        lines = [*self.lines, f"X-Case: {self.id}"]
        if self.lines[0].endswith("HTTP/1.1"):
            lines.append("Connection: close")
        return _head(*lines)


def _head(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode("latin-1") + b"\r\n"


def get(
    case_id: str,
    target: str,
    status: int = 200,
    loc: str | None = None,
    backend: str = "b1",
    *,
    host: str | None = "example.com",
    headers: tuple[str, ...] = (),
    version: str = "1.1",
    port: Literal["P1", "P2", "P3"] = "P1",
    addr: str = "127.0.0.1",
    method: str = "GET",
    logged: Literal["all", "none", "loc"] = "all",
) -> Case:
    """``METHOD target HTTP/version`` with ``Host: host`` (none when ``host`` is None)."""
    lines = [f"{method} {target} HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines.extend(headers)
    return Case(case_id, tuple(lines), status, loc, backend if loc else "", port, addr, logged)


CASES: tuple[Case, ...] = (
    # --- server selection (section 4.1) ---
    get("srv-exact", "/", loc="root"),
    get("srv-exact-case-port-dot", "/", loc="root", host="EXAMPLE.com.:8080"),
    get("srv-first-server", "/", loc="first", host="first.test"),
    get("srv-unknown-host-default", "/", loc="default", host="nobody.test"),
    get("srv-default-second-name", "/", loc="default", host="alias.test"),
    get("srv-wildcard-head", "/", loc="wild-head", backend="b3", host="a.example.com"),
    get("srv-wildcard-head-deep", "/", loc="wild-head", backend="b3", host="a.b.example.com"),
    get("srv-wildcard-tail", "/", loc="wild-tail", backend="b3", host="www.example.org"),
    get("srv-head-beats-tail", "/", loc="wild-head", backend="b3", host="www.example.com"),
    get("srv-dot-bare", "/", loc="dot", backend="b3", host="dot.test"),
    get("srv-dot-sub", "/", loc="dot", backend="b3", host="x.dot.test"),
    get("srv-regex-named-capture", "/", loc="regex-1", backend="b3", host="re42.test"),
    get("srv-regex-captures-prefix-location", "/x.y", loc="regex-1", backend="b3", host="re6.test"),
    get("srv-regex-captures-reset-by-regex", "/a.txt", host="re7.test"),
    get("srv-regex-captures-replaced", "/abc.cap", host="re8.test"),
    get("srv-regex-second-name", "/", loc="regex-1", backend="b3", host="www.regex2.test"),
    get("srv-regex-order", "/", loc="regex-2", backend="b3", host="rex.test"),
    get("srv-http10-no-host", "/vars/h10", loc="default", host=None, version="1.0"),
    get("srv-absolute-form", "http://Example.COM/abs?x", loc="root", host="first.test"),
    get("srv-listen-addr", "/", loc="specific-addr", backend="b2", host="wild.test", port="P2"),
    get(
        "srv-listen-wildcard",
        "/",
        loc="any-addr",
        backend="b2",
        host="specific.test",
        port="P2",
        addr="127.0.0.2",
    ),
    get("srv-absolute-form-port", "http://example.com:8080/x", loc="root", host="first.test"),
    get("srv-ipv6-listen", "/v6?q", loc="v6", backend="b2", host="v6.test", port="P3", addr="::1"),
    get(
        "srv-ipv6-http10",
        "/v6",
        loc="v6",
        backend="b2",
        host=None,
        version="1.0",
        port="P3",
        addr="::1",
    ),
    get("srv-ipv6-redirect-local-addr", "/r", 301, host=None, version="1.0", port="P3", addr="::1"),
    get("srv-no-location-matches", "/elsewhere", 404, host="only.test"),
    # --- location selection (section 4.2) ---
    get("loc-exact", "/exact", loc="exact"),
    get("loc-exact-slash-is-prefix", "/exact/", loc="exact-prefix"),
    get("loc-exactx-is-prefix", "/exactx", loc="exact-prefix"),
    get("loc-longest-prefix", "/images/a", loc="images"),
    get("loc-regex-beats-prefix", "/images/a.gif", loc="gif"),
    get("loc-noregex-prefix", "/static/a.gif", loc="static"),
    get("loc-longer-plain-under-noregex", "/static/deeper/a.gif", loc="gif"),
    get("loc-regex-case-insensitive", "/a.png", loc="png"),
    get("loc-regex-case-insensitive-upper", "/a.PNG", loc="png"),
    get("loc-regex-case-sensitive-miss", "/A.GIF", loc="root"),
    get("loc-regex-first-in-order", "/order/b", loc="order-1"),
    get("loc-nested-prefix", "/nest/inner/x", loc="inner"),
    get("loc-nested-regex", "/nest/a.txt", loc="nest-txt"),
    get("loc-nested-noregex-then-outer-regex", "/nest/nore/a.txt", loc="top-txt"),
    get("loc-nested-noregex", "/nest/nore/a", loc="nore"),
    get("loc-nested-plain", "/nest/x", loc="nest"),
    get("loc-regex-nested-regex", "/rx/a.css", loc="rx-css"),
    get("loc-regex-nested-second", "/rx/sub/a", loc="rx-sub"),
    get("loc-regex-nested-first-in-order", "/rx/sub/a.css", loc="rx-css"),
    get("loc-regex-no-nested", "/rx/a", loc="rx"),
    get("loc-decoded-uri", "/%69mages/%61.gif", loc="gif"),
    get("loc-dot-segments", "/static/../images/x.jpg", loc="gif"),
    get("loc-escaped-dot-segments", "/static/%2e%2e/images/x.jpg", loc="gif"),
    get("loc-above-root-400", "/../x", 400),
    # --- proxy_pass and the URI sent upstream (section 4.4) ---
    get("uri-no-part-raw", "/p3/a%2Fb/./c?z", loc="p3", backend="b2"),
    get("uri-no-part-slashes", "/p3//x/../y", loc="p3", backend="b2"),
    get("uri-slash-part", "/p1/a/b?x=1", loc="p1", backend="b2"),
    get("uri-slash-part-normalized", "/p1/a%20b/../c?y", loc="p1", backend="b2"),
    get("uri-slash-part-2f", "/p1/a%2Fb?k=%2F", loc="p1", backend="b2"),
    get("uri-slash-part-exact-name", "/p1/", loc="p1", backend="b2"),
    get("uri-plus-and-empty-args", "/p1/a+b?", loc="p1", backend="b2"),
    get("uri-new-part-merged", "/p2/a//b?q", loc="p2", backend="b4"),
    get("uri-string-swap-slash", "/p4/zz", loc="p4", backend="b2"),
    get("uri-string-swap-no-slash", "/p4zz", loc="p4", backend="b2"),
    get("uri-string-swap-name-only", "/p4?a&a=2&ba=3", loc="p4", backend="b2"),
    get("uri-exact-location-part", "/exactpp?q=%20", loc="exactpp", backend="b2"),
    get("uri-location-name-with-space", "/with%20space/x%20y", loc="space", backend="b2"),
    get("uri-literal-no-part", "/p9/a%20b?c=d", loc="p9", backend="b5"),
    get("uri-slash-part-raw-utf8", "/p1/caf\xc3\xa9/x", loc="p1", backend="b2"),
    get("uri-slash-part-escaped-utf8", "/p1/%E2%82%AC%20x?e=%E2", loc="p1", backend="b2"),
    get("uri-regex-capture", "/p8/foo%20bar?k=v", loc="p8", backend="b2"),
    get("uri-regex-capture-utf8", "/p8/%C3%A9t%C3%A9", loc="p8", backend="b2"),
    get("uri-regex-capture-no-args", "/p8/a/b", loc="p8", backend="b2"),
    get("uri-regex-named-capture", "/p10/x/y?z", loc="p10", backend="b6"),
    # --- automatic 301 (section 4.3) ---
    get("redirect-auto-301", "/p1", 301),
    get("redirect-auto-301-args", "/p6?x=1&y", 301),
    get("redirect-auto-not-over-prefix", "/p5", loc="p5", backend="b2"),
    get("redirect-auto-exact-location", "/p7", 301),
    get("redirect-auto-escaped-name", "/with%20space?a=%20", 301),
    get("redirect-auto-http10-no-host", "/d1", 301, host=None, version="1.0"),
    get("redirect-return-http10-no-host", "/r10", 301, host=None, version="1.0"),
    # --- return (rewrite module) ---
    get("return-200-text", "/ret/200?a=1"),
    get("return-200-empty", "/ret/200empty"),
    get("return-204", "/ret/204", 204),
    get("return-404", "/ret/404", 404),
    get("return-500", "/ret/500", 500),
    get("return-403-text", "/ret/403text", 403),
    get("return-418-text", "/ret/418", 418),
    get("return-301-relative", "/ret/301", 301),
    get("return-302-absolute", "/ret/302abs", 302),
    get("return-url-only", "/ret/url?q=1", 302),
    get("return-scheme-host-uri", "/ret/scheme?q=%20", 301, host="Example.com:81"),
    get("return-307", "/ret/307", 307),
    get("return-default-server-text", "/text", host="unknown.test"),
    get("return-444-closes", "/ret/444", 0),  # no response at all; the log says 444
    get("return-type-by-extension", "/ret/page.html"),
    get("return-type-http-types", "/ret/data.json"),
    get("return-type-not-in-types", "/ret/a.gif"),
    get("return-type-location-types", "/ret/t/a.cst"),
    get("return-type-upper-case-extension", "/ret/t/a.cst2"),
    get("return-type-default-type", "/ret/t/a.json"),
    get("return-server-level", "/x/y", host="ret.test"),
    # --- add_header ---
    get("add-header-200", "/ah/x", loc="ah", backend="b3"),
    get("add-header-404-always-only", "/ah/status/404", 404, "ah", "b3"),
    get("add-header-inherited", "/ah-inherit/x", loc="ah-inherit", backend="b3"),
    get("add-header-inherited-404", "/ah-inherit/status/404", 404, "ah-inherit", "b3"),
    get("add-header-on-301", "/p6", 301),
    # --- proxy_redirect (section 4.4, last bullet) ---
    get("redirect-uri-part", "/rd1/go?location=http%3A%2F%2Fu3%2Ffoo", 302, "rd1", "b3"),
    get("redirect-no-uri-part", "/rd2/go?location=http%3A%2F%2Fu3%2Frd2%2Fb", 302, "rd2", "b3"),
    get("redirect-no-match", "/rd2/go?location=http%3A%2F%2Fother%2Fx", 302, "rd2", "b3"),
    get("redirect-relative-kept", "/rd1/go?location=%2Frel%2Fpath", 302, "rd1", "b3"),
    get("redirect-off", "/rd3/go?location=http%3A%2F%2Fu3%2Ffoo", 302, "rd3", "b3"),
    get("redirect-explicit", "/rd4/go?location=http%3A%2F%2Fu3%2Fbar", 302, "rd4", "b3"),
    get("redirect-regex", "/rd4/go?location=http%3A%2F%2Fother.test%2Fy", 302, "rd4", "b3"),
    get("redirect-case-sensitive", "/rd1/go?location=HTTP%3A%2F%2Fu3%2Fx", 302, "rd1", "b3"),
    get(
        "redirect-nested-inherits-parent-rule",
        "/outer/inner/go?location=http%3A%2F%2Fu3%2Fo%2Fx",
        302,
        "inner2",
        "b3",
    ),
    get(
        "redirect-nested-own-url-kept",
        "/outer/inner/go?location=http%3A%2F%2Fu3%2Fi%2Fx",
        302,
        "inner2",
        "b3",
    ),
    get("redirect-refresh", "/rd1/go?refresh=1&location=http%3A%2F%2Fu3%2Fr", 302, "rd1", "b3"),
    get(
        "redirect-http10-no-host",
        "/d1/go?location=http%3A%2F%2Fu3%2Ffoo",
        302,
        "d1",
        "b3",
        host=None,
        version="1.0",
    ),
    # --- variables and logs (sections 5.1, 5.2) ---
    get(
        "vars-all",
        "/vars/a%20b/?a=1&B=2&a=3",
        loc="vars",
        host="Example.com:8080",
        headers=(
            "User-Agent: ua/1.0",
            "Referer: http://ref.test/",
            "Cookie: x=1; sid=abc",
            "X-Forwarded-For: 10.0.0.1",
            "X-Forwarded-For: 10.0.0.2",
        ),
    ),
    get(
        "vars-escapes",
        "/vars/esc",
        loc="vars",
        headers=('User-Agent: q"uote\\back\tslash caf\xc3\xa9', 'X-Odd: {"k": [1]}'),
    ),
    get("vars-upstream-404", "/vars/status/404", 404, "vars"),
    get("vars-dead-peer-502", "/dead/x?y", 502),
    get("vars-head-return", "/ret/200", method="HEAD"),
    get(
        "vars-cookies-args-headers",
        "/vars/c?A=1&b=&c&a=2",
        loc="vars",
        headers=(
            "Cookie: SID=upper; sid=lower",
            "Cookie: other=1",
            "X-Forwarded-For:",
            "User-Agent: one",
            "User-Agent: two",
        ),
    ),
    Case(
        "log-pipelined",
        ("GET /ret/200?first HTTP/1.1", "Host: example.com"),
        200,
        then=("GET /ret/200?second HTTP/1.1", "Host: example.com"),
    ),
    get("log-off", "/quiet/x", loc="quiet", logged="none"),
    get("log-location-only", "/onelog/x", loc="onelog", logged="loc"),
    # --- maps (section 1.1) ---
    get("map-exact", "/map/exact", loc="map"),
    get("map-regex-captures", "/map/abc/42", loc="map"),
    get("map-regex-case-insensitive", "/MapCi/Zz", loc="root", headers=("X-Key: abc",)),
    get("map-empty-key", "/map/none", loc="map", headers=("X-Key:",)),
    get("map-default-with-variable", "/map/none", loc="map", headers=("X-Key: zz",)),
    get("map-hostnames-wild-head", "/", loc="wild-head", backend="b3", host="Www.Example.com"),
    get("map-hostnames-dot", "/", loc="dot", backend="b3", host="dot.test."),
    get("map-hostnames-star-not-bare", "/", loc="default", host="star.test"),
    get("map-hostnames-star", "/", loc="default", host="a.star.test"),
)


# --- running the script ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """What one proxy did for one case."""

    client_port: int
    received: bytes  # everything the client read until the proxy closed
    heads: dict[str, list[bytes]]  # peer name -> request heads it received
    logs: dict[str, list[str]]  # log file -> lines written for this request

    @property
    def head(self) -> bytes:
        end = self.received.find(b"\r\n\r\n")
        return self.received[: end + 4] if end >= 0 else self.received

    @property
    def body(self) -> bytes:
        return self.received[len(self.head) :]

    @property
    def responses(self) -> list[tuple[bytes, bytes]]:
        """(head, body) of each response read, framed by Content-Length (else to EOF)."""
        out, rest = [], self.received
        while rest:
            end = rest.find(b"\r\n\r\n")
            if end < 0:
                out.append((rest, b""))
                break
            head, rest = rest[: end + 4], rest[end + 4 :]
            length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head)
            size = int(length[1]) if length and not head.startswith(b"HTTP/1.1 304") else None
            body = rest if size is None else rest[:size]
            rest = rest[len(body) :]
            out.append((head, body))
        return out

    @property
    def status(self) -> int:
        parts = self.received.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

    def header(self, name: str) -> list[str]:
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        want = name.lower()
        return [v.strip() for n, _, v in (x.partition(":") for x in lines) if n.lower() == want]


def _read_lines(path: Path) -> list[str]:
    return path.read_text(errors="surrogateescape").splitlines() if path.exists() else []


async def _request(case: Case, ports: dict[str, int]) -> tuple[int, bytes]:
    async with asyncio.timeout(IO_TIMEOUT):
        reader, writer = await asyncio.open_connection(case.addr, ports[case.port])
        try:
            client_port = writer.get_extra_info("sockname")[1]
            writer.write(case.data())
            await writer.drain()
            received = await reader.read(-1)  # until the proxy closes
        finally:
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()
    return client_port, received


async def run_script(
    kind: Literal["nginx", "wsgate"], tmp: Path, ports: dict[str, int]
) -> dict[str, Answer]:
    conf = conf_text(ports)
    answers: dict[str, Answer] = {}
    async with AsyncExitStack() as stack:
        backends = {}
        for name in BACKENDS:
            backends[name] = await stack.enter_async_context(RecordingBackend(name, ports[name]))
        if kind == "nginx":
            run = await stack.enter_async_context(
                run_nginx_async(conf, tmp, [ports["P1"], ports["P2"]])
            )
            logs = run.prefix / "logs"
        else:
            tmp.mkdir()
            await stack.enter_async_context(proxy_in_process(conf, tmp))
            logs = tmp / "logs"
            # The same probes run_nginx makes, so connection numbers start alike.
            for port in (ports["P1"], ports["P2"]):
                with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT):
                    pass
        seen = {name: 0 for name in LOGS}
        for case in CASES:
            before = {name: len(b.heads) for name, b in backends.items()}
            client_port, received = await _request(case, ports)
            heads = {
                name: list(b.heads[before[name] :])
                for name, b in backends.items()
                if len(b.heads) > before[name]
            }
            # A line can follow the close (nginx's lingering close logs when it ends), so
            # wait for the lines nginx writes; a proxy writing fewer shows up after
            # LOG_TIMEOUT as a difference, not as a hang.
            lines: dict[str, list[str]] = {}
            deadline = asyncio.get_running_loop().time() + LOG_TIMEOUT
            for name in LOGS:
                want = seen[name] + case.expected_lines(name)
                all_lines = _read_lines(logs / name)
                while len(all_lines) < want and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.005)  # polling a file, bounded by the deadline
                    all_lines = _read_lines(logs / name)
                lines[name] = all_lines[seen[name] :]
                seen[name] = len(all_lines)
            answers[case.id] = Answer(client_port, received, heads, lines)
    return answers


@dataclass(frozen=True, slots=True)
class Runs:
    ports: dict[str, int]
    nginx_token: str
    nginx: dict[str, Answer]
    wsgate: dict[str, Answer]


def nginx_server_token(binary: str) -> str:
    """``nginx/1.22.1`` from ``nginx -v``."""
    done = subprocess.run([binary, "-v"], capture_output=True, timeout=10, check=False)
    match = re.search(r"nginx version: (nginx/\S+)", done.stderr.decode(errors="replace"))
    assert match is not None, done.stderr
    return match[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The whole script through nginx, then through wsgate, on the same ports."""
    token = nginx_server_token(require_nginx())
    tmp = tmp_path_factory.mktemp("routing")
    names = ("P1", "P2", "P3", "dead", *BACKENDS)
    ports = dict(zip(names, free_ports(len(names)), strict=True))

    async def both() -> Runs:
        async with asyncio.timeout(RUN_TIMEOUT):
            nginx = await run_script("nginx", tmp / "ng", ports)
        async with asyncio.timeout(RUN_TIMEOUT):
            wsgate = await run_script("wsgate", tmp / "ws", ports)
        return Runs(ports, token, nginx, wsgate)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(both())


# --- normalization --------------------------------------------------------------------

_IMF_FIXDATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
_TIMES = (
    (re.compile(r"\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]"), "[TIME]"),
    (re.compile(r"\bti=\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}"), "ti=TIME"),
    (re.compile(r"\bms=\d+\.\d{3}\b"), "ms=TIME"),
    (re.compile(r"\brt=\d+\.\d{3}\b"), "rt=TIME"),
    (re.compile(r"\burt=\d+\.\d{3}(?:, \d+\.\d{3})*"), "urt=TIME"),
    (re.compile(r"\brid=[0-9a-f]{32} "), "rid=RANDOM "),
)
_COMBINED_SIZE = re.compile(r'" (\d{3}) (\d+) "')


def normalize_response(received: bytes, token: str) -> str:
    """The responses as text, ``Date`` values and server token replaced."""
    text = received.decode("latin-1")
    text = _IMF_FIXDATE.sub("DATE", text)
    return text.replace(f"Server: {token}\r\n", "Server: TOKEN\r\n").replace(
        f"<center>{token}</center>", "<center>TOKEN</center>"
    )


def normalize_line(line: str, answer: Answer, index: int = 0) -> str:
    """Times masked; sizes and the client port compared with what the client saw (the
    ``index``-th response on the connection)."""
    for pattern, repl in _TIMES:
        line = pattern.sub(repl, line)
    responses = answer.responses
    head, body = responses[index] if index < len(responses) else (b"", b"")
    line = line.replace(f"rp={answer.client_port} ", "rp=PORT ")
    line = line.replace(f" bbs={len(body)} ", " bbs=SIZE ")
    line = line.replace(f" bs={len(head) + len(body)} ", " bs=SIZE ")
    combined = _COMBINED_SIZE.search(line)
    if combined is not None and int(combined[2]) == len(body):
        line = f"{line[: combined.start(2)]}SIZE{line[combined.end(2) :]}"
    return line


def documented(case: Case, log: str, line: str) -> str:
    """nginx's ``line`` changed where docs/behavior.md ("Known differences") says wsgate
    prints something else.

    ``$upstream_http_location`` once ``proxy_redirect`` rewrote the header: nginx rewrote
    the peer's header in place, so the variable shows the new text over the old length
    (``/rd1/foo\\x00/foo``); wsgate shows what the peer sent.
    """
    target = case.lines[0].split(" ")[1]
    peer = urllib.parse.parse_qs(target.partition("?")[2]).get("location")
    if log == "more.log" and peer is not None:
        line = re.sub(r"uloc=.*$", f"uloc={peer[0]}", line)
    return line


def explain(what: str, nginx: object, wsgate: object) -> str:
    return f"{what} differ\n  nginx: {nginx!r}\n wsgate: {wsgate!r}"


# --- tests ----------------------------------------------------------------------------

CASE_IDS = [c.id for c in CASES]
pytestmark = pytest.mark.parametrize("case", CASES, ids=CASE_IDS)


def test_nginx_does_what_the_case_says(runs: Runs, case: Case) -> None:
    ng = runs.nginx[case.id]
    assert ng.status == case.status, ng.received
    assert {k: len(v) for k, v in ng.logs.items()} == {k: case.expected_lines(k) for k in LOGS}
    if case.loc is None:
        assert ng.heads == {}, ng.heads
    else:
        assert list(ng.heads) == [case.backend], ng.heads
        assert f"\r\nX-Loc: {case.loc}\r\n".encode() in ng.heads[case.backend][0]


def test_status_and_location(runs: Runs, case: Case) -> None:
    ng, ws = runs.nginx[case.id], runs.wsgate[case.id]
    assert ws.status == ng.status, explain("statuses", ng.received, ws.received)
    assert ws.header("location") == ng.header("location")


def test_upstream_heads(runs: Runs, case: Case) -> None:
    ng, ws = runs.nginx[case.id], runs.wsgate[case.id]
    assert ws.heads == ng.heads, explain("upstream heads", ng.heads, ws.heads)


def test_response(runs: Runs, case: Case) -> None:
    ng, ws = runs.nginx[case.id], runs.wsgate[case.id]
    expected = normalize_response(ng.received, runs.nginx_token)
    got = normalize_response(ws.received, WSGATE_TOKEN)
    assert got == expected


def test_access_logs(runs: Runs, case: Case) -> None:
    ng, ws = runs.nginx[case.id], runs.wsgate[case.id]
    for name in LOGS:
        expected = [
            normalize_line(documented(case, name, line), ng, i)
            for i, line in enumerate(ng.logs[name])
        ]
        got = [normalize_line(line, ws, i) for i, line in enumerate(ws.logs[name])]
        assert got == expected, name
