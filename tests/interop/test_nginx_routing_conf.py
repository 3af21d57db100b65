"""Differential: ``nginx -t`` against wsgate's loader for the routing directives.

Covers what the routing suite (``test_nginx_routing.py``) needs from the configuration
language: ``proxy_redirect`` (its forms and its errors), ``proxy_pass`` with variables,
nested locations under a regex location, the redirect directives (``absolute_redirect``,
``port_in_redirect``, ``server_name_in_redirect``, ``default_type``), and named captures,
which nginx turns into variables. A bad configuration must give nginx's ``[emerg]``
message with the same ``FILE:LINE``; a good one must load in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.nginx import nginx_test
from wsgate.conf.build import load
from wsgate.errors import ConfigError

_EMERG = re.compile(r"\[emerg\] \d+#\d+: (.*)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    text: str


def conf(locations: str, *, http: str = "", server: str = "") -> str:
    """``events`` and an ``http`` block with one server; ``locations`` from line 7."""
    return (
        "events {}\n"
        "http {\n"
        f"  {http}\n"
        "  server {\n"
        "    listen 127.0.0.1:8080;\n"
        f"    {server}\n"
        f"{locations}"
        "  }\n"
        "}\n"
    )


PP = "proxy_pass http://127.0.0.1:9;"

BAD = (
    Case(
        "redirect-default-before-proxy-pass",
        conf(f"location / {{ proxy_redirect default; {PP} }}\n"),
    ),
    Case(
        "redirect-default-with-variables",
        conf(
            "location ~ ^/(.*)$ {\n proxy_pass http://127.0.0.1:9/$1;\n"
            " proxy_redirect default;\n}\n"
        ),
    ),
    Case("redirect-default-in-server", conf("", server="proxy_redirect default;")),
    Case(
        "redirect-off-twice",
        conf(f"location / {{ {PP} proxy_redirect off; proxy_redirect off; }}\n"),
    ),
    Case(
        "redirect-rule-then-off",
        conf(f"location / {{ {PP}\n proxy_redirect http://a/ /;\n proxy_redirect off;\n}}\n"),
    ),
    Case(
        "redirect-off-then-rule",
        conf(f"location / {{ {PP} proxy_redirect off; proxy_redirect a b; }}\n"),
    ),
    Case("redirect-bad-word", conf(f"location / {{ {PP} proxy_redirect bogus; }}\n")),
    Case("redirect-three-args", conf(f"location / {{ {PP} proxy_redirect a b c; }}\n")),
    Case("redirect-bad-regex", conf(f"location / {{ {PP} proxy_redirect ~^(x /; }}\n")),
    Case("redirect-bad-variable", conf(f"location / {{ {PP} proxy_redirect $nosuch /; }}\n")),
    Case(
        "prefix-inside-regex-location",
        conf(f"location ~ ^/rx/ {{\n {PP}\n location /rx/sub/ {{ {PP} }}\n}}\n"),
    ),
    Case(
        "exact-inside-regex-location",
        conf(f"location ~ ^/rx/ {{\n {PP}\n location = /rx/a {{ {PP} }}\n}}\n"),
    ),
    Case(
        "uri-part-in-regex-location",
        conf("location ~ ^/a {\n proxy_pass http://127.0.0.1:9/b;\n}\n"),
    ),
    Case(
        "map-dot-name-after-exact",
        conf("", http="map $host $m { hostnames; example.com b; .example.com a; }"),
    ),
    Case(
        "map-exact-after-dot-name",
        conf("", http="map $host $m { hostnames; .example.com a; example.com b; }"),
    ),
    Case(
        "map-dot-name-after-star",
        conf("", http="map $host $m { hostnames; *.example.com a; .example.com b; }"),
    ),
    Case("server-name-star-without-dot", conf("", server="server_name *foo;")),
    Case("server-name-star-alone", conf("", server="server_name a *;")),
    Case("server-name-dot-alone", conf("", server="server_name .;")),
    Case("server-name-empty-regex", conf("", server="server_name ~;")),
    Case("absolute-redirect-bad", conf("", server="absolute_redirect maybe;")),
    Case("port-in-redirect-args", conf("", server="port_in_redirect on off;")),
    Case("default-type-args", conf("", http="default_type a b;")),
    Case("default-type-duplicate", conf("", http="default_type a; default_type b;")),
    Case(
        "capture-name-is-not-any-name",
        conf(f"location ~ ^/(?<known>.*)$ {{ {PP} proxy_set_header X $unknown; }}\n"),
    ),
)

GOOD = (
    Case(
        "redirect-forms",
        conf(
            f"location /a/ {{ {PP} proxy_redirect default; }}\n"
            f"location /b/ {{ {PP} proxy_redirect off; }}\n"
            f"location /c/ {{ {PP} proxy_redirect http://x/ /y/;\n"
            " proxy_redirect ~*^http://(z)/ /$1/; }\n"
            f"location /d/ {{ {PP} proxy_redirect default; proxy_redirect http://x/ /; }}\n",
            server="proxy_redirect http://s/ /;",
        ),
    ),
    Case(
        "proxy-pass-variables-in-uri",
        conf(
            "location ~ ^/p8/(.*)$ { proxy_pass http://127.0.0.1:9/r/$1$is_args$args; }\n"
            "location ~ ^/p9/(?<rest>.*)$ { proxy_pass http://u/$rest; }\n",
            http="upstream u { server 127.0.0.1:9; }",
        ),
    ),
    Case(
        "regex-inside-regex-and-prefix",
        conf(
            f"location ~ ^/rx/ {{\n {PP}\n location ~ \\.css$ {{ {PP} }}\n}}\n"
            f"location /n/ {{ {PP} location ~ x {{ {PP} }} location ^~ /n/a/ {{ {PP} }} }}\n"
        ),
    ),
    Case(
        "named-captures-are-variables",
        conf(
            f"location ~ ^/(?<loccap>.*)$ {{ {PP} proxy_set_header X $loccap$srvcap$mapcap; }}\n",
            http="map $uri $m { ~^/(?<mapcap>.*)$ $mapcap; }",
            server="server_name ~^(?<srvcap>.+)$;",
        ),
    ),
    Case(
        "redirect-directives",
        conf(
            "location = /r { return 301 /x; absolute_redirect off; port_in_redirect off; }\n",
            http="default_type application/json; server_name_in_redirect on;",
        ),
    ),
    Case("exact-location-ending-in-slash", conf(f"location = /p7/ {{ {PP} }}\n")),
    Case("server-name-hostname", conf("", server="server_name $hostname .a.test *.b.test;")),
    Case(
        "types-blocks",
        conf(
            "location /t/ { types { text/x-a a; } types { text/x-b b B; } }\n",
            http="types { text/html html htm; application/json json; }\n"
            "  types_hash_max_size 2048; types_hash_bucket_size 64;",
        ),
    ),
)

MIME_TYPES = Path("/etc/nginx/mime.types")  # Debian's; the real file users include


def nginx_result(case: Case, tmp_path: Path) -> tuple[int, str | None]:
    """nginx -t's exit status and its [emerg] message (prefix path masked)."""
    rc, stderr = nginx_test(case.text, tmp_path)
    m = _EMERG.search(stderr)
    message = m[1].replace(str(tmp_path / "nginx") + "/", "PREFIX/") if m else None
    return rc, message


