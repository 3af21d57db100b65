"""The ``websocket_*`` location directives (docs/websocket.md): values in ``LocationConf``,
inheritance, when the frame-aware relay is on (``ws_frames``), and errors at their line."""

from __future__ import annotations

import pytest

from wsgate.conf.build import load
from wsgate.conf.model import LocationConf, WebSocketDrain
from wsgate.errors import ConfigError

FILE = "/etc/wsgate/nginx.conf"  # never read: the text is passed in


def conf_text(http: str = "", server: str = "", location: str = "") -> str:
    """The directives under test are on line 3 (http), 5 (server) or 6 (location)."""
    return (
        "events {}\nhttp {\n"
        f" {http}\n"
        " server {\n"
        f"  listen 127.0.0.1:8080; {server}\n"
        f"  location / {{ proxy_pass http://127.0.0.1:8001; {location} }}\n"
        "  location /plain { proxy_pass http://127.0.0.1:8001; }\n"
        " }\n}\n"
    )


def locations(**levels: str) -> tuple[LocationConf, ...]:
    http = load(FILE, text=conf_text(**levels)).http
    assert http is not None
    return http.servers[0].locations


@pytest.mark.parametrize(
    ("location", "field", "value"),
    [
        ("websocket_ping_interval 30s;", "websocket_ping_interval", 30.0),
        ("websocket_ping_interval 250ms;", "websocket_ping_interval", 0.25),
        ("websocket_ping_timeout 1m;", "websocket_ping_timeout", 60.0),
        ("websocket_ping_upstream on;", "websocket_ping_upstream", True),
        ("websocket_max_message_size 1m;", "websocket_max_message_size", 1 << 20),
        ("websocket_max_frame_size 64k;", "websocket_max_frame_size", 64 << 10),
        ("websocket_drain on;", "websocket_drain", WebSocketDrain()),
        (
            "websocket_drain on quit=4000 reload=1001 retry_after=1m;",
            "websocket_drain",
            WebSocketDrain(quit=4000, reload=1001, retry_after=60),
        ),
        ("websocket_drain off;", "websocket_drain", None),
    ],
)
def test_values(location: str, field: str, value: object) -> None:
    loc, plain = locations(location=location)
    assert getattr(loc, field) == value
    assert getattr(plain, field) == getattr(LocationConf(), field)


@pytest.mark.parametrize(
    ("levels", "frames"),
    [
        ({}, (False, False)),
        ({"http": "websocket_ping_interval 30s;"}, (True, True)),
        ({"server": "websocket_max_message_size 1k;"}, (True, True)),
        ({"location": "websocket_max_frame_size 1k;"}, (True, False)),
        ({"location": "websocket_drain on;"}, (True, False)),
        # only the timeout, or a limit of 0: nothing to do, the plain relay stays
        ({"location": "websocket_ping_timeout 5s; websocket_max_message_size 0;"}, (False, False)),
        # inherited on, switched off in the location
        ({"http": "websocket_drain on;", "location": "websocket_drain off;"}, (False, True)),
        (
            {"http": "log_format w '$ws_close_code'; access_log /dev/null w;"},
            (True, True),
        ),
        (
            {"http": "log_format w '$ws_messages_in';", "location": "access_log /dev/null w;"},
            (True, False),
        ),
        ({"http": "log_format w '$tunnel_time'; access_log /dev/null w;"}, (False, False)),
    ],
)
def test_frame_aware_relay_only_where_needed(
    levels: dict[str, str], frames: tuple[bool, bool]
) -> None:
    assert tuple(loc.ws_frames for loc in locations(**levels)) == frames


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("websocket_ping_interval 1.5s;", '"websocket_ping_interval" directive invalid value'),
        ("websocket_max_message_size 1q;", '"websocket_max_message_size" directive invalid value'),
        ("websocket_ping_upstream yes;", 'invalid value "yes" in "websocket_ping_upstream" '
         'directive, it must be "on" or "off"'),
        ("websocket_drain maybe;", 'invalid value "maybe" in "websocket_drain" directive, '
         'it must be "on" or "off"'),
        ("websocket_drain off quit=1001;", 'invalid parameter "quit=1001"'),
        ("websocket_drain on quit=1005;", 'invalid close code "1005"'),
        ("websocket_drain on reload=999;", 'invalid close code "999"'),
        ("websocket_drain on reload=5000;", 'invalid close code "5000"'),
        ("websocket_drain on quit=1001 quit=1001;", 'invalid parameter "quit=1001"'),
        ("websocket_drain on later=1;", 'invalid parameter "later=1"'),
        ("websocket_drain on retry_after=soon;", 'invalid retry_after "soon"'),
        ("websocket_ping_interval 1s; websocket_ping_interval 2s;",
         '"websocket_ping_interval" directive is duplicate'),
        ("websocket_drain;", 'invalid number of arguments in "websocket_drain" directive'),
    ],
)  # fmt: skip
def test_errors_at_their_line(location: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(FILE, text=conf_text(location=location))
    assert str(info.value) == f"{message} in {FILE}:6"


def test_not_allowed_in_upstream() -> None:
    text = "events {}\nhttp {\n upstream u {\n  server 127.0.0.1:1;\n  websocket_drain on;\n }\n}\n"
    with pytest.raises(ConfigError) as info:
        load(FILE, text=text)
    assert str(info.value) == f'"websocket_drain" directive is not allowed here in {FILE}:5'
