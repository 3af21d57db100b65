"""``websocket_health_check`` in ``conf/table.py``: what it puts in ``UpstreamConf`` and
its errors, in nginx's words and at the directive's line."""

from __future__ import annotations

import pytest

from wsgate.conf.build import load
from wsgate.conf.model import HealthCheckConf, UpstreamConf
from wsgate.errors import ConfigError

FILE = "/etc/wsgate/nginx.conf"  # never read: the text is passed in

S = "  server 127.0.0.1:8001;\n  server 127.0.0.1:8002 backup;\n"


def conf_text(upstream_body: str, location: str = "") -> str:
    """A config whose upstream ``u`` holds ``upstream_body``; its lines start at line 4."""
    return (
        "events {}\nhttp {\n upstream u {\n"
        + upstream_body
        + " }\n server {\n  listen 127.0.0.1:8080;\n  location / { proxy_pass http://u; "
        + location
        + "}\n }\n}\n"
    )


def upstream(body: str) -> UpstreamConf:
    http = load(FILE, text=conf_text(body)).http
    assert http is not None
    return http.upstreams["u"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("websocket_health_check;", HealthCheckConf()),
        (
            "websocket_health_check interval=5s timeout=5s fails=1 passes=1 uri=/ ping;",
            HealthCheckConf(ping=True),
        ),
        # timeout follows interval unless given
        ("websocket_health_check interval=200ms;", HealthCheckConf(interval=0.2, timeout=0.2)),
        (
            "websocket_health_check timeout=1s interval=1m;",
            HealthCheckConf(interval=60.0, timeout=1.0),
        ),
        ("websocket_health_check interval=1m30s;", HealthCheckConf(interval=90, timeout=90)),
        ("websocket_health_check interval=3;", HealthCheckConf(interval=3.0, timeout=3.0)),
        ("websocket_health_check fails=3 passes=2;", HealthCheckConf(fails=3, passes=2)),
        (
            "websocket_health_check uri=/health?probe=1&x=%20;",
            HealthCheckConf(uri="/health?probe=1&x=%20"),
        ),
        # the last of a repeated parameter wins
        ("websocket_health_check fails=2 fails=4;", HealthCheckConf(fails=4)),
        ("websocket_health_check ping ping;", HealthCheckConf(ping=True)),
    ],
)
def test_parameters_in_the_model(line: str, expected: HealthCheckConf) -> None:
    assert upstream(S + "  " + line + "\n").websocket_health_check == expected


def test_without_the_directive_there_is_no_check() -> None:
    assert upstream(S).websocket_health_check is None


def test_an_implicit_group_has_no_check() -> None:
    http = load(FILE, text=conf_text(S, "} location /x { proxy_pass http://127.0.0.1:9;")).http
    assert http is not None
    assert http.upstreams["127.0.0.1:9"].websocket_health_check is None


@pytest.mark.parametrize(
    ("body", "message", "line"),
    [
        ("  websocket_health_check foo=1;\n" + S, 'invalid parameter "foo=1"', 4),
        ("  websocket_health_check pong;\n" + S, 'invalid parameter "pong"', 4),
        ("  websocket_health_check ping=on;\n" + S, 'invalid parameter "ping=on"', 4),
        ("  websocket_health_check interval;\n" + S, 'invalid parameter "interval"', 4),
        ("  websocket_health_check interval=;\n" + S, 'invalid parameter "interval="', 4),
        ("  websocket_health_check interval=0;\n" + S, 'invalid parameter "interval=0"', 4),
        ("  websocket_health_check interval=5x;\n" + S, 'invalid parameter "interval=5x"', 4),
        # millisecond-based times refuse years and months, as proxy_*_timeout do
        ("  websocket_health_check timeout=1y;\n" + S, 'invalid parameter "timeout=1y"', 4),
        ("  websocket_health_check timeout=0s;\n" + S, 'invalid parameter "timeout=0s"', 4),
        ("  websocket_health_check fails=0;\n" + S, 'invalid parameter "fails=0"', 4),
        ("  websocket_health_check fails=-1;\n" + S, 'invalid parameter "fails=-1"', 4),
        ("  websocket_health_check passes=x;\n" + S, 'invalid parameter "passes=x"', 4),
        ("  websocket_health_check passes=²;\n" + S, 'invalid parameter "passes=²"', 4),
        ("  websocket_health_check uri=health;\n" + S, 'invalid parameter "uri=health"', 4),
        ("  websocket_health_check uri=;\n" + S, 'invalid parameter "uri="', 4),
        ('  websocket_health_check "uri=/a b";\n' + S, 'invalid parameter "uri=/a b"', 4),
        (
            S + "  websocket_health_check;\n  websocket_health_check ping;\n",
            '"websocket_health_check" directive is duplicate',
            7,
        ),
    ],
)
def test_errors(body: str, message: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        load(FILE, text=conf_text(body))
    assert info.value.message == message
    assert info.value.line == line
    assert str(info.value) == f"{message} in {FILE}:{line}"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("events {}\nhttp {\n websocket_health_check;\n}\n", 3),
        (conf_text(S, "websocket_health_check; "), 9),
        ("websocket_health_check;\nevents {}\n", 1),
    ],
)
def test_not_allowed_outside_upstream(text: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        load(FILE, text=text)
    assert str(info.value) == (
        f'"websocket_health_check" directive is not allowed here in {FILE}:{line}'
    )


def test_not_terminated() -> None:
    with pytest.raises(ConfigError) as info:
        load(FILE, text=conf_text(S + "  websocket_health_check {}\n"))
    assert info.value.message == 'directive "websocket_health_check" is not terminated by ";"'
