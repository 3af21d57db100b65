"""``keepalive`` and its ``keepalive_*`` companions in ``upstream{}`` (conf/table.py): the
values they put in ``UpstreamConf`` and nginx's errors at the directive's line; the
client-side ``keepalive_timeout`` / ``keepalive_requests`` of http/server/location stay
as they were."""

from __future__ import annotations

import pytest

from wsgate.conf.build import load
from wsgate.conf.model import UpstreamConf
from wsgate.errors import ConfigError

FILE = "/etc/wsgate/nginx.conf"  # never read: the text is passed in

S = "  server 127.0.0.1:8001;\n"


def conf_text(upstream_body: str, http: str = "", location: str = "") -> str:
    """A config whose upstream ``u`` holds ``upstream_body``; its lines start at line 4."""
    return (
        "events {}\nhttp {\n upstream u {\n"
        + upstream_body
        + " }\n"
        + http
        + " server {\n  listen 127.0.0.1:8080;\n  location / { proxy_pass http://u; "
        + location
        + "}\n }\n}\n"
    )


def upstream(body: str) -> UpstreamConf:
    http = load(FILE, text=conf_text(body)).http
    assert http is not None
    return http.upstreams["u"]


def test_defaults_without_keepalive() -> None:
    u = upstream(S)
    assert (u.keepalive, u.keepalive_timeout, u.keepalive_requests, u.keepalive_time) == (
        0,
        60.0,
        1000,
        3600.0,
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("keepalive 16;", (16, 60.0, 1000, 3600.0)),
        ("keepalive 1; keepalive_timeout 5s;", (1, 5.0, 1000, 3600.0)),
        ("keepalive 2; keepalive_timeout 500ms;", (2, 0.5, 1000, 3600.0)),
        ("keepalive 2; keepalive_requests 3;", (2, 60.0, 3, 3600.0)),
        ("keepalive 2; keepalive_requests 0;", (2, 60.0, 0, 3600.0)),
        ("keepalive 2; keepalive_time 10m;", (2, 60.0, 1000, 600.0)),
        ("keepalive_timeout 1s; keepalive_requests 7; keepalive 4;", (4, 1.0, 7, 3600.0)),
        # The companions alone are accepted and do nothing (nginx stores them too).
        ("keepalive_timeout 1s;", (0, 1.0, 1000, 3600.0)),
        # A balancing method before `keepalive` keeps it...
        ("least_conn; keepalive 8;", (8, 60.0, 1000, 3600.0)),
        # ...one after it replaces the group's init, which switches the cache off.
        ("keepalive 8; ip_hash;", (0, 60.0, 1000, 3600.0)),
    ],
)
def test_values(body: str, expected: tuple[int, float, int, float]) -> None:
    u = upstream(S + "  " + body + "\n")
    assert (u.keepalive, u.keepalive_timeout, u.keepalive_requests, u.keepalive_time) == expected


def test_client_side_keepalive_directives_unchanged() -> None:
    text = conf_text(
        S + "  keepalive 4;\n  keepalive_timeout 3s;\n  keepalive_requests 9;\n",
        http=" keepalive_timeout 10s 5;\n keepalive_requests 50;\n",
        location="keepalive_requests 7; keepalive_time 30m; ",
    )
    http = load(FILE, text=text).http
    assert http is not None
    loc = http.servers[0].locations[0]
    assert (loc.keepalive_timeout, loc.keepalive_header, loc.keepalive_requests) == (10.0, 5.0, 7)
    assert loc.keepalive_time == 1800.0
    u = http.upstreams["u"]
    assert (u.keepalive, u.keepalive_timeout, u.keepalive_requests) == (4, 3.0, 9)


@pytest.mark.parametrize(
    ("body", "message", "line"),
    [
        ("  keepalive 0;\n" + S, 'invalid value "0" in "keepalive" directive', 4),
        ("  keepalive x;\n" + S, 'invalid value "x" in "keepalive" directive', 4),
        ("  keepalive -1;\n" + S, 'invalid value "-1" in "keepalive" directive', 4),
        (S + "  keepalive;\n", 'invalid number of arguments in "keepalive" directive', 5),
        (S + "  keepalive 1 2;\n", 'invalid number of arguments in "keepalive" directive', 5),
        (S + "  keepalive 4;\n  keepalive 4;\n", '"keepalive" directive is duplicate', 6),
        # Still a duplicate after a method switched the first one off.
        (
            S + "  keepalive 4;\n  ip_hash;\n  keepalive 4;\n",
            '"keepalive" directive is duplicate',
            7,
        ),
        (S + "  keepalive_timeout 10x;\n", '"keepalive_timeout" directive invalid value', 5),
        (
            S + "  keepalive_timeout 10s 5s;\n",
            'invalid number of arguments in "keepalive_timeout" directive',
            5,
        ),
        (
            S + "  keepalive_timeout 1s;\n  keepalive_timeout 2s;\n",
            '"keepalive_timeout" directive is duplicate',
            6,
        ),
        (S + "  keepalive_requests x;\n", '"keepalive_requests" directive invalid number', 5),
        (S + "  keepalive_time 1y2;\n", '"keepalive_time" directive invalid value', 5),
        (S + "  keepalive 2 {\n", 'directive "keepalive" is not terminated by ";"', 5),
    ],
)
def test_errors(body: str, message: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        load(FILE, text=conf_text(body))
    assert info.value.message == message
    assert info.value.line == line


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("events {}\nhttp {\n keepalive 4;\n}\n", 3),
        (conf_text(S, location="keepalive 4; "), 8),
    ],
)
def test_not_allowed_outside_upstream(text: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        load(FILE, text=text)
    assert str(info.value) == f'"keepalive" directive is not allowed here in {FILE}:{line}'
