"""Every reason and set purpose the compiler writes into a policy, in one place.

A reason says why a rule exists (`plan` and `explain` show it; the backends write it, sanitised,
as the kernel rule's comment); a purpose says what an address set holds. Each text is made here
from nodewall's own names (service, node, VPC and integration names, which the spec restricts to
`[a-z][a-z0-9-]*`) and never from customer text: ip_filter descriptions are not reasons. Changing
a text here changes rule comments and so every policy's version.
"""

from __future__ import annotations

# --- ingress, in rule order (SPEC section 3) ---------------------------------------------------
LOOPBACK = "loopback"
LOOPBACK_SPOOF = "loopback source on a non-loopback interface"
ESTABLISHED = "established or related flow"
INVALID = "invalid flow state"
NEEDED_ICMP = "ICMP the network needs"
PING = "ping (rate-limited)"
MANAGEMENT = "management"
CLUSTER_PEERS = "cluster peers"
IPSEC = "IPsec between cluster peers"
IPSEC_ESP = "IPsec ESP between cluster peers"
AZURE_NOT_MANAGEMENT = "Azure probes never reach the management ports"
AZURE_PROBES = "Azure load-balancer health probes"
REJECTED = "not allowed: rejected"

# --- egress ------------------------------------------------------------------------------------
METADATA_UID0 = "platform agents (uid 0) reach the metadata service"
METADATA_REJECTED = "metadata service is for uid 0 only"
ECE_VPC = "ece: the VPC and its peered networks"
ECE_PEERS = "ece: cluster peers"
ECE_PROXY = "ece: the SOCKS5 proxy"
ECE_REJECTED = "ece: egress rejected"


def integration(kind: str, connector: str) -> str:
    return f"integration {kind} {connector}"


def clients(service: str, purpose: str) -> str:
    return f"clients of {service} ({purpose})"


def at_metadata(what: str) -> str:
    return f"{what} at the metadata address"


def azure(what: str) -> str:
    return f"Azure {what}"


def egress_allowed(environment: str) -> str:
    return f"egress allowed ({environment} environment)"


# --- set purposes and the reasons of their elements --------------------------------------------
LOOPBACK_SET = "loopback addresses"
MANAGEMENT_SET = "platform management networks"
AZURE_SET = "Azure platform address"
METADATA_SET = "cloud metadata address"
PROXY_SET = "SOCKS5 proxy"
IP_FILTER = "ip_filter"
IP_FILTER_IN_VPC = "ip_filter within the VPC and its peers"


def management_network(network: str) -> str:
    return f"management network {network}"


def peers_set(service: str) -> str:
    return f"other nodes of {service}"


def cluster_peer(node: str) -> str:
    return f"cluster peer {node}"


def nodes_set(service: str) -> str:
    return f"nodes of {service}"


def node_of(service: str, node: str) -> str:
    return f"{service} node {node}"


def clients_set(service: str, purpose: str) -> str:
    return f"{purpose} of {service}"


def ip_filter_entry(index: int, service: str) -> str:
    return f"ip_filter[{index}] of {service}"


def vpc_set(vpc: str) -> str:
    return f"VPC {vpc} and its peers"


def vpc_network(vpc: str, network: str) -> str:
    return f"VPC {vpc} network {network}"


def rejected_at(protocol: str, port: int) -> str:
    """The reason of the reject rule a backend adds per port of the node, so that the kernel
    counts refused packets per port (`nodewall.backends.rejects`)."""
    return f"{REJECTED} at {port}/{protocol}"
