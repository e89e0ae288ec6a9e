"""Service-port allocation (SPEC section 4).

A service's port-needing components (catalogue order) get consecutive ports
`base_port + offset + i`, inside 10000..30000. Pinned components keep their pin; the block of the
others is placed where it meets no pin. The offset is given by the caller: the spec-file path
derives it from a hash of project and service (`derived_offset`), so every run gives the same
ports; the control plane draws it at random once and stores the ports. Never touches a kernel.
"""

from __future__ import annotations

import hashlib

from nodewall import catalogue
from nodewall.catalogue.ports import PORT_MAX, PORT_MIN
from nodewall.errors import SpecError

#: How far past the base port a service's block may start.
OFFSET_SPAN = 1000


def offset_span(base_port: int | None, count: int) -> tuple[int, int]:
    """(first port of the range, how many block starts fit) for a base port and block size."""
    start = PORT_MIN if base_port is None else base_port
    span = (PORT_MAX - PORT_MIN if base_port is None else OFFSET_SPAN)
    fits = min(span, PORT_MAX - start - count + 2)
    return start, max(fits, 0)


def derived_offset(project: str, service: str) -> int:
    """A reproducible offset for the spec-file path: same names, same ports, every run."""
    digest = hashlib.sha256(f"{project}/{service}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def allocate_ports(
    service_type: str, base_port: int | None, pins: dict[str, int], offset: int
) -> dict[str, int]:
    """Ports of every service-port component of the type (enabled or not), pins honoured.

    `offset` may be any non-negative number; it is reduced into the room the base port
    leaves. Raises SpecError when the block cannot be placed.
    """
    components = [c.name for c in catalogue.service_type(service_type).port_components]
    free = [c for c in components if c not in pins]
    ports = {c: pins[c] for c in components if c in pins}
    if not free:
        return ports
    start, fits = offset_span(base_port, len(free))
    if fits <= 0:
        raise SpecError([("project.base_port", f"base port {base_port} leaves no room for "
                          f"{len(free)} ports below {PORT_MAX}")])
    taken = set(pins.values())
    for attempt in range(fits):
        first = start + (offset + attempt) % fits
        block = range(first, first + len(free))
        if not taken.intersection(block):
            ports.update(zip(free, block, strict=True))
            return ports
    raise SpecError([("ports", "the pinned ports leave no room for the other components")])
