"""Differential fuzz of configuration files: ``nginx -t`` vs ``wsgate proxy -t``.

A fixed seed generates a few hundred configurations by mutating two valid ones: the seed
article's (a ``map`` for ``Connection``, an ``upstream`` with two servers, a location that
proxies WebSockets) and a richer one that uses more of the directives wsgate supports
(docs/directives.md). The mutations are

* lexical: unbalanced braces and quotes, missing or stray ``;``, comments in odd places,
  escapes, ``$`` variables, parameters near nginx's 4096-byte token limit, non-ASCII
  text, line endings, empty files;
* per directive: unknown names, wrong contexts, wrong argument counts, duplicates, bad
  times, sizes, numbers and flags, bad regexes, ``listen`` and ``proxy_pass`` variants,
  ``upstream`` servers, ``map`` entries, ``include``;
* structural: empty blocks, nested locations, missing ``events`` or ``http``.

Each option of each mutation makes one case; then :data:`COMBINED` cases apply two or
three mutations at once. Every case is written to its own prefix and checked by nginx
(``tests.support.nginx.nginx_test``, a few processes at a time) and by wsgate's ``-t``
(``wsgate.cli.proxy.main``, in this process). Both outputs are reduced as
``test_nginx_config_errors`` does (``[emerg] MESSAGE in PREFIX/FILE:LINE`` and the ``-t``
lines) and compared with the exit status.

Where they differ, :func:`documented` names the row of docs/behavior.md ("Known
differences from nginx") that explains that very difference, else the difference is a
failure. The table of all differences is written to ``differences.txt`` in the test's
temporary directory; the undocumented ones are in the failure message.
"""

from __future__ import annotations

import io
import os
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from tests.interop.test_nginx_config_errors import _normalise
from tests.support import fuzz
from tests.support.nginx import NGINX, nginx_test
from wsgate.cli.proxy import main as wsgate_proxy

SEED = 0xC0_F022
COMBINED = 110  # cases with two or three mutations, after one case per option
NGINX_LANES = 4  # nginx -t processes at once
T = TypeVar("T")

Outcome = tuple[int, tuple[str, ...]]  # exit status, normalised stderr lines

# --- the base configurations ------------------------------------------------------------

ARTICLE = (
    "events {",
    "    worker_connections 1024;",
    "}",
    "http {",
    "    map $http_upgrade $connection_upgrade {",
    "        default upgrade;",
    "        ''      close;",
    "    }",
    "    upstream backend {",
    "        server 127.0.0.1:8001;",
    "        server 127.0.0.1:8002;",
    "    }",
    "    server {",
    "        listen 127.0.0.1:8080;",
    "        server_name example.com;",
    "        location / {",
    "            proxy_pass http://backend;",
    "            proxy_http_version 1.1;",
    "            proxy_set_header Upgrade $http_upgrade;",
    "            proxy_set_header Connection $connection_upgrade;",
    "            proxy_set_header Host $host;",
    "            proxy_read_timeout 300s;",
    "        }",
    "    }",
    "}",
)

RICH = (
    "worker_processes 2;",
    "worker_rlimit_nofile 4096;",
    "events {",
    "    worker_connections 512;",
    "    multi_accept on;",
    "}",
    "http {",
    "    log_format ws '$remote_addr [$time_local] \"$request\" $status $request_time';",
    "    access_log logs/ws.log ws;",
    "    keepalive_timeout 65s 60;",
    "    client_max_body_size 10m;",
    "    large_client_header_buffers 4 16k;",
    "    limit_conn_zone $binary_remote_addr zone=perip:10m;",
    "    types {",
    "        text/html html;",
    "        application/json json;",
    "    }",
    "    map $http_upgrade $connection_upgrade {",
    "        default upgrade;",
    "        ''      close;",
    "        ~*^h2c$ close;",
    "    }",
    "    upstream pool {",
    "        least_conn;",
    "        server 127.0.0.1:8001 weight=2 max_fails=3 fail_timeout=30s;",
    "        server 127.0.0.1:8002 max_conns=100;",
    "        server 127.0.0.1:8003 backup;",
    "        keepalive 16;",
    "    }",
    "    server {",
    "        listen 127.0.0.1:8081 default_server;",
    "        server_name ws.example.com *.example.org;",
    "        add_header X-Frame-Options DENY always;",
    "        location = /status {",
    "            stub_status;",
    "        }",
    "        location ~ ^/ws/(?<room>[a-z]+)$ {",
    "            proxy_pass http://pool;",
    "            proxy_http_version 1.1;",
    "            proxy_set_header Upgrade $http_upgrade;",
    "            proxy_set_header Connection $connection_upgrade;",
    "            proxy_set_header X-Room $room;",
    "            proxy_next_upstream error timeout http_502;",
    "            proxy_connect_timeout 5s;",
    "            proxy_send_timeout 1m;",
    "            proxy_buffering off;",
    "        }",
    "        location /api/ {",
    "            proxy_pass http://127.0.0.1:9000/v1/;",
    "            proxy_redirect default;",
    "            limit_conn perip 10;",
    "            location /api/admin/ {",
    "                return 403;",
    "            }",
    "        }",
    "        location / {",
    "            default_type text/plain;",
    '            return 200 "ok\\n";',
    "        }",
    "    }",
    "}",
)

BASES = {"article": ARTICLE, "rich": RICH}


@dataclass(slots=True)
class Draft:
    """A configuration being mutated; :meth:`render` makes the text of ``nginx.conf``."""

    lines: list[str]
    files: dict[str, str] = field(default_factory=dict)  # path relative to nginx.conf
    eol: str = "\n"
    final_eol: bool = True
    text: str | None = None  # the whole file, instead of the lines

    def render(self) -> str:
        if self.text is not None:
            return self.text
        body = self.eol.join(self.lines)
        return body + self.eol if self.final_eol else body


_OPEN = re.compile(r"^\s*(\S+)[^{};#]*\{\s*$")


def _blocks(draft: Draft, kind: str) -> list[tuple[int, int]]:
    """(opening line, closing line) of every block whose directive is ``kind``; the bases
    open and close one block per line, so braces are counted line by line."""
    found = []
    for index, line in enumerate(draft.lines):
        m = _OPEN.match(line)
        if m is None or m.group(1) != kind:
            continue
        depth = 0
        for end in range(index, len(draft.lines)):
            depth += draft.lines[end].count("{") - draft.lines[end].count("}")
            if depth <= 0:
                found.append((index, end))
                break
    return found


def _slots(draft: Draft, kind: str) -> list[int]:
    """Indexes where a line can be inserted directly inside a ``kind`` block (``main``:
    at the top level)."""
    spans = [(-1, len(draft.lines))] if kind == "main" else _blocks(draft, kind)
    slots = []
    for start, end in spans:
        depth = 0
        for index in range(start + 1, end + 1):
            if depth == 0:
                slots.append(index)
            if index < end:
                depth += draft.lines[index].count("{") - draft.lines[index].count("}")
    return slots


class NoPlace(LookupError):
    """An earlier mutation left nothing for this one to work on (the plan is dropped)."""


