"""Location and server selection from nginx's observed matrix (§4.1, §4.2, §4.3)."""

from __future__ import annotations

import pytest

from wsgate.conf.build import load
from wsgate.routing import Match, Router, find_location, normalize_host, parse_target

CONF = """
events {}
http {
  server {
    listen 127.0.0.1:8080;
    server_name exact.test *.wild.test www.tail.* ~^re\\d+\\.test$;
    location = /exact { return 200 exact; }
    location /exact { return 200 prefix-exact; }
    location / { return 200 root; }
    location ^~ /static/ { return 200 static; }
    location ~ \\.(gif|jpg)$ { return 200 regex; }
    location ~* \\.PNG$ { return 200 png; }
    location /p1/ { proxy_pass http://127.0.0.1:9/; }
    location /outer/ {
      location /outer/inner/ { return 200 inner; }
      location ~ \\.txt$ { return 200 nested-regex; }
    }
  }
  server { listen 127.0.0.1:8080; server_name other.test; }
  server { listen 127.0.0.1:8080 default_server; server_name dflt.test; }
}
"""


@pytest.fixture(scope="module")
def conf_router(tmp_path_factory: pytest.TempPathFactory) -> Router:
    path = tmp_path_factory.mktemp("c") / "n.conf"
    path.write_text(CONF)
    conf = load(str(path))
    assert conf.http is not None
    return Router(conf.http)


@pytest.mark.parametrize(
    ("uri", "text", "match"),
    [
        ("/exact", "exact", Match.EXACT),
        ("/exact/", "prefix-exact", Match.PREFIX),
        ("/exactx", "prefix-exact", Match.PREFIX),
        ("/images/a.gif", "regex", Match.REGEX),
        ("/static/a.gif", "static", Match.NOREGEX),
        ("/a.PNG", "png", Match.REGEX),
        ("/a.png", "png", Match.REGEX),
        ("/A.GIF", "root", Match.PREFIX),
        ("/outer/inner/x", "inner", Match.PREFIX),
        ("/outer/a.txt", "nested-regex", Match.REGEX),
    ],
)
def test_location_matrix(conf_router: Router, uri: str, text: str, match: Match) -> None:
    server = conf_router.select_server("127.0.0.1", 8080, "exact.test")
    found = find_location(server.locations, uri)
    assert found.match is match
    assert found.location is not None and found.location.return_ is not None
    assert found.location.return_[1] is not None
    assert found.location.return_[1].static == text


def test_auto_redirect(conf_router: Router) -> None:
    server = conf_router.select_server("127.0.0.1", 8080, "exact.test")
    found = find_location(server.locations, "/p1")
    assert found.match is Match.REDIRECT
    assert found.location is not None and found.location.name == "/p1/"


@pytest.mark.parametrize(
    ("host", "first_name"),
    [
        ("exact.test", "exact.test"),
        ("a.wild.test", "exact.test"),
        ("www.tail.org", "exact.test"),
        ("re42.test", "exact.test"),
        ("other.test", "other.test"),
        ("unknown.test", "dflt.test"),
        (None, "dflt.test"),
    ],
)
def test_server_names(conf_router: Router, host: str | None, first_name: str) -> None:
    assert conf_router.select_server("127.0.0.1", 8080, host).server_name[0] == first_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.TEST:8080", "example.test"),
        ("example.test.", "example.test"),
        ("[::1]:80", "[::1]"),
        ("a..b", None),
        ("a/b", None),
        ("", None),
        # ngx_http_validate_host: only ASCII letters are lower-cased; a leading dot, a
        # backslash, an unclosed or trailing IP literal are accepted; "..", CTL, space not.
        ("\xc3\xa9.TEST", "\xc3\xa9.test"),
        (".example.com", ".example.com"),
        ("exa\\mple.com", "exa\\mple.com"),
        ("[::1", "[::1"),
        ("[::1]x", "[::1]"),
        ("exa mple.com", None),
        ("example.com\x7f", None),
        (":80", None),
    ],
)
def test_normalize_host(raw: str, expected: str | None) -> None:
    assert normalize_host(raw) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/a%20b/./c?z", ("/a b/c", "z", None)),
        ("/p3//x/../y", ("/p3/y", "", None)),
        ("/a%2Fb", ("/a/b", "", None)),
        ("http://Host.test/abs?x", ("/abs", "x", "Host.test")),
        ("/..", None),
        ("/%zz", None),
        # ngx_http_parse_request_line / ngx_http_parse_complex_uri
        ("*", None),
        ("/a%00b", None),
        ("http://user@example.com/x", None),
        ("http://exa_mple.com/x", None),
        ("http://example.com:8x/", None),
        ("ftp://Example.COM:21/x?y", ("/x", "y", "Example.COM:21")),
        ("http://[::1]:80?q", ("/", "q", "[::1]:80")),
        ("example.com/x", None),
    ],
)
def test_parse_target(target: str, expected: tuple[str, str, str | None] | None) -> None:
    assert parse_target(target) == expected
