"""Configuration texts for tests: the seed article's config with ports chosen at run time,
and the config of the differential tests against real nginx."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = ["Variant", "article_conf", "differential_conf"]


def article_conf(
    port: int,
    backends: Sequence[int],
    *,
    read_timeout: str = "300s",
    access_log: str = "logs/access.log",
    extra_location: str = "",
    extra_http: str = "",
    host: str = "127.0.0.1",
) -> str:
    """The seed article's nginx.conf with ``listen port`` and one server per backend port."""
    servers = "\n".join(f"  server {host}:{p};" for p in backends)
    return f"""worker_processes 1;
error_log logs/error.log info;
events {{ worker_connections 1024; }}
http {{
 map $http_upgrade $connection_upgrade {{
  default upgrade;
  ''   close;
 }}
 upstream websocket {{
{servers}
 }}
 {extra_http}
 server {{
  listen    127.0.0.1:{port};
  server_name localhost;
  access_log {access_log};
  location / {{
   proxy_pass http://websocket;
   proxy_read_timeout {read_timeout};
   proxy_set_header Host $host;
   proxy_set_header X-Real-IP $remote_addr;
   proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
   proxy_http_version 1.1;
   proxy_set_header Upgrade $http_upgrade;
   proxy_set_header Connection $connection_upgrade;
   {extra_location}
  }}
 }}
}}
"""


Variant = Literal["seed", "bare", "buffers"]

# The seed article's location body (nginx-semantics.md section 1).
_SEED_PROXY = """\
            proxy_read_timeout 300s;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;"""

_DIFFERENTIAL_CONF = """\
worker_processes 1;
events {{
    worker_connections 64;
}}
http {{
    log_format diff '$status $body_bytes_sent $bytes_sent $request_length $upstream_status '
                    '$upstream_addr $connection_requests $host "$request" '
                    '"$http_user_agent" "$http_x_forwarded_for"';
    access_log logs/diff.log diff;
    access_log logs/combined.log combined;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream backend {{
        server 127.0.0.1:{backend};
    }}
    server {{
        listen 127.0.0.1:{listen};
        server_name example.com;
{server_extra}{locations}
    }}
}}
"""

_SEED_LOCATIONS = f"""\
        location / {{{{
            proxy_pass http://backend;
{_SEED_PROXY}
        }}}}
        location /p1/ {{{{
            proxy_pass http://backend/prefix/;
{_SEED_PROXY}
        }}}}"""

# Third transcript of section 1.4: no proxy_set_header, proxy_pass with a URI part.
_BARE_LOCATIONS = """\
        location / {{
            proxy_pass http://127.0.0.1:{backend}/;
        }}"""


def differential_conf(variant: Variant, listen: int, backend: int) -> str:
    """The differential tests' config: ``seed`` is the article's location (plus ``/p1/``
    with a URI part) in front of ``upstream backend``; ``bare`` proxies without
    ``proxy_set_header``; ``buffers`` is ``seed`` with small header buffers
    (:data:`SMALL_BUFFERS`). Access logs ``logs/diff.log`` (format ``diff``) and
    ``logs/combined.log``."""
    locations = _BARE_LOCATIONS if variant == "bare" else _SEED_LOCATIONS
    return _DIFFERENTIAL_CONF.format(
        listen=listen,
        backend=backend,
        locations=locations.format(backend=backend),
        server_extra=SMALL_BUFFERS if variant == "buffers" else "",
    )


# The "buffers" variant: a 256-byte first buffer and two large buffers of 512 bytes.
SMALL_BUFFERS = """        client_header_buffer_size 256;
        large_client_header_buffers 2 512;
"""