def _put(rng: random.Random, draft: Draft, kind: str, text: str) -> None:
    """Insert ``text`` (one or more lines) at a random place directly inside a ``kind``."""
    slots = _slots(draft, kind)
    if not slots:
        raise NoPlace(kind)
    at = rng.choice(slots) if len(slots) > 1 else slots[0]
    draft.lines[at:at] = text.split("\n")


def _directives(draft: Draft, name: str | None = None) -> list[int]:
    """Indexes of the lines that hold one simple directive (``name``, if given)."""
    out = []
    for index, line in enumerate(draft.lines):
        words = line.split()
        simple = line.rstrip().endswith(";") and "{" not in line and "}" not in line
        if words and simple and (name is None or words[0] == name):
            out.append(index)
    return out


def _pick(rng: random.Random, seq: Sequence[T]) -> T:
    """A random item that is not the mutation's first choice (``Nth`` enumerates those)."""
    return seq[rng.randrange(len(seq))]


def _set_args(rng: random.Random, draft: Draft, name: str, args: str) -> bool:
    """Give one ``name`` line the arguments ``args``; False if the draft has none."""
    lines = _directives(draft, name)
    if not lines:
        return False
    index = _pick(rng, lines)
    indent = draft.lines[index][: len(draft.lines[index]) - len(draft.lines[index].lstrip())]
    draft.lines[index] = f"{indent}{name} {args};" if args else f"{indent}{name};"
    return True


# --- mutations --------------------------------------------------------------------------

Mutation = Callable[[random.Random, Draft], str]


def m_brace(rng: random.Random, draft: Draft) -> str:
    choice = rng.choice(
        [
            "drop-close",
            "drop-open",
            "extra-close",
            "extra-open",
            "close-on-line",
            "open-alone",
            "directive-opens",
        ]
    )
    closes = [i for i, line in enumerate(draft.lines) if line.strip() == "}"]
    opens = [i for i, line in enumerate(draft.lines) if line.rstrip().endswith("{")]
    if choice == "drop-close":
        del draft.lines[_pick(rng, closes)]
    elif choice == "drop-open":
        index = _pick(rng, opens)
        draft.lines[index] = draft.lines[index].rstrip()[:-1]
    elif choice == "extra-close":
        draft.lines.insert(_pick(rng, closes), "}")
    elif choice == "extra-open":
        draft.lines.insert(_pick(rng, _directives(draft)), "    {")
    elif choice == "close-on-line":
        index = _pick(rng, _directives(draft))
        draft.lines[index] += " }"
    elif choice == "directive-opens":
        index = _pick(rng, _directives(draft))
        draft.lines[index] = draft.lines[index].rstrip()[:-1] + " {"
    else:
        index = _pick(rng, opens)
        draft.lines[index] = draft.lines[index].rstrip()[:-1]
        draft.lines.insert(index + 1, "{")
    return f"brace={choice}"


def m_semicolon(rng: random.Random, draft: Draft) -> str:
    choice = rng.choice(
        ["drop", "double", "stray-line", "after-close", "space-before", "file-start", "next-line"]
    )
    simple = _directives(draft)
    if choice == "drop":
        index = _pick(rng, simple)
        draft.lines[index] = draft.lines[index].rstrip()[:-1]
    elif choice == "double":
        draft.lines[_pick(rng, simple)] += ";"
    elif choice == "stray-line":
        draft.lines.insert(_pick(rng, simple), "    ;")
    elif choice == "after-close":
        closes = [i for i, line in enumerate(draft.lines) if line.strip() == "}"]
        draft.lines[_pick(rng, closes)] += ";"
    elif choice == "space-before":
        index = _pick(rng, simple)
        draft.lines[index] = draft.lines[index].rstrip()[:-1] + " ;"
    elif choice == "file-start":
        draft.lines.insert(0, ";")
    else:
        index = _pick(rng, simple)
        draft.lines[index] = draft.lines[index].rstrip()[:-1]
        draft.lines.insert(index + 1, "    ;")
    return f"semicolon={choice}"


QUOTES = (
    ("open-before-semicolon", "location", 'proxy_set_header X-Q "abc;'),
    ("quote-then-char", "server", 'server_name "a"b;'),
    ("single-quote-then-char", "server", "server_name 'a'b;"),
    ("single-unbalanced", "location", "proxy_set_header X-Q 'abc;"),
    ("empty-arg", "location", 'proxy_set_header X-Q "";'),
    ("empty-name", "location", '"" x;'),
    ("quoted-name", "location", '"proxy_read_timeout" 5s;'),
    ("quoted-brace", "server", 'location "/q" "{"'),
    ("quoted-semicolon", "location", 'proxy_set_header X-Q ";";'),
    ("quote-in-word", "location", 'proxy_set_header X-Q ab"c;'),
    ("quote-paren", "server", 'server_name "a")b;'),
    ("multiline-value", "location", 'proxy_set_header X-Q "a\n  b";'),
    ("quoted-block-name", "http", '"server" {\n listen 127.0.0.1:8099;\n}'),
)


def m_quote(rng: random.Random, draft: Draft) -> str:
    name, kind, text = rng.choice(QUOTES)
    _put(rng, draft, kind, text)
    return f"quote={name}"


def m_comment(rng: random.Random, draft: Draft) -> str:
    choice = rng.choice(
        [
            "comment-out-directive",
            "comment-out-opening",
            "trailing-braces",
            "in-word",
            "between-args",
            "after-semicolon",
            "last-line-no-eol",
            "quoted-hash",
            "hash-in-name",
        ]
    )
    simple = _directives(draft)
    if choice == "comment-out-directive":
        index = _pick(rng, simple)
        draft.lines[index] = "#" + draft.lines[index]
    elif choice == "comment-out-opening":
        opens = [i for i, line in enumerate(draft.lines) if line.rstrip().endswith("{")]
        index = _pick(rng, opens)
        draft.lines[index] = "# " + draft.lines[index]
    elif choice == "trailing-braces":
        index = _pick(rng, simple)
        draft.lines[index] += " # { } ; ' \""
    elif choice == "in-word":
        _put(rng, draft, "server", "server_name a#b;")
    elif choice == "between-args":
        _put(rng, draft, "location", "proxy_set_header # a comment\n  X-C # another\n  v;")
    elif choice == "after-semicolon":
        index = _pick(rng, simple)
        draft.lines[index] += "#x;}"
    elif choice == "last-line-no-eol":
        draft.lines.append("# the end")
        draft.final_eol = False
    elif choice == "quoted-hash":
        _put(rng, draft, "location", 'proxy_set_header X-C "#not a comment";')
    else:
        _put(rng, draft, "location", "proxy_read#timeout 5s;")
    return f"comment={choice}"


ESCAPES = (
    r'"a\"b"',
    r"'it\'s'",
    r"a\;b",
    r"a\ b",
    r'"tab\there"',
    r'"line\nbreak"',
    r"\\",
    r"back\\slash",
    r'"\x41"',
    r"a\{b",
    r'"ends with \\"',
    r"'\"'",
    r"\$host",
    '"a\\',
)


def m_escape(rng: random.Random, draft: Draft) -> str:
    value = rng.choice(ESCAPES)
    if rng.random() < 0.5:
        _put(rng, draft, "location", f"proxy_set_header X-E {value};")
    else:
        _put(rng, draft, "server", f"add_header X-E {value};")
    return f"escape={value}"


