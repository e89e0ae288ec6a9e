"""Serving the control plane: open (and migrate) the store, build the app, run uvicorn on one
address. Several processes may run this over one PostgreSQL database or one SQLite file.

uvicorn runs with nodewall's protocol (`nodewall.server.protocol`: header deadline and size
bound), a keep-alive timeout, and a log filter that takes credentials out of every line
(`nodewall.server.redact`). Plain HTTP is for loopback addresses; anything else needs TLS or
the caller's explicit `insecure_http` (`check_listen`). It never logs a token or a body.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

#: How long an idle keep-alive connection is kept between requests.
KEEP_ALIVE_SECONDS = 75


def parse_listen(listen: str) -> tuple[str, int]:
    """'HOST:PORT', '[v6]:PORT' or ':PORT' -> (host, port); ValueError when malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{listen!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback one (a name is resolved here)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback
                               for i in infos)


def check_listen(host: str, *, tls: bool, insecure_http: bool) -> str | None:
    """Why serving on `host` is refused, or None: plain HTTP on a non-loopback address would
    carry tokens and customers' allow-lists in clear, so it needs `insecure_http`."""
    if tls or insecure_http or is_loopback(host):
        return None
    return (f"refusing to serve plain HTTP on {host}, which is not a loopback address: tokens "
            "and allow-lists would cross the network in clear. Give --tls-cert and --tls-key, "
            "or --insecure-http to accept that (e.g. behind a TLS-terminating proxy)")


def run(database: str | None, host: str, port: int, *, access_log: bool = False,
        tls_cert: str | None = None, tls_key: str | None = None,
        db_wait: float = 10.0) -> None:
    """Serve until stopped; HTTPS when `tls_cert` and `tls_key` (PEM files) are given;
    `db_wait`: seconds a request waits for the database before it is answered 503."""
    import uvicorn

    from nodewall.server import memory, redact
    from nodewall.server.app import create_app
    from nodewall.server.protocol import TimedHttpToolsProtocol
    from nodewall.store import open_store

    memory.tune_malloc()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    redact.install()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    store = open_store(database, wait_seconds=db_wait)
    log = logging.getLogger("nodewall.server")
    log.info("store %s (%s), serving %s on %s:%d",
             store.engine.url.render_as_string(hide_password=True), store.engine.dialect.name,
             "HTTPS" if tls_cert else "HTTP", host, port)
    if not tls_cert and not is_loopback(host):
        log.warning("plain HTTP on %s (--insecure-http): tokens cross the network in clear",
                    host)
    config = uvicorn.Config(
        create_app(store), host=host, port=port, access_log=access_log, log_level="info",
        http=TimedHttpToolsProtocol, backlog=4096, timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=2, ssl_certfile=tls_cert, ssl_keyfile=tls_key)
    redact.install()  # uvicorn.Config has just configured its own loggers' handlers
    try:
        uvicorn.Server(config).run()
    finally:
        store.dispose()
