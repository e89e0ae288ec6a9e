"""Serving the control plane: open (and migrate) the store, build the app, run uvicorn on one
address. Several processes may run this over one PostgreSQL database; with SQLite, one."""

from __future__ import annotations

import logging


def parse_listen(listen: str) -> tuple[str, int]:
    """'HOST:PORT', '[v6]:PORT' or ':PORT' -> (host, port); ValueError when malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{listen!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def run(database: str | None, host: str, port: int, *, access_log: bool = False,
        tls_cert: str | None = None, tls_key: str | None = None) -> None:
    """Serve until stopped; HTTPS when `tls_cert` and `tls_key` (PEM files) are given."""
    import uvicorn

    from nodewall.server.app import create_app
    from nodewall.store import open_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    store = open_store(database)
    logging.getLogger("nodewall.server").info(
        "store %s (%s), serving %s on %s:%d",
        store.engine.url.render_as_string(hide_password=True), store.engine.dialect.name,
        "HTTPS" if tls_cert else "HTTP", host, port)
    app = create_app(store)
    try:
        uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info",
                    backlog=4096, timeout_keep_alive=75, timeout_graceful_shutdown=2,
                    ssl_certfile=tls_cert, ssl_keyfile=tls_key)
    finally:
        store.dispose()