def wsgate_result(case: Case, tmp_path: Path) -> tuple[int, str | None]:
    """The same shape from wsgate's loader, run on the same path nginx read."""
    path = tmp_path / "nginx" / "nginx.conf"
    path.write_text(case.text)
    try:
        load(str(path))
    except ConfigError as exc:
        return 1, str(exc).replace(str(tmp_path / "nginx") + "/", "PREFIX/")
    return 0, None


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_config_same_message(case: Case, tmp_path: Path) -> None:
    nginx = nginx_result(case, tmp_path)
    assert nginx[0] == 1 and nginx[1] is not None, f"not bad for nginx: {nginx}"
    assert wsgate_result(case, tmp_path) == nginx


def test_types_in_blocks_are_checked(tmp_path: Path) -> None:
    case = Case("types-block-with-block", conf("", http="types { text/html html { } }"))
    nginx = nginx_result(case, tmp_path)
    assert nginx[0] == 1
    assert wsgate_result(case, tmp_path) == nginx


@pytest.mark.skipif(not MIME_TYPES.is_file(), reason=f"no {MIME_TYPES}")
def test_include_mime_types(tmp_path: Path) -> None:
    case = Case(
        "include-mime-types",
        conf("", http=f"include {MIME_TYPES}; default_type application/octet-stream;"),
    )
    assert nginx_result(case, tmp_path) == (0, None)
    assert wsgate_result(case, tmp_path) == (0, None)


@pytest.mark.parametrize("case", GOOD, ids=[c.id for c in GOOD])
def test_good_config_loads(case: Case, tmp_path: Path) -> None:
    assert nginx_result(case, tmp_path) == (0, None)
    assert wsgate_result(case, tmp_path) == (0, None)
