"""Differential: the balancing-method directives through ``nginx -t`` and ``wsgate proxy -t``
(nginx-semantics.md section 3.10), with the comparison of ``test_nginx_config_errors``:
the same ``[emerg]`` message at the same line, the same exit status. ``[warn]`` lines
(``load balancing method redefined``) are not compared: nginx prints one, wsgate none.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.test_nginx_config_errors import Case, _run_both


def _u(body: str) -> str:
    """Upstream ``u`` holding BODY (its lines start at line 4), used by one location."""
    return (
        "events {}\nhttp {\n upstream u {\n"
        + body
        + " }\n server {\n  listen 127.0.0.1:8080;\n  location / { proxy_pass http://u; }\n"
        " }\n}\n"
    )


S1 = "  server 127.0.0.1:8001;\n"
S2 = "  server 127.0.0.1:8002;\n"
BACKUP = "  server 127.0.0.1:8003 backup;\n"

GOOD = [
    Case("ip-hash", _u("  ip_hash;\n" + S1 + S2)),
    Case("ip-hash-down", _u("  ip_hash;\n" + S1 + "  server 127.0.0.1:8002 down;\n")),
    Case("least-conn-backup", _u("  least_conn;\n" + S1 + BACKUP)),
    Case("hash", _u("  hash $request_uri;\n" + S1 + S2)),
    Case("hash-consistent", _u("  hash $arg_k consistent;\n" + S1 + S2)),
    Case("hash-complex-key", _u('  hash "$remote_addr:$arg_k";\n' + S1 + S2)),
    Case("random", _u("  random;\n" + S1 + S2)),
    Case("random-two", _u("  random two;\n" + S1 + S2)),
    Case("random-two-least-conn", _u("  random two least_conn;\n" + S1 + S2)),
    Case("redefined-is-a-warning", _u("  ip_hash;\n  least_conn;\n  random;\n" + S1 + S2)),
    Case("backup-before-ip-hash", _u(S1 + BACKUP + "  ip_hash;\n")),
    Case("backup-after-redefined-to-least-conn", _u("  ip_hash;\n  least_conn;\n" + S1 + BACKUP)),
    Case(
        "method-params",
        _u(
            "  hash $uri;\n  server 127.0.0.1:8001 weight=3 max_conns=2 "
            "max_fails=2 fail_timeout=5s down;\n" + S2
        ),
    ),
]

BAD = [
    Case("ip-hash-then-backup", _u("  ip_hash;\n" + S1 + BACKUP)),
    Case("hash-then-backup", _u("  hash $uri;\n" + S1 + BACKUP)),
    Case("random-then-backup", _u("  random two;\n" + S1 + BACKUP)),
    Case("least-conn-then-ip-hash-then-backup", _u("  least_conn;\n  ip_hash;\n" + S1 + BACKUP)),
    Case("hash-consistentx", _u("  hash $uri consistentx;\n" + S1)),
    Case("hash-no-key", _u("  hash;\n" + S1)),
    Case("hash-three-args", _u("  hash $uri consistent x;\n" + S1)),
    Case("hash-bad-variable", _u("  hash $;\n" + S1)),
    Case("hash-unknown-variable", _u("  hash $nosuch;\n" + S1)),
    Case("random-least-time", _u("  random two least_time;\n" + S1)),
    Case("random-least-conn-alone", _u("  random least_conn;\n" + S1)),
    Case("random-three-args", _u("  random two least_conn x;\n" + S1)),
    Case("ip-hash-arg", _u("  ip_hash on;\n" + S1)),
    Case("least-conn-arg", _u("  least_conn 1;\n" + S1)),
    Case("ip-hash-outside-upstream", "events {}\nhttp {\n ip_hash;\n}\n"),
    Case("only-backups-with-ip-hash-first", _u(BACKUP + "  ip_hash;\n")),
]


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_method_same_error(case: Case, tmp_path: Path) -> None:
    nginx, wsgate = _run_both(case, tmp_path)
    assert nginx[0] == 1, f"the case is not bad for nginx: {nginx}"
    assert wsgate == nginx


@pytest.mark.parametrize("case", GOOD, ids=[c.id for c in GOOD])
def test_good_method_accepted(case: Case, tmp_path: Path) -> None:
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
