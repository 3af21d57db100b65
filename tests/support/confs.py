"""Configuration texts for tests: the seed article's config with ports chosen at run time."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["article_conf"]


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