VARIABLES = (
    "$",
    "a$",
    "${host}",
    "${host",
    "${}",
    "$host{",
    "${ host }",
    "$1",
    "$arg_x",
    "$http_x_y",
    "$nosuchvar",
    "$$",
    "x$host$",
    '"$host"',
    "${host}s",
    "$HOST",
    "$Http_Upgrade",
    "$connection_upgrade$connection_upgrade",
    "${connection_upgrade}x",
    "'$'",
    "$9x",
    "$proxy_add_x_forwarded_for",
    "$upstream_http_x",
    "$cookie_a-b",
)
CARRIERS = (
    ("location", "proxy_set_header X-V {};"),
    ("server", "add_header X-V {};"),
    ("location", "return 200 {};"),
    ("map", "vkey {};"),
    ("location", "proxy_pass http://127.0.0.1:9/{};"),
    ("upstream", "hash {};"),
    ("http", "log_format v {};"),
)


def m_variable(rng: random.Random, draft: Draft) -> str:
    value = rng.choice(VARIABLES)
    kind, carrier = _pick(rng, CARRIERS)
    if kind == "location" and carrier.startswith(("return", "proxy_pass")):
        # one content handler per location: a location of its own
        _put(rng, draft, "server", "location /v/ {\n " + carrier.format(value) + "\n}")
    else:
        _put(rng, draft, kind, carrier.format(value))
    return f"variable={carrier.format(value)}"


def m_long(rng: random.Random, draft: Draft) -> str:
    choice = rng.choice(
        [
            "word-4000",
            "word-4095",
            "word-4096",
            "word-9000",
            "quoted-5000",
            "single-quoted-5000",
            "quoted-4000-spaces",
            "comment-5000",
            "name-5000",
            "variable-5000",
            "many-args",
            "quoted-5000-lines",
        ]
    )
    if choice.startswith("word-"):
        _put(rng, draft, "server", f"server_name {'a' * int(choice[5:])};")
    elif choice == "quoted-5000":
        _put(rng, draft, "location", f'proxy_set_header X-L "{"q" * 5000}";')
    elif choice == "single-quoted-5000":
        _put(rng, draft, "location", f"proxy_set_header X-L '{'q' * 5000}';")
    elif choice == "quoted-4000-spaces":
        _put(rng, draft, "location", f'proxy_set_header X-L "{"q " * 2000}";')
    elif choice == "comment-5000":
        _put(rng, draft, "server", "# " + "c" * 5000)
    elif choice == "name-5000":
        _put(rng, draft, "http", "x" * 5000 + " on;")
    elif choice == "variable-5000":
        _put(rng, draft, "location", f"proxy_set_header X-L ${'v' * 5000};")
    elif choice == "many-args":
        names = " ".join(f"n{i}.example" for i in range(900))
        _put(rng, draft, "server", f"server_name {names};")
    else:
        _put(rng, draft, "location", 'proxy_set_header X-L "' + "q\n" * 2500 + '";')
    return f"long={choice}"


def m_unicode(rng: random.Random, draft: Draft) -> str:
    choice = rng.choice(
        [
            "idn-server-name",
            "directive-name",
            "value",
            "bom",
            "comment",
            "location-path",
            "upstream-name",
            "nbsp-separator",
            "fullwidth-semicolon",
        ]
    )
    if choice == "idn-server-name":
        _put(rng, draft, "server", "server_name пример.рф;")
    elif choice == "directive-name":
        _put(rng, draft, "location", "proxy_réad_timeout 5s;")
    elif choice == "value":
        _put(rng, draft, "server", 'add_header X-U "héllo ✓";')
    elif choice == "bom":
        draft.lines[0] = "\ufeff" + draft.lines[0]
    elif choice == "comment":
        _put(rng, draft, "http", "# ünïcödé ✓ комментарий")
    elif choice == "location-path":
        _put(rng, draft, "server", "location /café/ {\n return 204;\n}")
    elif choice == "upstream-name":
        _put(rng, draft, "http", "upstream ünï {\n server 127.0.0.1:8009;\n}")
    elif choice == "nbsp-separator":
        _put(rng, draft, "location", "proxy_read_timeout\u00a05s;")
    else:
        _put(rng, draft, "location", "proxy_read_timeout 5s；")
    return f"unicode={choice}"


def m_eol(rng: random.Random, draft: Draft) -> str:
    choice = rng.choice(["crlf", "cr", "no-final-eol", "tabs", "one-line", "blank-lines", "mixed"])
    if choice == "crlf":
        draft.eol = "\r\n"
    elif choice == "cr":
        draft.eol = "\r"
    elif choice == "no-final-eol":
        draft.final_eol = False
    elif choice == "tabs":
        draft.lines = [line.replace("    ", "\t").replace(" ", "\t") for line in draft.lines]
    elif choice == "one-line":
        draft.lines = [" ".join(line.strip() for line in draft.lines)]
    elif choice == "blank-lines":
        draft.lines = [x for line in draft.lines for x in (line, "")]
    else:
        index = rng.randrange(1, len(draft.lines))
        draft.lines[index] = "\r" + draft.lines[index]
    return f"eol={choice}"


def m_empty(rng: random.Random, draft: Draft) -> str:
    choice = rng.choice(
        [
            ("empty", ""),
            ("newline", "\n"),
            ("whitespace", "  \t\r\n \n"),
            ("comments", "# nothing\n# here\n"),
            ("events-only", "events {}\n"),
            ("http-only", "http {}\n"),
            ("empty-blocks", "events { }\nhttp { server { } }\n"),
            ("semicolons", ";;\n"),
            ("braces", "{}\n"),
            ("close-only", "}\n"),
        ]
    )
    draft.text = choice[1]
    return f"file={choice[0]}"


# Directives nginx 1.22 (as built here) knows and wsgate does not: wsgate says
# `unknown directive` (docs/behavior.md, "Directives outside docs/directives.md").
NGINX_ONLY = frozenset(
    {
        "gzip",
        "root",
        "index",
        "rewrite",
        "proxy_buffers",
        "client_body_buffer_size",
        "resolver",
        "proxy_cache_valid",
        "server_names_hash_bucket_size",
        "proxy_hide_header",
        "ssl_stapling",
        "real_ip_header",
        "allow",
        "zone",
        "lingering_close",
        "sendfile_max_chunk",
        "worker_cpu_affinity",
        "proxy_pass_header",
    }
)

UNKNOWN = (
    ("location", "proxy_pas http://backend;"),
    ("location", "proxy_read_timeot 5s;"),
    ("server", "lisen 8080;"),
    ("location", "proxy_set_headers X y;"),
    ("server", "Listen 8080;"),
    ("http", "foo_bar;"),
    ("main", "foo_bar on;"),
    ("events", "worker_connection 10;"),
    ("upstream", "sever 127.0.0.1:1;"),
    ("http", "sever {\n}"),
    ("location", "proxy_pass_header;"),
    ("http", "gzip on;"),
    ("location", "root /srv;"),
    ("location", "index index.html;"),
    ("server", "rewrite ^/a$ /b last;"),
    ("location", "proxy_buffers 8 4k;"),
    ("http", "client_body_buffer_size 16k;"),
    ("http", "resolver 127.0.0.1;"),
    ("location", "proxy_cache_valid 200 1m;"),
    ("http", "server_names_hash_bucket_size 64;"),
    ("location", "proxy_hide_header X-Powered-By;"),
    ("server", "ssl_stapling on;"),
    ("http", "real_ip_header X-Forwarded-For;"),
    ("location", "allow 127.0.0.1;"),
    ("upstream", "zone backend 64k;"),
    ("http", "lingering_close on;"),
    ("location", "sendfile_max_chunk 1m;"),
    ("main", "worker_cpu_affinity auto;"),
)


