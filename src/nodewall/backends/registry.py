"""Backend names to backend objects: the one place a name like "nftables" becomes code.

It must never import a backend module before that backend is asked for (each may load a C
library or need a tool the machine lacks).
"""

from __future__ import annotations

from collections.abc import Callable

from nodewall.backends.base import Backend


def _nftables() -> Backend:
    from nodewall.backends.nftables.backend import NftablesBackend

    return NftablesBackend()


def _iptables() -> Backend:
    from nodewall.backends.iptables.backend import IptablesBackend

    return IptablesBackend()


def _auto() -> Backend:
    from nodewall.backends.auto import AutoBackend

    return AutoBackend(get_backend)


#: name -> factory; other backends register here ("iptables", "auto").
BACKENDS: dict[str, Callable[[], Backend]] = {
    "nftables": _nftables,
    "iptables": _iptables,
    "auto": _auto,
}


def get_backend(name: str) -> Backend:
    """A new backend object for `name`; ValueError for an unknown name."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown backend {name!r}; known: {known}") from None
    return factory()
