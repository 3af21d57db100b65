"""``wsgate.conf.build.load``: configuration text -> frozen model (nginx-semantics.md
sections 1.1-1.3, 6.4: the seed config, inheritance, defaults, include, variables,
implicit upstreams). Hostnames are only ``127.0.0.1`` and ``localhost``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wsgate.conf.build import load
from wsgate.conf.model import (
    HttpConf,
    ListenConf,
    LocationConf,
    MainConf,
    NextUpstream,
    PeerConf,
    ProxyPass,
    ServerConf,
)
from wsgate.errors import ConfigError

FILE = "/etc/wsgate/nginx.conf"  # never read: every test passes text= or writes tmp files

SEED = """\
events { worker_connections 1024; }
http {
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
    }
    upstream backend {
        server 127.0.0.1:8001;
        server 127.0.0.1:8002;
    }
    server {
        listen 80;
        server_name example.com;
        access_log logs/ws.access.log;
        location / {
            proxy_pass http://backend;
            proxy_read_timeout 300s;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }
    }
}
"""


def _http(conf: MainConf) -> HttpConf:
    assert conf.http is not None
    return conf.http


def _headers(loc: LocationConf) -> list[tuple[str, str]]:
    """proxy_set_header as (name, value text), in order."""
    return [(name, value.text) for name, value in loc.proxy_set_header]


def _server(text: str, index: int = 0) -> ServerConf:
    return _http(load(FILE, text=text)).servers[index]


def _locations(server: ServerConf) -> dict[str, LocationConf]:
    return {loc.name: loc for loc in server.locations}


# ---------------------------------------------------------------------------------------
# The seed article's configuration (section 1)


@pytest.fixture(scope="module")
def seed() -> MainConf:
    return load(FILE, text=SEED)


def test_seed_main_and_events(seed: MainConf) -> None:
    assert seed.file == FILE
    assert seed.events.worker_connections == 1024
    assert seed.worker_processes == 1
    assert seed.files == ((FILE, SEED),)


def test_seed_upstream_peers(seed: MainConf) -> None:
    http = _http(seed)
    assert list(http.upstreams) == ["backend"]
    up = http.upstreams["backend"]
    assert up.name == "backend"
    assert not up.implicit
    assert up.method == "round_robin"
    assert up.backups == ()
    assert up.peers == (
        PeerConf("127.0.0.1:8001", "127.0.0.1", 8001, "127.0.0.1:8001"),
        PeerConf("127.0.0.1:8002", "127.0.0.1", 8002, "127.0.0.1:8002"),
    )
    for p in up.peers:
        assert (p.weight, p.max_fails, p.fail_timeout, p.max_conns) == (1, 1, 10.0, 0)
        assert not p.down and not p.backup


def test_seed_map(seed: MainConf) -> None:
    http = _http(seed)
    assert list(http.maps) == ["connection_upgrade"]
    m = http.maps["connection_upgrade"]
    assert m.variable == "connection_upgrade"
    assert m.source.text == "$http_upgrade"
    assert m.source.variables == ("http_upgrade",)
    assert {k: v.text for k, v in m.exact.items()} == {"": "close"}
    assert m.default is not None and m.default.text == "upgrade"
    assert m.regexes == ()
    assert not m.hostnames and not m.volatile


def test_seed_server(seed: MainConf) -> None:
    (server,) = _http(seed).servers
    assert server.listen == (ListenConf("*", 80),)
    assert server.server_name == ("example.com",)
    assert [loc.name for loc in server.locations] == ["/"]
    assert server.line == 11


def test_seed_location(seed: MainConf) -> None:
    (loc,) = _http(seed).servers[0].locations
    assert (loc.name, loc.modifier, loc.regex) == ("/", "", None)
    assert loc.proxy_pass == ProxyPass("http://backend", "http", "backend", "backend", None)
    assert loc.proxy_read_timeout == 300.0
    assert loc.proxy_http_version == "1.1"
    assert _headers(loc) == [
        ("Host", "$host"),
        ("X-Real-IP", "$remote_addr"),
        ("X-Forwarded-For", "$proxy_add_x_forwarded_for"),
        ("Upgrade", "$http_upgrade"),
        ("Connection", "$connection_upgrade"),
    ]
    assert loc.auto_redirect is True
    # inherited from the server level
    assert [(a.path, a.format.name) for a in loc.access_log] == [("logs/ws.access.log", "combined")]
    # defaults
    assert loc.proxy_connect_timeout == 60.0
    assert loc.proxy_send_timeout == 60.0
    assert loc.proxy_next_upstream == NextUpstream.ERROR | NextUpstream.TIMEOUT


# ---------------------------------------------------------------------------------------
# Inheritance http -> server -> location (section 6.4)

INHERIT = """\
events {}
http {
    proxy_read_timeout 10s;
    proxy_connect_timeout 5s;
    proxy_set_header X-Http 1;
    access_log logs/http.log;
    server {
        listen 127.0.0.1:8080;
        proxy_http_version 1.1;
        proxy_set_header X-Server-A 2;
        proxy_set_header X-Server-B 3;
        location /plain/ { proxy_pass http://127.0.0.1:9001; }
        location /own-headers/ {
            proxy_pass http://127.0.0.1:9001;
            proxy_set_header X-Loc $host;
        }
        location /own-timeout/ {
            proxy_pass http://127.0.0.1:9001;
            proxy_read_timeout 20s;
            proxy_http_version 1.0;
        }
        location /no-log/ {
            proxy_pass http://127.0.0.1:9001;
            access_log off;
        }
        location /outer/ {
            proxy_send_timeout 7s;
            proxy_set_header X-Outer 4;
            location /outer/inner/ { proxy_pass http://127.0.0.1:9001; }
        }
    }
    server {
        listen 127.0.0.1:8081;
        location / { proxy_pass http://127.0.0.1:9001; }
    }
}
"""


@pytest.fixture(scope="module")
def inherit() -> HttpConf:
    return _http(load(FILE, text=INHERIT))


def test_inherit_plain_location_takes_server_and_http_values(inherit: HttpConf) -> None:
    loc = _locations(inherit.servers[0])["/plain/"]
    assert loc.proxy_read_timeout == 10.0  # http
    assert loc.proxy_connect_timeout == 5.0  # http
    assert loc.proxy_http_version == "1.1"  # server
    # the server's proxy_set_header list replaces the http one as a whole
    assert _headers(loc) == [("X-Server-A", "2"), ("X-Server-B", "3")]
    assert [a.path for a in loc.access_log] == ["logs/http.log"]


def test_inherit_location_header_discards_inherited(inherit: HttpConf) -> None:
    loc = _locations(inherit.servers[0])["/own-headers/"]
    assert _headers(loc) == [("X-Loc", "$host")]
    assert loc.proxy_http_version == "1.1"


def test_inherit_location_overrides_scalars(inherit: HttpConf) -> None:
    loc = _locations(inherit.servers[0])["/own-timeout/"]
    assert loc.proxy_read_timeout == 20.0
    assert loc.proxy_http_version == "1.0"
    assert loc.proxy_connect_timeout == 5.0
    assert _headers(loc) == [("X-Server-A", "2"), ("X-Server-B", "3")]


def test_inherit_access_log_off(inherit: HttpConf) -> None:
    loc = _locations(inherit.servers[0])["/no-log/"]
    assert loc.access_log == ()


def test_inherit_nested_location(inherit: HttpConf) -> None:
    outer = _locations(inherit.servers[0])["/outer/"]
    assert outer.proxy_pass is None
    (inner,) = outer.locations
    assert inner.name == "/outer/inner/"
    assert inner.proxy_send_timeout == 7.0  # from the enclosing location
    assert inner.proxy_read_timeout == 10.0  # from http
    assert inner.proxy_http_version == "1.1"  # from the server
    assert _headers(inner) == [("X-Outer", "4")]


def test_inherit_server_defaults(inherit: HttpConf) -> None:
    first, second = inherit.servers
    assert first.defaults.proxy_http_version == "1.1"
    assert _headers(first.defaults) == [("X-Server-A", "2"), ("X-Server-B", "3")]
    # the second server has no values of its own: http's apply
    assert second.defaults.proxy_http_version == "1.0"
    assert _headers(second.defaults) == [("X-Http", "1")]
    (loc,) = second.locations
    assert _headers(loc) == [("X-Http", "1")]
    assert loc.proxy_read_timeout == 10.0


# ---------------------------------------------------------------------------------------
# Defaults (section 6.4, classic 1.22 values)

MINIMAL = """\
events {}
http {
    server {
        location / { proxy_pass http://127.0.0.1:9001; }
    }
}
"""


def test_defaults_main() -> None:
    conf = load(FILE, text="events {}\n")
    assert conf.http is None
    assert conf.events.worker_connections == 512
    assert conf.worker_processes == 1
    assert conf.worker_shutdown_timeout is None


def test_defaults_server() -> None:
    server = _server(MINIMAL)
    port = 80 if os.geteuid() == 0 else 8000
    assert server.listen == (ListenConf("*", port),)
    assert server.server_name == ("",)
    assert server.client_header_timeout == 60.0
    assert server.large_client_header_buffers == (4, 8192)
    assert server.underscores_in_headers is False
    assert server.ignore_invalid_headers is True


def test_defaults_location() -> None:
    (loc,) = _server(MINIMAL).locations
    assert loc.proxy_http_version == "1.0"
    assert loc.proxy_connect_timeout == 60.0
    assert loc.proxy_read_timeout == 60.0
    assert loc.proxy_send_timeout == 60.0
    assert loc.send_timeout == 60.0
    assert loc.proxy_buffer_size == 4096
    assert loc.proxy_next_upstream == NextUpstream.ERROR | NextUpstream.TIMEOUT
    assert loc.proxy_next_upstream_tries == 0
    assert loc.proxy_next_upstream_timeout == 0.0
    assert loc.keepalive_timeout == 75.0
    assert loc.keepalive_header is None
    assert loc.client_max_body_size == 1024 * 1024
    assert loc.proxy_pass_request_headers is True
    assert loc.proxy_set_header == ()  # nginx's Host/Connection defaults are added at run time
    assert [a.format.name for a in loc.access_log] == ["combined"]


def test_values_parsed_with_units() -> None:
    text = MINIMAL.replace(
        "proxy_pass http://127.0.0.1:9001;",
        'proxy_pass http://127.0.0.1:9001; proxy_read_timeout "1m 30s"; '
        "proxy_send_timeout 500ms; proxy_buffer_size 16k; client_max_body_size 1g; "
        "keepalive_timeout 10s 5; proxy_next_upstream error http_502 non_idempotent; "
        "proxy_next_upstream_tries 3;",
    )
    (loc,) = _server(text).locations
    assert loc.proxy_read_timeout == 90.0
    assert loc.proxy_send_timeout == 0.5
    assert loc.proxy_buffer_size == 16 * 1024
    assert loc.client_max_body_size == 1024**3
    assert (loc.keepalive_timeout, loc.keepalive_header) == (10.0, 5.0)
    assert loc.proxy_next_upstream == (
        NextUpstream.ERROR | NextUpstream.HTTP_502 | NextUpstream.NON_IDEMPOTENT
    )
    assert loc.proxy_next_upstream_tries == 3


# ---------------------------------------------------------------------------------------
# include (globs relative to the main file's directory)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


INCLUDE_MAIN = """\
events {}
http {
    include conf.d/*.conf;
    include nothing.d/*.conf;
}
"""


def test_include_glob_relative_to_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    main = _write(etc / "nginx.conf", INCLUDE_MAIN)
    a = _write(etc / "conf.d" / "a.conf", "upstream a {\n    server 127.0.0.1:8001;\n}\n")
    b = _write(
        etc / "conf.d" / "b.conf",
        "server {\n    listen 127.0.0.1:8080;\n    include snippets/proxy.conf;\n"
        "    location / { proxy_pass http://a; }\n}\n",
    )
    # relative to the main file's directory, not to conf.d/
    snippet = _write(etc / "snippets" / "proxy.conf", "proxy_set_header X-Snippet 1;\n")
    _write(etc / "conf.d" / "skip.txt", "this is not matched by *.conf\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the glob must not depend on the working directory

    conf = load(str(main))
    http = _http(conf)
    assert [p.name for p in http.upstreams["a"].peers] == ["127.0.0.1:8001"]
    (server,) = http.servers
    assert server.listen == (ListenConf("127.0.0.1", 8080),)
    assert _headers(server.locations[0]) == [("X-Snippet", "1")]
    assert server.locations[0].proxy_pass == ProxyPass("http://a", "http", "a", "a", None)
    # every file read, in the order read (for -T)
    assert [path for path, _ in conf.files] == [str(main), str(a), str(b), str(snippet)]
    assert conf.files[1][1] == a.read_text()
    assert (server.file, server.line) == (str(b), 1)


def test_include_glob_sorted(tmp_path: Path) -> None:
    main = _write(tmp_path / "nginx.conf", "events {}\nhttp {\n    include u/*.conf;\n}\n")
    for name in ("c", "a", "b"):
        _write(tmp_path / "u" / f"{name}.conf", f"upstream {name} {{ server 127.0.0.1:8001; }}\n")
    conf = load(str(main))
    assert list(_http(conf).upstreams) == ["a", "b", "c"]


def test_include_text_given_main_file_still_reads_includes(tmp_path: Path) -> None:
    _write(tmp_path / "conf.d" / "a.conf", "upstream a { server 127.0.0.1:8001; }\n")
    conf = load(str(tmp_path / "virtual.conf"), text=INCLUDE_MAIN)
    assert list(_http(conf).upstreams) == ["a"]


def test_include_missing_file(tmp_path: Path) -> None:
    main = tmp_path / "nginx.conf"
    with pytest.raises(ConfigError) as info:
        load(str(main), text="events {}\nhttp {\n    include missing.conf;\n}\n")
    assert str(info.value) == (
        f'open() "{tmp_path}/missing.conf" failed (2: No such file or directory) in {main}:3'
    )


# ---------------------------------------------------------------------------------------
# Variables


def test_unknown_variable_has_no_location() -> None:
    text = MINIMAL.replace(
        "proxy_pass http://127.0.0.1:9001;",
        "proxy_pass http://127.0.0.1:9001; proxy_set_header X-Foo $nosuchvar;",
    )
    with pytest.raises(ConfigError) as info:
        load(FILE, text=text)
    assert (info.value.message, info.value.file, info.value.line) == (
        'unknown "nosuchvar" variable',
        None,
        None,
    )
    assert str(info.value) == 'unknown "nosuchvar" variable'


def test_map_variable_without_map_is_unknown() -> None:
    text = MINIMAL.replace(
        "proxy_pass http://127.0.0.1:9001;",
        "proxy_pass http://127.0.0.1:9001; proxy_set_header Connection $connection_upgrade;",
    )
    with pytest.raises(ConfigError, match=r'^unknown "connection_upgrade" variable$'):
        load(FILE, text=text)


def test_known_variables_accepted() -> None:
    text = MINIMAL.replace(
        "proxy_pass http://127.0.0.1:9001;",
        "proxy_pass http://127.0.0.1:9001; proxy_set_header X-A $http_x_custom$arg_q;"
        " proxy_set_header X-B ${cookie_id}-$request_uri; proxy_set_header X-C $Host;",
    )
    (loc,) = _server(text).locations
    assert [v.variables for _, v in loc.proxy_set_header] == [
        ("http_x_custom", "arg_q"),
        ("cookie_id", "request_uri"),
        ("host",),
    ]


def test_map_defined_after_use_in_http() -> None:
    text = """\
events {}
http {
    server {
        location / { proxy_pass http://127.0.0.1:9001; proxy_set_header C $m; }
    }
    map $http_upgrade $m { websocket upgrade; }
}
"""
    m = _http(load(FILE, text=text)).maps["m"]
    assert m.default is None
    assert list(m.exact) == ["websocket"]


# ---------------------------------------------------------------------------------------
# proxy_pass targets: explicit and implicit upstreams (section 1.3)


def test_implicit_upstream_from_address_and_port() -> None:
    text = MINIMAL.replace("http://127.0.0.1:9001", "http://127.0.0.1:9123")
    http = _http(load(FILE, text=text))
    (loc,) = http.servers[0].locations
    assert loc.proxy_pass == ProxyPass(
        "http://127.0.0.1:9123", "http", "127.0.0.1:9123", "127.0.0.1:9123", None
    )
    up = http.upstreams["127.0.0.1:9123"]
    assert up.implicit
    assert up.peers == (PeerConf("127.0.0.1:9123", "127.0.0.1", 9123, "127.0.0.1:9123"),)
    assert (up.peers[0].weight, up.peers[0].max_fails, up.peers[0].fail_timeout) == (1, 1, 10.0)
    assert up.backups == ()


def test_implicit_upstream_default_port_and_uri() -> None:
    text = MINIMAL.replace("http://127.0.0.1:9001", "http://127.0.0.1/app/")
    http = _http(load(FILE, text=text))
    (loc,) = http.servers[0].locations
    assert loc.proxy_pass is not None
    assert loc.proxy_pass.proxy_host == "127.0.0.1"
    assert loc.proxy_pass.uri == "/app/"
    up = http.upstreams[loc.proxy_pass.upstream]
    assert up.implicit
    assert [(p.host, p.port) for p in up.peers] == [("127.0.0.1", 80)]


def test_implicit_upstream_explicit_default_port_dropped_from_proxy_host() -> None:
    text = MINIMAL.replace("http://127.0.0.1:9001", "http://127.0.0.1:80")
    (loc,) = _server(text).locations
    assert loc.proxy_pass is not None
    assert loc.proxy_pass.proxy_host == "127.0.0.1"


def test_implicit_upstream_localhost() -> None:
    text = MINIMAL.replace("http://127.0.0.1:9001", "http://localhost:9124")
    http = _http(load(FILE, text=text))
    (loc,) = http.servers[0].locations
    assert loc.proxy_pass is not None
    assert loc.proxy_pass.proxy_host == "localhost:9124"
    up = http.upstreams[loc.proxy_pass.upstream]
    assert up.implicit
    assert up.peers[0].name == "127.0.0.1:9124"  # IPv4 addresses first
    assert {p.name for p in up.peers} <= {"127.0.0.1:9124", "[::1]:9124"}
    assert all(p.server == "localhost:9124" and p.port == 9124 for p in up.peers)


def test_implicit_upstream_shared_by_locations() -> None:
    text = """\
events {}
http {
    server {
        location /a/ { proxy_pass http://127.0.0.1:9125; }
        location /b/ { proxy_pass http://127.0.0.1:9125/b/; }
    }
}
"""
    http = _http(load(FILE, text=text))
    a, b = http.servers[0].locations
    assert a.proxy_pass is not None and b.proxy_pass is not None
    assert a.proxy_pass.upstream == b.proxy_pass.upstream
    assert [k for k, u in http.upstreams.items() if u.implicit] == [a.proxy_pass.upstream]


def test_explicit_upstream_case_insensitive_and_defined_later() -> None:
    text = """\
events {}
http {
    server {
        location / { proxy_pass http://Backend; }
    }
    upstream backend {
        server 127.0.0.1:8001 weight=3 max_fails=0 fail_timeout=1h30m max_conns=5;
        server 127.0.0.1:8002 down;
        server 127.0.0.1:8003 backup;
    }
}
"""
    http = _http(load(FILE, text=text))
    (loc,) = http.servers[0].locations
    assert loc.proxy_pass == ProxyPass("http://Backend", "http", "backend", "Backend", None)
    assert list(http.upstreams) == ["backend"]
    up = http.upstreams["backend"]
    assert up.peers == (
        PeerConf(
            "127.0.0.1:8001",
            "127.0.0.1",
            8001,
            "127.0.0.1:8001",
            weight=3,
            max_fails=0,
            fail_timeout=5400.0,
            max_conns=5,
        ),
        PeerConf("127.0.0.1:8002", "127.0.0.1", 8002, "127.0.0.1:8002", down=True),
    )
    assert up.backups == (
        PeerConf("127.0.0.1:8003", "127.0.0.1", 8003, "127.0.0.1:8003", backup=True),
    )


def test_https_proxy_pass() -> None:
    text = MINIMAL.replace("http://127.0.0.1:9001", "HTTPS://127.0.0.1:443/x")
    (loc,) = _server(text).locations
    assert loc.proxy_pass is not None
    assert (loc.proxy_pass.scheme, loc.proxy_pass.proxy_host, loc.proxy_pass.uri) == (
        "https",
        "127.0.0.1",
        "/x",
    )


# ---------------------------------------------------------------------------------------
# Errors surfaced by load (messages: section 6.2; the differential test covers many more)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("http {}\n", 'no "events" section in configuration', id="missing-events"),
        pytest.param(
            MINIMAL.replace("http://127.0.0.1:9001", "http://127.0.0.1:99999"),
            'invalid port in upstream "127.0.0.1:99999" in /etc/wsgate/nginx.conf:4',
            id="bad-port",
        ),
        pytest.param(
            "events {}\nhttp {\n upstream u { server 127.0.0.1:1; }\n"
            " server { location / { proxy_pass http://u:80; } }\n}\n",
            'upstream "u" may not have port 80 in /etc/wsgate/nginx.conf:4',
            id="upstream-with-port",
        ),
    ],
)
def test_load_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(FILE, text=text)
    assert str(info.value) == message