def m_insert(name: str, options: Sequence[tuple[str, str]]) -> Mutation:
    def mutate(rng: random.Random, draft: Draft) -> str:
        kind, text = rng.choice(options)
        _put(rng, draft, kind, text)
        return f"{name}={kind}:{text.splitlines()[0]}"

    return mutate


WRONG_CONTEXT = (
    ("http", "listen 8080;"),
    ("server", "proxy_pass http://backend;"),
    ("http", "worker_connections 10;"),
    ("main", "proxy_read_timeout 5s;"),
    ("location", "upstream u2 {\n server 127.0.0.1:1;\n}"),
    ("server", "map $http_a $wc {\n}"),
    ("events", "server_name x;"),
    ("upstream", "listen 80;"),
    ("location", "server_name a;"),
    ("http", "server 127.0.0.1:1;"),
    ("main", "server {\n}"),
    ("location", "events {\n}"),
    ("http", "http {\n}"),
    ("upstream", "proxy_pass http://x;"),
    ("main", "location / {\n}"),
    ("server", "keepalive 4;"),
    ("location", "worker_processes 2;"),
    ("location", "log_format x '$status';"),
    ("location", "limit_conn_zone $binary_remote_addr zone=z:1m;"),
    ("http", "return 200;"),
    ("upstream", "location / {\n}"),
    ("events", "http {\n}"),
    ("map", "server {\n}"),
    ("http", "location /x {\n}"),
    ("main", "include mime.types;"),
    ("location", "listen 8080;"),
    ("server", "stub_status;"),
    ("http", "wsgate_status;"),
    ("events", "error_log stderr;"),
    ("location", "ssl_certificate x.pem;"),
    ("upstream", "keepalive_time 1h;\n keepalive_time 2h;"),
)

ARGC = (
    ("location", "proxy_read_timeout;"),
    ("location", "proxy_read_timeout 1s 2s;"),
    ("server", "listen;"),
    ("server", "server_name;"),
    ("location", "proxy_http_version;"),
    ("location", "proxy_set_header Host;"),
    ("location", "proxy_set_header A b c;"),
    ("http", "keepalive_timeout 1 2 3;"),
    ("server", "location / /x {\n}"),
    ("server", "location = / /x {\n}"),
    ("http", "map $http_a {\n}"),
    ("http", "map $http_a $b $c {\n}"),
    ("http", "upstream {\n server 127.0.0.1:1;\n}"),
    ("http", "upstream a b {\n server 127.0.0.1:1;\n}"),
    ("main", "worker_processes;"),
    ("server", "add_header X;"),
    ("server", "add_header X y always z;"),
    ("location", "return;"),
    ("location", "return 200 a b;"),
    ("http", "include;"),
    ("main", "error_log;"),
    ("http", "types x {\n}"),
    ("http", "server x {\n}"),
    ("http", "log_format x;"),
    ("http", "access_log;"),
    ("upstream", "ip_hash x;"),
    ("upstream", "hash;"),
    ("upstream", "random two least_conn x;"),
    ("upstream", "server;"),
    ("location", "proxy_pass;"),
    ("location", "proxy_pass a b;"),
    ("location", "proxy_redirect;"),
    ("location", "proxy_redirect a b c;"),
    ("http", "limit_conn_zone $a;"),
    ("location", "limit_conn perip;"),
    ("server", "ssl_protocols;"),
    ("location", "stub_status on off;"),
    ("main", "user a b c;"),
    ("events", "use;"),
)

VALUES = (
    ("location", "proxy_read_timeout 5x;"),
    ("location", "proxy_read_timeout -1;"),
    ("location", "proxy_read_timeout 1y;"),
    ("location", "proxy_read_timeout 30m1h;"),
    ("location", "proxy_read_timeout 1.5s;"),
    ("location", "proxy_read_timeout '';"),
    ("location", "proxy_read_timeout 1h30;"),
    ("location", "proxy_read_timeout 9223372036854775807;"),
    ("location", "proxy_send_timeout 1d 2h;"),
    ("location", 'proxy_send_timeout "1d 2h";'),
    ("location", "proxy_connect_timeout 0;"),
    ("location", "proxy_buffer_size 10q;"),
    ("location", "proxy_buffer_size 1g;"),
    ("location", "proxy_buffer_size -1;"),
    ("location", "proxy_buffer_size 1K;"),
    ("location", "proxy_buffer_size 99999999999999999999;"),
    ("location", "client_max_body_size 10q;"),
    ("location", "client_max_body_size 2G;"),
    ("location", "client_max_body_size '';"),
    ("http", "keepalive_requests -1;"),
    ("http", "keepalive_requests 1k;"),
    ("http", "keepalive_requests 99999999999999999999;"),
    ("location", "proxy_next_upstream_tries abc;"),
    ("main", "worker_rlimit_nofile -1;"),
    ("main", "worker_processes -1;"),
    ("main", "worker_processes 0;"),
    ("main", "worker_processes Auto;"),
    ("events", "worker_connections -1;"),
    ("events", "worker_connections 0;"),
    ("location", "proxy_buffering On;"),
    ("location", "proxy_buffering yes;"),
    ("location", "proxy_buffering of;"),
    ("location", "proxy_buffering 1;"),
    ("events", "multi_accept ON;"),
    ("main", "master_process maybe;"),
    ("location", "proxy_http_version 2;"),
    ("location", "proxy_http_version 1.1.1;"),
    ("location", "proxy_next_upstream http_418;"),
    ("location", "proxy_next_upstream off error;"),
    ("http", "keepalive_timeout 5x;"),
    ("http", "keepalive_timeout 5s 500ms;"),
    ("http", "large_client_header_buffers 4 0;"),
    ("http", "large_client_header_buffers x 8k;"),
    ("http", "server_tokens build;"),
    ("http", "server_tokens yes;"),
    ("location", "limit_conn_status 399;"),
    ("location", "limit_conn_log_level debug;"),
    ("server", "ssl_protocols TLSv1.4;"),
    ("server", "ssl_session_cache bogus;"),
    ("server", "ssl_session_timeout 1ms;"),
    ("server", "return 99 x;"),
    ("server", "return 0;"),
    ("server", "return 301;"),
    ("server", "return /relative;"),
    ("server", "return -1;"),
    ("server", "return 1000 x;"),
    ("http", "error_log stderr bogus;"),
    ("main", "error_log stderr info info;"),
    ("http", "access_log logs/a.log ws buffer=x;"),
    ("http", "log_format ws2 escape=bogus '$status';"),
    ("location", "proxy_redirect bogus;"),
    ("location", "proxy_redirect off;\n proxy_redirect default;"),
    ("location", "limit_conn nosuchzone 1;"),
    ("http", "limit_conn_zone $binary_remote_addr zone=z:1x;"),
    ("http", "limit_conn_zone $binary_remote_addr zone=z;"),
    ("http", "limit_conn_zone $binary_remote_addr z:1m;"),
    ("location", "proxy_upgrade_protocols any websocket;"),
    ("location", "websocket_drain maybe;"),
    ("location", "websocket_max_frame_size 1q;"),
    ("location", "add_header X y sometimes;"),
    ("http", "types_hash_max_size 1k;"),
    ("http", "types_hash_bucket_size 1q;"),
    ("location", "proxy_ssl_protocols SSLv1;"),
)


