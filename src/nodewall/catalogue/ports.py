"""The port numbers of the platform (SPEC section 4): fixed ports and the service-port range.

The one home of every port constant; allocation of service ports is `nodewall.catalogue.allocation`.
"""

from __future__ import annotations

#: Service ports are allocated inside this range, and a base port must lie in it.
PORT_MIN = 10000
PORT_MAX = 30000

MANAGEMENT_SSH_PORT = 22
MANAGEMENT_PORT = 30287
MANAGEMENT_PORTS = (MANAGEMENT_SSH_PORT, MANAGEMENT_PORT)
WEB_UI_PORT = 443
PROMETHEUS_PORT = 9273
IPSEC_IKE_PORT, IPSEC_NAT_T_PORT = 500, 4500
IPSEC_PORTS = (IPSEC_IKE_PORT, IPSEC_NAT_T_PORT)
#: Served by the platform's proxy, never opened on a node.
PLATFORM_HTTP_PORT = 80

#: Ports a node always has or that nodewall never opens: a pin may not take them.
RESERVED_PORTS = {
    MANAGEMENT_SSH_PORT: "management SSH", MANAGEMENT_PORT: "platform management",
    WEB_UI_PORT: "web UIs", PROMETHEUS_PORT: "prometheus", IPSEC_IKE_PORT: "IPsec IKE",
    IPSEC_NAT_T_PORT: "IPsec NAT-T", PLATFORM_HTTP_PORT: "the platform's HTTP proxy",
}
