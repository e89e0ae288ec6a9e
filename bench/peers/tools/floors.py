"""The floors: the kernel tools loading nodewall's own rendered text and nothing else.

- `nft-floor`: `nft -f` of `nodewall render --backend nftables`; the change is one `nft -f` of
  the element delete and add;
- `iptables-floor`: `ipset restore`, `ip6tables-restore --noflush`, `iptables-restore
  --noflush` of the three parts of `nodewall render --backend iptables`; the change is one
  `ipset restore` of the delete and add.
No reading back, no verification, no conntrack cut: the least any tool must pay.
"""

from __future__ import annotations

from pathlib import Path

from ..node import changed_entry
from .base import Case, Script, Tool


def _element(network: str) -> str:
    return network.removesuffix("/32")


class NftFloor(Tool):
    name = "nft-floor"
    floor_of = "nodewall-nftables"

    def apply(self, case: Case, work: Path) -> Script:
        path = work / "ruleset.nft"
        path.write_text(case.nft_text, encoding="utf-8")
        return Script(f"exec nft -f {path}\n")

    def change(self, case: Case, work: Path) -> Script:
        removed, added = changed_entry(case.facts, case.facts_changed)
        lines = [f"delete element inet nodewall clients_v4 {{ {_element(n)} }}" for n in removed]
        lines += [f"add element inet nodewall clients_v4 {{ {_element(n)} }}" for n in added]
        path = work / "change.nft"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return Script(f"exec nft -f {path}\n")


def split_iptables(text: str) -> dict[str, str]:
    """The render's parts by their `# <command>` headers: ipset, ip6tables, iptables."""
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("# ipset restore"):
            current = parts.setdefault("ipset", [])
        elif line.startswith("# ip6tables-restore"):
            current = parts.setdefault("ip6tables", [])
        elif line.startswith("# iptables-restore"):
            current = parts.setdefault("iptables", [])
        elif current is not None and not line.startswith("#"):
            current.append(line)
    if set(parts) != {"ipset", "ip6tables", "iptables"}:
        raise ValueError(f"iptables render has parts {sorted(parts)}")
    return {k: "\n".join(v) + "\n" for k, v in parts.items()}


class IptablesFloor(Tool):
    name = "iptables-floor"
    floor_of = "nodewall-iptables"

    def apply(self, case: Case, work: Path) -> Script:
        parts = split_iptables(case.iptables_text)
        for key, body in parts.items():
            (work / f"{key}.rules").write_text(body, encoding="utf-8")
        return Script(f"set -e\nipset restore < {work}/ipset.rules\n"
                      f"ip6tables-restore --noflush < {work}/ip6tables.rules\n"
                      f"iptables-restore --noflush < {work}/iptables.rules\n")

    def change(self, case: Case, work: Path) -> Script:
        removed, added = changed_entry(case.facts, case.facts_changed)
        lines = [f"del nodewall-clients_v4 {n}" for n in removed]
        lines += [f"add nodewall-clients_v4 {n}" for n in added]
        path = work / "change.ipset"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return Script(f"exec ipset restore < {path}\n")