def m_duplicate(rng: random.Random, draft: Draft) -> str:
    simple = _directives(draft)
    index = simple[rng.choice(range(len(simple)))]
    draft.lines.insert(index + 1, draft.lines[index])
    return f"duplicate={draft.lines[index].strip()}"


REGEXES = (
    "^/(a",
    "^/a)",
    "[a-",
    "*x",
    "a{2,1}",
    "(?<n>x)",
    "(?P<n>x)",
    "\\",
    "x++",
    "(?i)x",
    "a**",
    "(?<n>a)(?<n>b)",
    "[z-a]",
    "(?<1n>x)",
    "\\k<nope>",
    "(?",
    "a|*",
    "\\p{L}",
    "(?<name>[^/]+)/\\g{name}",
    "^/\\d+$",
)


def m_regex(rng: random.Random, draft: Draft) -> str:
    pattern = rng.choice(REGEXES)
    where = _pick(rng, ["location", "location-ci", "map", "server_name"])
    quoted = '"' + pattern.replace("\\", "\\\\") + '"'
    if where == "location":
        _put(rng, draft, "server", f"location ~ {quoted} {{\n return 204;\n}}")
    elif where == "location-ci":
        _put(rng, draft, "server", f"location ~* {quoted} {{\n return 204;\n}}")
    elif where == "map":
        _put(rng, draft, "map", f'"~{pattern.replace(chr(92), chr(92) * 2)}" rx;')
    else:
        _put(rng, draft, "server", f'server_name "~{pattern.replace(chr(92), chr(92) * 2)}";')
    return f"regex={where}:{pattern}"


LISTENS = (
    "0",
    "65536",
    "127.0.0.1:",
    ":80",
    "[::1",
    "[::1]:8080",
    "[::1]",
    "*:8080",
    "*",
    "localhost:8080",
    "8080 default_server default_server",
    "8080 default",
    "8080 ssl",
    "8080 http2",
    "unix:/tmp/x.sock",
    "8080 backlog=x",
    "8080 bogus",
    "-1",
    "80a",
    "999.1.1.1:80",
    "nosuch.invalid:80",
    "127.0.0.1:8080 reuseport",
    "127.0.0.1:8080 so_keepalive=on",
    "127.0.0.1:8080 proxy_protocol",
    "8080 ipv6only=on",
    "0.0.0.0",
    "127.1:8080",
)


def m_listen(rng: random.Random, draft: Draft) -> str:
    value = rng.choice(LISTENS)
    _set_args(rng, draft, "listen", value)
    return f"listen={value}"


NAMES = (
    # (each base has one of the two upstreams)
    (
        "http",
        "upstream backend {\n server 127.0.0.1:1;\n}\nupstream pool {\n server 127.0.0.1:1;\n}",
    ),
    (
        "http",
        "upstream POOL {\n server 127.0.0.1:1;\n}\nupstream Backend {\n server 127.0.0.1:1;\n}",
    ),
    ("server", "location / {\n return 204;\n}"),
    ("server", "location = /status {\n return 204;\n}"),
    ("server", "location ~ ^/ws/(?<room>[a-z]+)$ {\n return 204;\n}"),
    ("server", "location ^~ / {\n return 204;\n}"),
    ("http", "map $http_x $connection_upgrade {\n}"),
    ("http", "map $http_x $host {\n}"),
    ("http", "log_format ws '$status';"),
    ("http", "log_format combined '$status';"),
    ("http", "server {\n listen 127.0.0.1:8080;\n server_name example.com;\n}"),
    ("http", "server {\n listen 127.0.0.1:8080 default_server;\n}"),
    ("http", "server {\n listen 127.0.0.1:8081 default_server;\n}"),
    ("server", "listen 127.0.0.1:8080;\n listen 127.0.0.1:8080;"),
    ("http", "limit_conn_zone $binary_remote_addr zone=perip:1m;"),
    ("http", "limit_conn_zone $uri zone=z2:1m;\n limit_conn_zone $uri zone=z2:1m;"),
    ("upstream", "server 127.0.0.1:8001;"),
)

PROXY_PASSES = (
    "http://backend/",
    "http://backend:8080",
    "HTTP://backend",
    "https://backend",
    "http://backend/$uri",
    "http://$host",
    "ftp://x",
    "backend",
    "http://",
    "http://127.0.0.1:0",
    "http://[::1]:9",
    "http://[::1",
    '"http://127.0.0.1:9/a b"',
    "http://nosuch.invalid",
    "http://unix:/tmp/x.sock:",
    "http://backend?x",
    "http://127.0.0.1:9999999",
    "http://localhost",
    "http://127.0.0.1:9/$request_uri",
    "http://pool",
    "http://127.0.0.1:9/",
    "http://:80",
    "http://backend:",
    "https://127.0.0.1",
    "http://Backend",
)


def m_proxy_pass(rng: random.Random, draft: Draft) -> str:
    value = rng.choice(PROXY_PASSES)
    _set_args(rng, draft, "proxy_pass", value)
    return f"proxy_pass={value}"


MAPS = (
    "default-removed",
    "default-twice",
    "key-twice",
    "key-case",
    "three-params",
    "one-param",
    "block-entry",
    "hostnames",
    "volatile",
    "include-missing",
    "include-file",
    "empty-key-twice",
    "regex-key-bad",
    "regex-named",
    "hostnames-conflict",
    "source-literal",
    "target-no-dollar",
    "default-variable",
    "default-unknown-variable",
    "escaped-tilde",
)


def m_map(rng: random.Random, draft: Draft) -> str:
    choice = rng.choice(MAPS)
    if choice == "default-removed":
        lines = [i for i, line in enumerate(draft.lines) if line.strip().startswith("default ")]
        del draft.lines[lines[0]]
    elif choice == "default-twice":
        _put(rng, draft, "map", "default keep;")
    elif choice == "key-twice":
        _put(rng, draft, "map", "websocket a;\n websocket b;")
    elif choice == "key-case":
        _put(rng, draft, "map", "WebSocket a;\n websocket b;")
    elif choice == "three-params":
        _put(rng, draft, "map", "a b c;")
    elif choice == "one-param":
        _put(rng, draft, "map", "a;")
    elif choice == "block-entry":
        _put(rng, draft, "map", "a {\n}")
    elif choice == "hostnames":
        _put(rng, draft, "map", "hostnames;\n *.example.com a;\n .example.org b;")
    elif choice == "volatile":
        _put(rng, draft, "map", "volatile;")
    elif choice == "include-missing":
        _put(rng, draft, "map", "include map-missing.conf;")
    elif choice == "include-file":
        draft.files["map.conf"] = "x1 a;\nx2 b;\nx3;\n"
        _put(rng, draft, "map", "include map.conf;")
    elif choice == "empty-key-twice":
        _put(rng, draft, "map", '"" again;')
    elif choice == "regex-key-bad":
        _put(rng, draft, "map", "~^(a b;")
    elif choice == "regex-named":
        _put(rng, draft, "map", "~^(?<proto>h2c)$ $proto;")
    elif choice == "hostnames-conflict":
        _put(rng, draft, "map", "hostnames;\n .example.com a;\n example.com b;")
    elif choice == "source-literal":
        _put(rng, draft, "http", "map literal $ml {\n default 1;\n}")
    elif choice == "target-no-dollar":
        _put(rng, draft, "http", "map $http_a ml {\n default 1;\n}")
    elif choice == "default-variable":
        _put(rng, draft, "http", "map $http_a $ml {\n default $host;\n}")
    elif choice == "default-unknown-variable":
        _put(rng, draft, "http", "map $http_a $ml {\n default $nosuch;\n}")
    else:
        _put(rng, draft, "map", "\\~tilde a;")
    return f"map={choice}"


