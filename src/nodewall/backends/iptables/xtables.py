"""The xtables plumbing of the iptables backend: which iptables the host runs, and running it.

Two kernels hide behind the `iptables` command: iptables-legacy (x_tables) and iptables-nft (the
same rules stored in nf_tables). A host must be driven by the one it already uses; a host where
both hold rules is ambiguous (packets traverse both) and is refused. This module detects the
variant, runs `*-restore --noflush` under the xtables lock and `*-save -t filter`, and parses a
save into the parts the backend cares about.

It must never run a shell, never pass anything but argument lists to a subprocess, and never
write rules itself: the text it is given is the backend's, already rendered.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from nodewall.backends.base import BackendError
from nodewall.net.family import NFT_IP

Variant = Literal["legacy", "nft"]
FamilyNum = Literal[4, 6]

#: Every object of the backend starts with this.
CHAIN_PREFIX = "NODEWALL-"
#: Seconds `*-restore` waits for the xtables lock held by another tool.
LOCK_WAIT_SECONDS = 10

_TABLES = ("filter", "nat", "mangle", "raw", "security")


def run(argv: Sequence[str], stdin: str | None = None) -> str:
    """Run one command (an argument list, no shell), return its stdout; BackendError on failure.

    Tests replace this function to inject failures; nothing else should call subprocess."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise BackendError(f"{' '.join(argv)} failed ({done.returncode}): {' | '.join(detail[:5])}")
    return done.stdout


def tool(variant: Variant, family: FamilyNum, what: Literal["save", "restore", ""]) -> str:
    """The binary for a variant and family, never the `iptables` alternatives link."""
    base = "iptables" if family == 4 else "ip6tables"
    name = f"{base}-{variant}" + (f"-{what}" if what else "")
    return name


def restore(variant: Variant, family: FamilyNum, text: str) -> None:
    """Load one ruleset text as one kernel transaction, leaving other chains alone."""
    try:
        run([tool(variant, family, "restore"), f"--wait={LOCK_WAIT_SECONDS}", "--noflush"], text)
    except BackendError as exc:
        raise BackendError(with_offending_line(str(exc), text)) from exc


def with_offending_line(message: str, text: str) -> str:
    """A restore tool's error with the input line it names ("line: 12", "line 12") quoted."""
    found = re.search(r"\bline:? (\d+)", message, re.IGNORECASE)
    lines = text.splitlines()
    if found is None or not 0 < int(found.group(1)) <= len(lines):
        return message
    number = int(found.group(1))
    return f"{message}\noffending line {number}: {lines[number - 1]}"


def drop_empty_table(variant: Variant, family: FamilyNum) -> None:
    """Delete an iptables-nft `filter` table that holds nothing (for a rollback of the first
    apply, so that the kernel ends as it began); anything else is left alone."""
    if variant != "nft" or _has_rules(save(variant, family)):
        return
    run(["nft", "delete", "table", NFT_IP[family], "filter"])


def save(variant: Variant, family: FamilyNum, table: str = "filter") -> str:
    return run([tool(variant, family, "save"), "-t", table])


@dataclass(frozen=True)
class FilterTable:
    """The filter table of one family as a save shows it (counters left out)."""

    chains: dict[str, list[str]] = field(default_factory=dict)  # chain -> its "-A" lines, in order
    order: tuple[str, ...] = ()  # chain names as declared
    exists: bool = False  # False: the save was empty (no table yet)

    def ours(self) -> dict[str, list[str]]:
        return {c: lines for c, lines in self.chains.items() if c.startswith(CHAIN_PREFIX)}

    def positions(self, chain: str, line: str) -> list[int]:
        """1-based positions of an exact rule line in a chain."""
        return [i + 1 for i, x in enumerate(self.chains.get(chain, [])) if x == line]


def parse_save(text: str) -> FilterTable:
    chains: dict[str, list[str]] = {}
    order: list[str] = []
    for line in text.splitlines():
        if line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            chains.setdefault(name, [])
            order.append(name)
        elif line.startswith("-A "):
            name = line.split(" ", 2)[1]
            chains.setdefault(name, []).append(line)
    return FilterTable(chains, tuple(order), bool(text.strip()))


def read_filter(variant: Variant, family: FamilyNum) -> FilterTable:
    return parse_save(save(variant, family))


def _legacy_tables(family: FamilyNum) -> list[str]:
    """Tables x_tables holds in this network namespace (reading this creates nothing)."""
    path = "/proc/net/ip_tables_names" if family == 4 else "/proc/net/ip6_tables_names"
    try:
        with open(path) as f:
            return [t.strip() for t in f if t.strip()]
    except OSError:
        return []


def _has_rules(save_text: str) -> bool:
    """True when a save holds a rule, a user chain or a non-ACCEPT built-in policy."""
    for line in save_text.splitlines():
        if line.startswith("-A "):
            return True
        m = re.match(r"^:(\S+) (\S+) ", line)
        if m and m.group(2) not in ("ACCEPT",):
            return True
    return False


def variant_usage() -> dict[Variant, bool]:
    """Which variants hold rules in this network namespace (any table, either family)."""
    used: dict[Variant, bool] = {"legacy": False, "nft": False}
    for family in (4, 6):
        fam: FamilyNum = 4 if family == 4 else 6
        for table in _legacy_tables(fam):
            if table in _TABLES and shutil.which(tool("legacy", fam, "save")):
                used["legacy"] = used["legacy"] or _has_rules(save("legacy", fam, table))
        if shutil.which(tool("nft", fam, "save")):
            try:
                text = run([tool("nft", fam, "save")])
            except BackendError:
                text = ""
            used["nft"] = used["nft"] or _has_rules(text)
    return used


def default_variant() -> Variant:
    """The variant the `iptables` command points at, nft when it cannot be told."""
    target = os.path.realpath(shutil.which("iptables") or "")
    if "legacy" in os.path.basename(target):
        return "legacy"
    if target.endswith("xtables-legacy-multi"):
        return "legacy"
    return "nft"


def detect_variant() -> Variant:
    """The variant this host uses: the one holding rules; the default when none does.

    Both holding rules is refused: rules in both kernels both filter every packet, and no single
    tool shows the whole firewall."""
    used = variant_usage()
    if used["legacy"] and used["nft"]:
        raise BackendError(
            "both iptables-legacy and iptables-nft hold rules in this network namespace; "
            "nodewall will not guess which one filters: move the rules to one of them "
            "(see iptables-legacy-save and iptables-nft-save)"
        )
    if used["legacy"]:
        return "legacy"
    if used["nft"]:
        return "nft"
    return default_variant()
