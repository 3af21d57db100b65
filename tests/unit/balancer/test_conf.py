"""The balancing-method directives in ``conf/table.py`` (nginx-semantics.md section 3.10):
what they put in ``UpstreamConf`` and nginx's errors, word for word and at nginx's line.
The same texts go through ``nginx -t`` in ``tests/interop/test_nginx_balancer_conf.py``."""

from __future__ import annotations

import pytest

from wsgate.balancer import ConsistentHash, Hash, IpHash, LeastConn, Random, for_upstream
from wsgate.conf.build import load
from wsgate.conf.model import UpstreamConf
from wsgate.errors import ConfigError

FILE = "/etc/wsgate/nginx.conf"  # never read: the text is passed in


def conf_text(upstream_body: str) -> str:
    """A config whose upstream ``u`` holds ``upstream_body``; its lines start at line 4."""
    return (
        "events {}\nhttp {\n upstream u {\n"
        + upstream_body
        + " }\n server {\n  listen 127.0.0.1:8080;\n  location / { proxy_pass http://u; }\n"
        " }\n}\n"
    )


def upstream(body: str) -> UpstreamConf:
    http = load(FILE, text=conf_text(body)).http
    assert http is not None
    return http.upstreams["u"]


S1 = "  server 127.0.0.1:8001;\n"
S2 = "  server 127.0.0.1:8002;\n"


@pytest.mark.parametrize(
    ("body", "method", "args", "key", "cls"),
    [
        (S1 + S2, "round_robin", (), None, None),
        ("  ip_hash;\n" + S1 + S2, "ip_hash", (), None, IpHash),
        ("  least_conn;\n" + S1 + S2, "least_conn", (), None, LeastConn),
        ("  hash $request_uri;\n" + S1 + S2, "hash", (), "$request_uri", Hash),
        (
            "  hash $arg_k consistent;\n" + S1 + S2,
            "hash",
            ("consistent",),
            "$arg_k",
            ConsistentHash,
        ),
        ('  hash "$host:$arg_k";\n' + S1 + S2, "hash", (), "$host:$arg_k", Hash),
        ("  random;\n" + S1 + S2, "random", (), None, Random),
        ("  random two;\n" + S1 + S2, "random", ("two",), None, Random),
        ("  random two least_conn;\n" + S1 + S2, "random", ("two", "least_conn"), None, Random),
        # Two methods: nginx warns "load balancing method redefined"; the last one wins.
        ("  ip_hash;\n  least_conn;\n" + S1 + S2, "least_conn", (), None, LeastConn),
        ("  hash $uri;\n  ip_hash;\n" + S1 + S2, "ip_hash", (), None, IpHash),
        # backup is refused only on server lines *after* a method without it
        (S1 + "  server 127.0.0.1:8002 backup;\n  ip_hash;\n", "ip_hash", (), None, IpHash),
        (
            "  ip_hash;\n  least_conn;\n" + S1 + "  server 127.0.0.1:8002 backup;\n",
            "least_conn",
            (),
            None,
            LeastConn,
        ),
    ],
)
def test_method_in_the_model(
    body: str, method: str, args: tuple[str, ...], key: str | None, cls: type | None
) -> None:
    u = upstream(body)
    assert (u.method, u.method_args) == (method, args)
    assert (u.hash_key.text if u.hash_key is not None else None) == key
    if cls is not None:
        assert type(for_upstream(u)) is cls


@pytest.mark.parametrize(
    ("body", "message", "line"),
    [
        (
            "  ip_hash;\n  server 127.0.0.1:8001 backup;\n",
            'balancing method does not support parameter "backup"',
            5,
        ),
        (
            "  hash $uri;\n  server 127.0.0.1:8001 backup;\n",
            'balancing method does not support parameter "backup"',
            5,
        ),
        (
            "  random;\n  server 127.0.0.1:8001 backup;\n",
            'balancing method does not support parameter "backup"',
            5,
        ),
        ("  hash $uri consistentx;\n" + S1, 'invalid parameter "consistentx"', 4),
        ("  random two least_time;\n" + S1, 'invalid parameter "least_time"', 4),
        ("  random least_conn;\n" + S1, 'invalid parameter "least_conn"', 4),
        ("  random one;\n" + S1, 'invalid parameter "one"', 4),
        ("  ip_hash x;\n" + S1, 'invalid number of arguments in "ip_hash" directive', 4),
        ("  least_conn x;\n" + S1, 'invalid number of arguments in "least_conn" directive', 4),
        ("  hash;\n" + S1, 'invalid number of arguments in "hash" directive', 4),
        ("  hash $a consistent x;\n" + S1, 'invalid number of arguments in "hash" directive', 4),
        (
            "  random two least_conn x;\n" + S1,
            'invalid number of arguments in "random" directive',
            4,
        ),
        ("  hash $;\n" + S1, "invalid variable name", 4),
    ],
)
def test_method_errors(body: str, message: str, line: int) -> None:
    with pytest.raises(ConfigError) as info:
        load(FILE, text=conf_text(body))
    assert info.value.message.startswith(message)
    assert info.value.line == line


def test_unknown_variable_in_the_key_is_reported_at_the_end_of_http() -> None:
    with pytest.raises(ConfigError) as info:
        load(FILE, text=conf_text("  hash $nosuch;\n" + S1))
    assert str(info.value) == 'unknown "nosuch" variable'