def m_include(rng: random.Random, draft: Draft) -> str:
    choice = rng.choice(
        [
            "missing",
            "missing-absolute-glob",
            "glob-none",
            "file",
            "file-with-error",
            "file-unbalanced-open",
            "file-unbalanced-close",
            "two-args",
            "in-location",
            "nested",
            "block-in-file",
            "directory",
            "empty-file",
            "no-final-semicolon",
        ]
    )
    if choice == "missing":
        _put(rng, draft, "http", "include missing.conf;")
    elif choice == "missing-absolute-glob":
        _put(rng, draft, "http", "include /nonexistent-dir-x/*.conf;")
    elif choice == "glob-none":
        _put(rng, draft, "server", "include none.d/*.conf;")
    elif choice == "file":
        draft.files["conf.d/a.conf"] = "proxy_set_header X-Inc 1;\nproxy_send_timeout 7s;\n"
        _put(rng, draft, "location", "include conf.d/*.conf;")
    elif choice == "file-with-error":
        draft.files["inc.conf"] = "# inc\n\nproxy_send_timeout 7x;\n"
        _put(rng, draft, "location", "include inc.conf;")
    elif choice == "file-unbalanced-open":
        draft.files["inc.conf"] = "location /inc/ {\n return 204;\n"
        _put(rng, draft, "server", "include inc.conf;")
    elif choice == "file-unbalanced-close":
        draft.files["inc.conf"] = "return 204;\n}\n"
        _put(rng, draft, "server", "include inc.conf;")
    elif choice == "two-args":
        _put(rng, draft, "http", "include a.conf b.conf;")
    elif choice == "in-location":
        draft.files["loc.conf"] = "proxy_read_timeout 9s;\n"
        _put(rng, draft, "location", "include loc.conf;")
    elif choice == "nested":
        draft.files["outer.conf"] = "include inner.conf;\n"
        draft.files["inner.conf"] = "\n\nlisten bogus:port;\n"
        _put(rng, draft, "server", "include outer.conf;")
    elif choice == "block-in-file":
        draft.files["up.conf"] = "upstream inc {\n  server 127.0.0.1:8009;\n}\n"
        _put(rng, draft, "http", "include up.conf;")
    elif choice == "directory":
        draft.files["dir.d/x.conf"] = "\n"
        _put(rng, draft, "http", "include dir.d;")
    elif choice == "empty-file":
        draft.files["empty.conf"] = ""
        _put(rng, draft, "events", "include empty.conf;")
    else:
        draft.files["nosemi.conf"] = "proxy_read_timeout 9s"
        _put(rng, draft, "location", "include nosemi.conf;")
    return f"include={choice}"


SERVERS = (
    "127.0.0.1:8001 weight=0",
    "127.0.0.1:8001 weight=-1",
    "127.0.0.1:8001 weight=",
    "127.0.0.1:8001 max_fails=x",
    "127.0.0.1:8001 fail_timeout=1ms",
    "127.0.0.1:8001 fail_timeout=1x",
    "127.0.0.1:8001 down",
    "127.0.0.1:8001 slow_start=1s",
    "127.0.0.1:8001 resolve",
    "127.0.0.1:8001 max_conns=0",
    "127.0.0.1:0",
    "localhost:8001",
    "127.0.0.1:99999",
    "nosuch.invalid",
    "127.0.0.1:8001 weight=1 weight=2",
    "127.0.0.1:8001 backup",
    "http://127.0.0.1:8001",
    "127.0.0.1:8001/path",
    "[::1]:8001",
    "127.0.0.1:8001 route=a",
    "127.0.0.1:8001 Weight=2",
)


def m_upstream_server(rng: random.Random, draft: Draft) -> str:
    value = rng.choice(SERVERS)
    _set_args(rng, draft, "server", value)
    if rng.random() < 0.3:
        _put(rng, draft, "upstream", _pick(rng, ["ip_hash;", "hash $remote_addr;", "random;"]))
    return f"upstream-server={value}"


STRUCTURES = (
    "no-events",
    "no-http",
    "empty-server",
    "empty-location",
    "empty-upstream",
    "nested-location-ok",
    "nested-location-outside",
    "nested-in-exact",
    "nested-regex",
    "events-in-http",
    "http-first",
    "two-http",
    "two-events",
    "server-no-locations",
    "location-no-slash",
    "location-empty-name",
    "location-modifier-alone",
    "location-bad-modifier",
    "if-block",
    "named-location",
    "nested-depth",
    "empty-types",
    "empty-map",
    "server-upstream-only",
)


def m_structure(rng: random.Random, draft: Draft) -> str:
    choice = rng.choice(STRUCTURES)

    def drop_block(kind: str) -> None:
        start, end = _blocks(draft, kind)[0]
        del draft.lines[start : end + 1]

    if choice == "no-events":
        drop_block("events")
    elif choice == "no-http":
        drop_block("http")
    elif choice == "empty-server":
        _put(rng, draft, "http", "server {\n}")
    elif choice == "empty-location":
        _put(rng, draft, "server", "location /empty/ {\n}")
    elif choice == "empty-upstream":
        _put(rng, draft, "http", "upstream nothing {\n}")
    elif choice == "nested-location-ok":
        _put(rng, draft, "server", "location /a/ {\n location /a/b/ {\n  return 204;\n }\n}")
    elif choice == "nested-location-outside":
        _put(rng, draft, "server", "location /a/ {\n location /b/ {\n  return 204;\n }\n}")
    elif choice == "nested-in-exact":
        _put(rng, draft, "server", "location = /x {\n location /x {\n }\n}")
    elif choice == "nested-regex":
        _put(rng, draft, "server", "location ~ ^/r {\n location ~ ^/r/s {\n  return 204;\n }\n}")
    elif choice == "events-in-http":
        _put(rng, draft, "http", "events {\n}")
    elif choice == "http-first":
        start, end = _blocks(draft, "http")[0]
        block = draft.lines[start : end + 1]
        del draft.lines[start : end + 1]
        draft.lines[0:0] = block
    elif choice == "two-http":
        draft.lines += ["http {", "}"]
    elif choice == "two-events":
        draft.lines += ["events {", "}"]
    elif choice == "server-no-locations":
        _put(rng, draft, "http", "server {\n listen 127.0.0.1:8090;\n}")
    elif choice == "location-no-slash":
        _put(rng, draft, "server", "location api {\n return 204;\n}")
    elif choice == "location-empty-name":
        _put(rng, draft, "server", 'location "" {\n return 204;\n}')
    elif choice == "location-modifier-alone":
        _put(rng, draft, "server", "location ~ {\n return 204;\n}")
    elif choice == "location-bad-modifier":
        _put(rng, draft, "server", "location ^ /x {\n return 204;\n}")
    elif choice == "if-block":
        _put(rng, draft, "location", "if ($http_upgrade = '') {\n return 426;\n}")
    elif choice == "named-location":
        _put(rng, draft, "server", "location @fallback {\n return 204;\n}")
    elif choice == "nested-depth":
        inner = "location /d/d/d/d/ {\n return 204;\n}"
        for path in ("/d/d/d/", "/d/d/", "/d/"):
            inner = f"location {path} {{\n{inner}\n}}"
        _put(rng, draft, "server", inner)
    elif choice == "empty-types":
        _put(rng, draft, "http", "types {\n}")
    elif choice == "empty-map":
        _put(rng, draft, "http", "map $http_a $empty_map {\n}")
    else:
        start, end = _blocks(draft, "server")[0]
        del draft.lines[start : end + 1]
    return f"structure={choice}"


MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "brace": (m_brace, "lexer"),
    "semicolon": (m_semicolon, "lexer"),
    "quote": (m_quote, "lexer"),
    "comment": (m_comment, "lexer"),
    "escape": (m_escape, "lexer"),
    "variable": (m_variable, "lexer"),
    "long": (m_long, "lexer"),
    "unicode": (m_unicode, "lexer"),
    "eol": (m_eol, "lexer"),
    "empty": (m_empty, "lexer"),
    "unknown": (m_insert("unknown", UNKNOWN), "directive"),
    "context": (m_insert("context", WRONG_CONTEXT), "directive"),
    "argc": (m_insert("argc", ARGC), "directive"),
    "value": (m_insert("value", VALUES), "directive"),
    "duplicate": (m_duplicate, "directive"),
    "regex": (m_regex, "directive"),
    "listen": (m_listen, "directive"),
    "names": (m_insert("names", NAMES), "directive"),
    "proxy_pass": (m_proxy_pass, "directive"),
    "map": (m_map, "directive"),
    "include": (m_include, "directive"),
    "upstream-server": (m_upstream_server, "directive"),
    "structure": (m_structure, "structure"),
}

# Mutations that can make a file in which later ones find nothing to work on.
_NOT_FIRST = frozenset({"empty", "eol", "structure"})


@dataclass(frozen=True, slots=True)
class FuzzCase:
    id: str  # k000 ...
    base: str
    tags: tuple[str, ...]
    text: str
    files: tuple[tuple[str, str], ...]


class Nth(random.Random):
    """A generator whose ``choice`` takes option ``n`` (one case per option); the rest is
    seeded randomness."""

    def __init__(self, n: int, seed: int) -> None:
        super().__init__(seed)
        self.n = n
        self.sizes: list[int] = []

    def choice(self, seq: Sequence[T]) -> T:
        self.sizes.append(len(seq))
        return seq[self.n % len(seq)]


def _options(name: str) -> int:
    """How many options the mutation's first choice has."""
    probe = Nth(0, SEED)
    MUTATIONS[name][0](probe, Draft(list(ARTICLE)))
    return probe.sizes[0]


def generate(seed: int = SEED, combined: int = COMBINED) -> list[FuzzCase]:
    """Each option of each mutation alone (on the two bases in turn), then ``combined``
    cases of two or three mutations. Cases with the same files as an earlier one are left
    out."""
    rng = random.Random(seed)
    plans: list[tuple[str, list[str], random.Random]] = []
    for order, name in enumerate(MUTATIONS):
        for n in range(_options(name)):
            base = sorted(BASES)[(n + order) % len(BASES)]
            plans.append((base, [name], Nth(n, seed + n)))
    for _ in range(combined):
        names = rng.sample(sorted(MUTATIONS), rng.choice([2, 2, 3]))
        names.sort(key=lambda name: name in _NOT_FIRST)  # those last
        plans.append((rng.choice(sorted(BASES)), names, rng))
    cases: list[FuzzCase] = []
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for base, names, picker in plans:
        draft = Draft(list(BASES[base]))
        tags = []
        try:
            for name in names:
                if draft.text is not None:
                    break  # the file was replaced as a whole
                tags.append(MUTATIONS[name][0](picker, draft))
        except LookupError:  # NoPlace, or nothing left to pick from
            assert len(names) > 1, names
            continue
        key = (draft.render(), tuple(sorted(draft.files.items())))
        if key in seen:
            continue
        seen.add(key)
        cases.append(FuzzCase(f"k{len(cases):03d}", base, tuple(tags), *key))
    return cases


# --- running both -----------------------------------------------------------------------


def _write_files(prefix: Path, case: FuzzCase) -> None:
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    for rel, text in case.files:
        path = prefix / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def run_nginx(case: FuzzCase, tmp: Path) -> Outcome:
    """``nginx -t`` on the case in ``tmp/nginx`` (see ``tests.support.nginx.nginx_test``)."""
    _write_files(tmp / "nginx", case)
    rc, stderr = nginx_test(case.text, tmp)
    return rc, tuple(_normalise(stderr, tmp / "nginx", nginx=True))


def run_wsgate(case: FuzzCase, tmp: Path) -> Outcome:
    """``wsgate proxy -t -c tmp/nginx/nginx.conf``, in this process."""
    prefix = tmp / "nginx"
    _write_files(prefix, case)
    conf = prefix / "nginx.conf"
    conf.write_text(case.text, encoding="utf-8")
    err = io.StringIO()
    with redirect_stderr(err):
        rc = wsgate_proxy(["-t", "-c", str(conf)])
    return rc, tuple(_normalise(err.getvalue(), prefix, nginx=False))


# --- documented differences -------------------------------------------------------------

# The rows of docs/behavior.md's "Known differences from nginx" that the classifier
# cites, by the text their first cell starts with.
ROWS = {
    "unsupported": "| Not supported yet (clear error) |",
    "nginx-only": "| Directives outside docs/directives.md |",
    "wsgate-only": "| wsgate's own directives |",
    "regex": "| Regex |",
}

# wsgate's own directives (docs/directives.md): nginx says `unknown directive`.
WSGATE_ONLY = frozenset(
    {
        "proxy_upgrade_protocols",
        "websocket_drain",
        "websocket_health_check",
        "websocket_max_frame_size",
        "websocket_max_message_size",
        "websocket_ping_interval",
        "websocket_ping_timeout",
        "websocket_ping_upstream",
        "wsgate_metrics",
        "wsgate_status",
    }
)

