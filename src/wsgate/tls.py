"""TLS contexts from the configuration: ``listen ... ssl`` servers and ``proxy_pass https``.

Built once per configuration (at start-up, on reload and for ``-t``), so a missing or bad
certificate is a configuration error, worded like nginx's (``ngx_ssl_certificate``,
``ngx_http_ssl_init``). The proxy's I/O layer only passes these contexts to asyncio.

Server side: one ``SSLContext`` per ``server{}`` that listens with ``ssl``; a listen address
uses its default server's context, and SNI switches to the context of the server whose
``server_name`` matches (``ngx_http_ssl_servername``). Session resumption: OpenSSL's
per-process session cache and session tickets (``ssl_session_tickets``).

Upstream side (``proxy_pass https://``): ``proxy_ssl_verify`` (off by default, as in
nginx) checks the chain against ``proxy_ssl_trusted_certificate`` and the name against
``proxy_ssl_name``; ``proxy_ssl_server_name`` sends SNI.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass

from wsgate.conf.model import HttpConf, ListenConf, LocationConf, ServerConf
from wsgate.errors import ConfigError

__all__ = [
    "ServerTLS",
    "listen_is_ssl",
    "server_contexts",
    "upstream_context",
]

_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


def _version_range(protocols: tuple[str, ...]) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    versions = sorted(_VERSIONS[p] for p in protocols if p in _VERSIONS)
    if not versions:  # only SSLv2/SSLv3 asked for: nothing OpenSSL still offers
        versions = [ssl.TLSVersion.TLSv1_2]
    return versions[0], versions[-1]


def listen_is_ssl(http: HttpConf, lc: ListenConf) -> bool:
    """Whether the address of ``lc`` serves TLS (any ``listen`` on it says ``ssl``)."""
    key = (lc.host, lc.port, lc.ipv6)
    return any(
        other.ssl
        for s in http.servers
        for other in s.listen
        if (other.host, other.port, other.ipv6) == key
    )


def _server_context(server: ServerConf, lc: ListenConf) -> ssl.SSLContext:
    conf = server.defaults
    if conf.ssl_certificate is None:
        raise ConfigError(
            'no "ssl_certificate" is defined for the "listen ... ssl" directive', lc.file, lc.line
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version, ctx.maximum_version = _version_range(conf.ssl_protocols)
    try:
        ctx.set_ciphers(conf.ssl_ciphers)
    except ssl.SSLError as exc:
        raise ConfigError(f'SSL_CTX_set_cipher_list("{conf.ssl_ciphers}") failed ({exc})') from None
    key = conf.ssl_certificate_key or conf.ssl_certificate
    try:
        ctx.load_cert_chain(conf.ssl_certificate, key)
    except FileNotFoundError as exc:
        missing = exc.filename or conf.ssl_certificate
        raise ConfigError(
            f'cannot load certificate "{missing}": BIO_new_file() failed '
            f"(2: No such file or directory)"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f'cannot load certificate "{conf.ssl_certificate}": {exc}') from None
    if conf.ssl_prefer_server_ciphers:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if not conf.ssl_session_tickets:
        ctx.options |= ssl.OP_NO_TICKET
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """TLS for one listen address: its default context and the per-name contexts (SNI)."""

    context: ssl.SSLContext
    by_server: dict[int, ssl.SSLContext]  # id(ServerConf) -> context


def server_contexts(
    http: HttpConf,
    listens: list[ListenConf],
    select: Callable[[str, int, str | None], ServerConf],
) -> dict[tuple[str, int, bool], ServerTLS]:
    """Build the contexts of every ``ssl`` listen address in ``listens``.

    Args:
        select: ``Router.select_server``-like callable ``(addr, port, host) -> ServerConf``
            used by the SNI callback to find the server for a name.

    Raises:
        ConfigError: a server listens with ``ssl`` without a certificate, or a file is bad.
    """
    out: dict[tuple[str, int, bool], ServerTLS] = {}
    for lc in listens:
        if not listen_is_ssl(http, lc):
            continue
        key = (lc.host, lc.port, lc.ipv6)
        servers = [
            s for s in http.servers if any((o.host, o.port, o.ipv6) == key for o in s.listen)
        ]
        contexts = {id(s): _server_context(s, lc) for s in servers}
        host = "0.0.0.0" if lc.host == "*" else lc.host
        default = select(host, lc.port, None)
        base = contexts[id(default)]

        def pick(
            sslobj: ssl.SSLObject,
            name: str | None,
            _ctx: ssl.SSLContext,
            host: str = host,
            port: int = lc.port,
            contexts: dict[int, ssl.SSLContext] = contexts,
        ) -> None:
            if name:
                chosen = select(host, port, name.lower())
                sslobj.context = contexts.get(id(chosen), sslobj.context)

        base.sni_callback = pick
        out[key] = ServerTLS(base, contexts)
    return out


def upstream_context(loc: LocationConf) -> ssl.SSLContext:
    """The client context for ``proxy_pass https://`` in ``loc``.

    Raises:
        ConfigError: ``proxy_ssl_trusted_certificate`` cannot be loaded.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version, ctx.maximum_version = _version_range(loc.proxy_ssl_protocols)
    ctx.set_ciphers(loc.proxy_ssl_ciphers)
    if loc.proxy_ssl_verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = True
        if loc.proxy_ssl_trusted_certificate:
            try:
                ctx.load_verify_locations(loc.proxy_ssl_trusted_certificate)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f'SSL_CTX_load_verify_locations("{loc.proxy_ssl_trusted_certificate}") '
                    f"failed ({exc})"
                ) from None
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
