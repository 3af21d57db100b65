"""Variables and maps evaluated per request (§1.1, §5.1), from tables; no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsgate.conf.build import load
from wsgate.conf.model import MainConf
from wsgate.http.parser import parse_request_head
from wsgate.routing import parse_target
from wsgate.vars.compile import Capture, Var, VariableSyntaxError, compile_value
from wsgate.vars.registry import (
    TUNNEL_LATE,
    ConnInfo,
    RequestVars,
    escape_log_value,
    reads_late,
)

CONF = """
events {}
http {
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  map $http_host $by_host {
    hostnames;
    default d;
    example.com exact;
    *.example.com wild;
    ~^api(\\d+)\\. api$1;
  }
  map $arg_x $no_default { a 1; }
  map $status $late_direct { default $bytes_sent; }
  map $http_x $late_inner { default $late_direct; }
  map $request_method $early { ~^(G)ET $1-$http_host; default other; }
  server { listen 127.0.0.1:8080; server_name first.test second.test; }
}
"""


@pytest.fixture(scope="module")
def conf(tmp_path_factory: pytest.TempPathFactory) -> MainConf:
    path = tmp_path_factory.mktemp("v") / "n.conf"
    path.write_text(CONF)
    return load(str(path))


def rv_for(conf: MainConf, raw: bytes) -> RequestVars:
    assert conf.http is not None
    head = parse_request_head(raw)
    target = parse_target(head.target)
    assert target is not None
    uri, args, _ = target
    conn = ConnInfo("127.0.0.1", 40000, "127.0.0.1", 8080, number=7, requests=1)
    host = head.header("host") or ""
    return RequestVars(
        head,
        conn,
        conf.http.servers[0],
        conf.http.maps,
        host=host.split(":")[0].lower(),
        uri=uri,
        args=args,
        start=0.0,
    )


def test_compile() -> None:
    cv = compile_value("$host:${server_port}x$1$Http_Upgrade")
    assert cv.parts == (
        Var("host"),
        ":",
        Var("server_port"),
        "x",
        Capture(1),
        Var("http_upgrade"),
    )
    assert compile_value("plain").static == "plain"
    with pytest.raises(VariableSyntaxError):
        compile_value("${oops")
    with pytest.raises(VariableSyntaxError):
        compile_value("a$ b")


@pytest.mark.parametrize(
    ("upgrade", "expected"),
    [(None, "close"), ("websocket", "upgrade"), ("WebSocket", "upgrade"), ("h2c", "upgrade")],
)
def test_seed_map(conf: MainConf, upgrade: str | None, expected: str) -> None:
    extra = f"Upgrade: {upgrade}\r\n" if upgrade else ""
    rv = rv_for(conf, f"GET / HTTP/1.1\r\nHost: a\r\n{extra}\r\n".encode())
    assert rv.get("connection_upgrade") == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("example.com", "exact"),
        ("EXAMPLE.com.", "exact"),
        ("a.example.com", "wild"),
        ("api7.other", "api7"),
        ("nothing", "d"),
    ],
)
def test_map_lookup_order(conf: MainConf, host: str, expected: str) -> None:
    rv = rv_for(conf, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert rv.get("by_host") == expected


def test_map_without_default_is_empty(conf: MainConf) -> None:
    rv = rv_for(conf, b"GET /?x=b HTTP/1.1\r\nHost: a\r\n\r\n")
    assert rv.get("no_default") == ""


def test_core_variables(conf: MainConf) -> None:
    rv = rv_for(
        conf,
        b"GET /p/a%20b?q=1&Arg=v HTTP/1.1\r\nHost: Ex.test:81\r\n"
        b"X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n"
        b"Cookie: a=1; sid=xyz\r\nUser-Agent: t\r\n\r\n",
    )
    expected = {
        "remote_addr": "127.0.0.1",
        "remote_port": "40000",
        "server_port": "8080",
        "server_name": "first.test",
        "request": "GET /p/a%20b?q=1&Arg=v HTTP/1.1",
        "request_uri": "/p/a%20b?q=1&Arg=v",
        "uri": "/p/a b",
        "args": "q=1&Arg=v",
        "is_args": "?",
        "arg_arg": "v",
        "cookie_sid": "xyz",
        "http_host": "Ex.test:81",
        "http_user_agent": "t",
        "http_x_forwarded_for": "1.2.3.4, 5.6.7.8",
        "proxy_add_x_forwarded_for": "1.2.3.4, 5.6.7.8, 127.0.0.1",
        "connection": "7",
        "scheme": "http",
        "request_method": "GET",
    }
    assert {name: rv.get(name) for name in expected} == expected
    assert rv.get("http_referer") is None
    assert rv.get("arg_missing") is None


def test_proxy_add_x_forwarded_for_without_header(conf: MainConf) -> None:
    rv = rv_for(conf, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert rv.get("proxy_add_x_forwarded_for") == "127.0.0.1"
    rv = rv_for(conf, b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For:\r\n\r\n")
    assert rv.get("proxy_add_x_forwarded_for") == ", 127.0.0.1"


def test_upstream_lists_and_log_escaping(conf: MainConf) -> None:
    rv = rv_for(conf, b'GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: q"\\\xc3\xa9\r\n\r\n')
    rv.upstream_addr = ["127.0.0.1:1", "127.0.0.1:2"]
    rv.upstream_status = ["502", "200"]
    rv.upstream_response_time = [0.0, 0.0125]
    assert rv.get("upstream_addr") == "127.0.0.1:1, 127.0.0.1:2"
    assert rv.get("upstream_status") == "502, 200"
    assert rv.get("upstream_response_time") == "0.000, 0.013"
    cv = compile_value('"$http_user_agent" "$http_referer" $status')
    rv.status = 101
    assert rv.evaluate_log(cv, "default") == '"q\\x22\\x5C\\xC3\\xA9" "-" 101'
    assert escape_log_value('a"\n', "json") == 'a\\"\\n'
    assert escape_log_value("raw\n", "none") == "raw\n"


def test_time_formats(tmp_path: Path, conf: MainConf) -> None:
    rv = rv_for(conf, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    rv.end_time = 1_700_000_000.5
    import re

    assert re.fullmatch(
        r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}", rv.get("time_local") or ""
    )
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", rv.get("time_iso8601") or ""
    )
    assert rv.get("msec") == "1700000000.500"


def test_reads_late_follows_maps(conf: MainConf) -> None:
    """A template may be rendered at a tunnel's 101 unless one of its maps reads a variable
    known only at the end (through other maps too); a late variable of its own is fine."""
    assert conf.http is not None
    maps = conf.http.maps
    late = TUNNEL_LATE
    assert not reads_late(compile_value("$bytes_sent $request_time $early $1"), maps, late)
    assert reads_late(compile_value("$status $late_direct"), maps, late)
    assert reads_late(compile_value("$late_inner"), maps, late)
    assert not reads_late(compile_value("$late_inner"), maps, frozenset())


@pytest.mark.parametrize("escape", ["default", "json", "none"])
def test_prerendered_log_line_is_the_line_at_the_end(conf: MainConf, escape: str) -> None:
    """prerender_log now, evaluate_log_parts later: the line evaluate_log writes then."""
    raw = b'GET /p?a=1 HTTP/1.1\r\nHost: h.test\r\nUser-Agent: "x"\r\n\r\n'
    cv = compile_value(
        '$remote_addr "$request" $status $body_bytes_sent $bytes_sent "$http_user_agent" '
        "$http_referer $early $1 $upstream_addr $upstream_status $request_time $arg_a"
    )
    ahead, whole = rv_for(conf, raw), rv_for(conf, raw)
    for rv in (ahead, whole):
        rv.status = 101
        rv.upstream_addr = ["127.0.0.1:1"]
    parts = ahead.prerender_log(cv, escape, TUNNEL_LATE)
    # Text between the late variables is joined; the late ones stay variables.
    assert [p for p in parts if isinstance(p, Var)] == [
        Var("body_bytes_sent"),
        Var("bytes_sent"),
        Var("upstream_status"),
        Var("request_time"),
    ]
    kinds = [isinstance(p, str) for p in parts]
    assert [True, True] not in [kinds[i : i + 2] for i in range(len(kinds))]
    assert conf.http is not None
    end = RequestVars.totals(conf.http.servers[0], start=0.0, request_length=0)
    for rv in (end, whole):
        rv.status = 101
        rv.body_bytes_sent, rv.bytes_sent = 5, 200
        rv.upstream_status = ["502", "101"]
        rv.end_time = 2.5
    assert end.evaluate_log_parts(parts, escape) == whole.evaluate_log(cv, escape)