_EMERG = re.compile(r"^\[emerg\] (.*) in PREFIX/(\S+):(\d+)$")
_UNSUPPORTED = (
    ('"if" directive is not supported by wsgate yet', "if"),
    ("named locations are not supported by wsgate in ", "@"),
    ('variables in the host part of "proxy_pass" are not supported by wsgate in ', "$"),
    ("unix domain sockets are not supported by wsgate in ", "unix:"),
    ('variables in the "access_log" path are not supported by wsgate in ', "$"),
    ('the "proxy_protocol" parameter is not supported by wsgate yet', "proxy_protocol"),
)
_PCRE = re.compile(r'pcre2_compile\(\) failed: .* in "(.*?)"(?: at ".*")?')
_UNKNOWN = re.compile(r'unknown directive "([^"]+)"')


def _emerg(outcome: Outcome) -> tuple[str, str, int] | None:
    """The one ``[emerg]`` line of a refusal, as (message, file, line), if it has a place."""
    lines = [line for line in outcome[1] if line.startswith("[emerg] ")]
    if outcome[0] != 1 or len(lines) != 1:
        return None
    m = _EMERG.match(lines[0])
    return None if m is None else (m[1], m[2], int(m[3]))


def _line_text(case: FuzzCase, file: str, line: int) -> str:
    text = case.text if file == "nginx.conf" else dict(case.files).get(file, "")
    lines = text.split("\n")
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _before(first: tuple[str, str, int], then: tuple[str, str, int] | None) -> bool:
    """``first`` is at an earlier line of the same file than ``then``, or ``then`` is a
    refusal without a place (checks made after the whole file was read)."""
    return then is None or (first[1] == then[1] and first[2] < then[2])


def documented(case: FuzzCase, nginx: Outcome, wsgate: Outcome) -> str | None:
    """The documented difference (docs/behavior.md, "Known differences from nginx") that
    explains wsgate's outcome for this case, else None.

    * wsgate refuses, with its own message in ``FILE:LINE`` form at the line of the
      statement that names the feature, what nginx accepts, or refuses only for a reason
      found later (a later line, or a check made after the whole file was read):
      features not supported yet, nginx directives wsgate does not have, PCRE syntax
      that Python's ``re`` does not know;
    * both refuse at the same place, with PCRE2's and ``re``'s different words for the
      same bad regex;
    * nginx does not know a directive of wsgate's own: ``unknown directive`` at that
      line, where wsgate accepts it or finds something at that line or later.
    """
    ws, ng = _emerg(wsgate), _emerg(nginx)
    if ng is not None:
        m = _UNKNOWN.fullmatch(ng[0])
        named = m is not None and m[1] in WSGATE_ONLY and m[1] in _line_text(case, *ng[1:])
        if named and (wsgate[0] == 0 or ws is None or ws[1:] == ng[1:] or _before(ng, ws)):
            return ROWS["wsgate-only"]
    if ws is None:
        return None
    message, file, line = ws
    text = _line_text(case, file, line)
    m = _PCRE.fullmatch(message)
    if m is not None and ng is not None and ng[1:] == ws[1:]:
        n = _PCRE.fullmatch(ng[0])
        if n is not None and n[1] == m[1]:
            return ROWS["regex"]
    if nginx[0] == 1 and not _before(ws, ng):
        m = _UNKNOWN.fullmatch(message)
        if (
            ng is not None
            and ng[1:] == ws[1:]
            and m is not None
            and m[1] in NGINX_ONLY
            and f'"{m[1]}"' in ng[0]
            and m[1] in text
        ):
            return ROWS["nginx-only"]  # nginx's own check of that directive, same place
        return None
    for words, token in _UNSUPPORTED:
        if message.startswith(words) and token in text:
            return ROWS["unsupported"]
    m = _UNKNOWN.fullmatch(message)
    if m is not None and m[1] in NGINX_ONLY and m[1] in text:
        return ROWS["nginx-only"]
    m = _PCRE.fullmatch(message)
    if m is not None and m[1].replace("\\\\", "\\") in text.replace("\\\\", "\\"):
        return ROWS["regex"]
    return None


# --- the test ---------------------------------------------------------------------------


Row = fuzz.Row[FuzzCase, Outcome]


@dataclass(frozen=True, slots=True)
class Results:
    cases: list[FuzzCase]
    nginx: dict[str, Outcome]
    wsgate: dict[str, Outcome]

    def differences(self) -> list[Row]:
        return fuzz.differences(self.cases, lambda c: c.id, self.nginx, self.wsgate, documented)


def _verdict(outcome: Outcome) -> str:
    return f"rc={outcome[0]} " + " | ".join(fuzz.shorten(x, 300) for x in outcome[1])


def table(rows: Sequence[Row]) -> str:
    """The differences, one block per case."""
    out = []
    for row in rows:
        case = row.case
        out.append(
            f"--- {case.id} [{case.base}] {' + '.join(fuzz.shorten(t, 80) for t in case.tags)}"
            f"  ({row.reason or 'UNDOCUMENTED'})"
        )
        out.append(f"     nginx: {_verdict(row.nginx)}")
        out.append(f"    wsgate: {_verdict(row.wsgate)}")
    return "\n".join(out)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    assert os.access(NGINX, os.X_OK), f"nginx is needed for this test and not found: {NGINX}"
    cases = generate()
    tmp = tmp_path_factory.mktemp("conf-fuzz")
    with ThreadPoolExecutor(NGINX_LANES) as pool:
        pending = {c.id: pool.submit(run_nginx, c, tmp / "ng" / c.id) for c in cases}
        wsgate = {c.id: run_wsgate(c, tmp / "ws" / c.id) for c in cases}
        nginx = {key: future.result() for key, future in pending.items()}
    found = Results(cases, nginx, wsgate)
    (tmp / "differences.txt").write_text(table(found.differences()), encoding="utf-8")
    return found


def test_cases_are_deterministic() -> None:
    first, second = generate(), generate()
    assert [(c.text, c.files) for c in first] == [(c.text, c.files) for c in second]
    assert 300 <= len(first) <= 600, len(first)


# nginx messages the generator must reach (else the mutations test less than they say).
REACHED = (
    "unexpected end of file",
    'unexpected "}"',
    'unexpected ";"',
    'unexpected "{"',
    "is not terminated by",
    "has no opening",
    "unknown directive",
    "is not allowed here",
    "invalid number of arguments",
    "is duplicate",
    "invalid value",
    "too long parameter",
    "pcre2_compile() failed",
    "invalid port",
    "host not found",
    "open() ",
    'no "events" section',
    "invalid parameter",
    "unknown log format",
    "duplicate upstream",
    "duplicate location",
    "is outside location",
    "invalid variable name",
    'unknown "',
)


def test_nginx_sees_what_the_cases_name(results: Results) -> None:
    """Both verdicts are common, and nginx gives each kind of message in REACHED."""
    verdicts = Counter(results.nginx[c.id][0] for c in results.cases)
    assert verdicts[0] > 50 and verdicts[1] > 150, verdicts
    messages = [line for outcome in results.nginx.values() for line in outcome[1]]
    for words in REACHED:
        assert any(words in line for line in messages), f"no case makes nginx say {words!r}"


def test_exclusions_are_documented_and_used(results: Results) -> None:
    """Each row the classifier cites is in docs/behavior.md and still explains a case."""
    fuzz.assert_rows_documented_and_used(ROWS.values(), results.differences())


def test_no_undocumented_difference(results: Results) -> None:
    fuzz.assert_all_documented(len(results.cases), results.differences(), table)
