"""nginx's routing rules found by the differential suite, as table-driven unit tests.

Each row is an observation from nginx 1.22.1 (``tests/interop/test_nginx_routing.py`` runs
them against the real nginx); here they pin the pure code: location search (§4.2, §4.3),
server names (§4.1), ``proxy_redirect`` inheritance (§4.4) and ``$cookie_NAME``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wsgate.conf.build import load
from wsgate.conf.model import HttpConf, LocationConf
from wsgate.http.parser import parse_request_head
from wsgate.routing import Match, Router, find_location
from wsgate.vars.registry import ConnInfo, RequestVars

CONF = r"""
events {}
http {
  server {
    listen 127.0.0.1:8080;
    server_name main.test;
    location / { return 200 root; }
    location /nest/ {
      return 200 nest;
      location ^~ /nest/nore/ { return 200 nore; }
      location ~ \.txt$ { return 200 nest-txt; }
    }
    location ~ \.txt$ { return 200 top-txt; }
    location /p5 { return 200 p5; }
    location /p5/ { proxy_pass http://127.0.0.1:9; }
    location /p6/ { proxy_pass http://127.0.0.1:9; }
    location = /p7/ { proxy_pass http://127.0.0.1:9; }
    location = /p6 { return 200 p6-exact; }
    location /outer/ {
      proxy_pass http://127.0.0.1:9/o/;
      location /outer/inner/ { proxy_pass http://127.0.0.1:9/i/; }
      location /outer/off/ { proxy_pass http://127.0.0.1:9/f/; proxy_redirect off; }
    }
    location /rules/ {
      proxy_pass http://127.0.0.1:9/r/;
      proxy_redirect http://a/ /b/;
      location /rules/in/ { proxy_pass http://127.0.0.1:9/x/; }
    }
  }
  server { listen 127.0.0.1:8080; server_name .dot.test; }
  server { listen 127.0.0.1:8080; server_name *.dot.test.example; }
  server { listen 127.0.0.1:8080; server_name ~^CAPS\d+$; }
  server { listen 127.0.0.1:8080 default_server; server_name dflt.test; }
}
"""


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> HttpConf:
    path: Path = tmp_path_factory.mktemp("rules") / "nginx.conf"
    path.write_text(CONF)
    conf = load(str(path))
    assert conf.http is not None
    return conf.http


def _text(loc: LocationConf | None) -> str:
    if loc is None:
        return "-"
    if loc.return_ is not None and loc.return_[1] is not None:
        return loc.return_[1].static or "?"
    return loc.name


@pytest.mark.parametrize(
    ("uri", "expected", "match"),
    [
        # a nested "^~" stops the nested regexes only: the top level's regexes still run
        ("/nest/nore/a.txt", "top-txt", Match.REGEX),
        ("/nest/nore/a", "nore", Match.NOREGEX),
        ("/nest/a.txt", "nest-txt", Match.REGEX),
        # no 301 when a location is named exactly like the URI
        ("/p5", "p5", Match.PREFIX),
        ("/p6", "p6-exact", Match.EXACT),
        # the 301 for exact locations ending in "/" too
        ("/p7", "/p7/", Match.REDIRECT),
        ("/p5x", "p5", Match.PREFIX),
    ],
)
def test_location_search(http: HttpConf, uri: str, expected: str, match: Match) -> None:
    found = find_location(http.servers[0].locations, uri)
    assert (_text(found.location), found.match) == (expected, match)


@pytest.mark.parametrize(
    ("host", "first_name"),
    [
        ("dot.test", ".dot.test"),  # ".name" is also the exact name
        ("a.dot.test", ".dot.test"),
        ("caps42", "~^CAPS\\d+$"),  # a regex with capitals is caseless
        ("x.dot.test.example", "*.dot.test.example"),
        ("unknown", "dflt.test"),
    ],
)
def test_server_names(http: HttpConf, host: str, first_name: str) -> None:
    server, _ = Router(http).find_server("127.0.0.1", 8080, host)
    assert server.server_name[0] == first_name


def test_server_name_variable_drops_the_dot(http: HttpConf) -> None:
    assert Router(http).select_server("127.0.0.1", 8080, "dot.test").name == "dot.test"


def _redirect_rules(http: HttpConf, uri: str) -> list[tuple[str | None, str]]:
    loc = find_location(http.servers[0].locations, uri).location
    assert loc is not None
    return [
        (r.prefix.static if r.prefix is not None else None, r.replacement.static or "")
        for r in loc.proxy_redirect
    ]


@pytest.mark.parametrize(
    ("uri", "rules"),
    [
        ("/outer/x", [("http://127.0.0.1:9/o/", "/outer/")]),
        # a nested location inherits its parent's default rule, not its own proxy_pass's
        ("/outer/inner/x", [("http://127.0.0.1:9/o/", "/outer/")]),
        ("/outer/off/x", []),
        ("/rules/x", [("http://a/", "/b/")]),
        ("/rules/in/x", [("http://a/", "/b/")]),
        ("/p5/x", [("http://127.0.0.1:9/", "/")]),
    ],
)
def test_proxy_redirect_inheritance(
    http: HttpConf, uri: str, rules: list[tuple[str | None, str]]
) -> None:
    assert _redirect_rules(http, uri) == rules


@pytest.mark.parametrize(
    ("lines", "name", "value"),
    [
        (["Cookie: SID=upper; sid=lower"], "sid", "upper"),  # the name has no case
        (["Cookie: a=1", "Cookie: sid=2"], "sid", "2"),  # every Cookie line, in order
        (["Cookie: sid;sid=x"], "sid", None),  # a name without "=" skips the next pair
        (["Cookie: x=1,sid = 3"], "sid", "3"),  # "," separates too; spaces around "="
        (["Cookie: sidx=1"], "sid", None),
    ],
)
def test_cookie_variable(http: HttpConf, lines: list[str], name: str, value: str | None) -> None:
    raw = ("GET / HTTP/1.1\r\nHost: a\r\n" + "".join(f"{x}\r\n" for x in lines) + "\r\n").encode()
    head = parse_request_head(raw)
    rv = RequestVars(
        head,
        ConnInfo("127.0.0.1", 1, "127.0.0.1", 8080),
        http.servers[0],
        http.maps,
        host="a",
        uri="/",
        args="",
        start=0.0,
    )
    assert rv.get(f"cookie_{name}") == value


@pytest.mark.parametrize(
    ("args", "value"),
    [
        ("a&a=2", "2"),  # a bare name does not count
        ("A=1&a=2", "1"),  # the name has no case; the first one wins
        ("ba=3", None),
        ("x=1&a=", ""),
        ("a", None),
    ],
)
def test_arg_variable(http: HttpConf, args: str, value: str | None) -> None:
    head = parse_request_head(f"GET /?{args} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    rv = RequestVars(
        head,
        ConnInfo("127.0.0.1", 1, "127.0.0.1", 8080),
        http.servers[0],
        http.maps,
        host="a",
        uri="/",
        args=args,
        start=0.0,
    )
    assert rv.get("arg_a") == value
