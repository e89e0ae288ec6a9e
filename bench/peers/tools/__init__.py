"""The benchmarked tools by name, in the order the tables show them (floors first)."""

from __future__ import annotations

from .base import Tool
from .ferm import Ferm
from .firewalld import Firewalld
from .floors import IptablesFloor, NftFloor
from .iptables_script import IptablesScript
from .nodewall_cli import Nodewall
from .nodewall_resident import NodewallResident
from .ufw import Ufw


def all_tools() -> dict[str, Tool]:
    tools: list[Tool] = [NftFloor(), IptablesFloor(), Nodewall("nftables"),
                         Nodewall("iptables"), NodewallResident("nftables"),
                         NodewallResident("iptables"), IptablesScript(), Ferm(), Ufw(),
                         Firewalld()]
    return {t.name: t for t in tools}
