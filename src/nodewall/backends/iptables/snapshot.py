"""nodewall's iptables chains and ipsets as they were, and putting them back exactly (for the
rollback of `nodewall apply --confirm`).

A snapshot holds, per family, the `NODEWALL-*` chains with their lines and the positions of
the jumps from INPUT and OUTPUT, and every `nodewall-*` ipset as `ipset save` prints it (its
create line, hash seed and sizes included, and its members). Restoring, under the apply lock:
each set that differs is filled under a spare name and swapped in (`ipset swap`, atomic per
set; a set the current rules name keeps its kernel references), a missing one is created;
then each family's chains and jumps are put back by one `*-restore --noflush` transaction
(IPv6, then IPv4, as the backend writes them); then the sets no restored rule names are
destroyed. The result is read back and must equal the snapshot, or `BackendError`. An empty
snapshot (nothing of nodewall's before) restores to nothing of nodewall's.

Caveats: for the milliseconds between the set swaps and the chain transactions, the current
chains see the old set contents; a set whose type changed under the same name cannot be
swapped and the restore fails (nodewall never changes a set's type under one name). It must
never touch a chain not named NODEWALL-* or a set not named nodewall-*.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodewall.backends import applylock
from nodewall.backends.base import BackendError
from nodewall.backends.iptables import ipset, xtables
from nodewall.backends.iptables.render import FAMILIES, HOOK, restore_text
from nodewall.backends.iptables.xtables import FamilyNum, Variant

#: name -> (create line, sorted add lines), as `ipset save` prints them
SavedSets = dict[str, tuple[str, tuple[str, ...]]]
_SPARE = "nodewall-rollback"


@dataclass(frozen=True)
class IptSnapshot:
    variant: Variant
    chains: dict[FamilyNum, dict[str, list[str]]]
    jumps: dict[FamilyNum, dict[str, list[int]]]
    existed: dict[FamilyNum, bool]
    sets: SavedSets

    def view(self) -> tuple[object, ...]:
        """What is compared: chains, jump positions and sets (not whether a table existed:
        iptables-legacy cannot drop its filter table again)."""
        return self.chains, self.jumps, self.sets


def saved_sets() -> SavedSets:
    """Every nodewall-* set of this namespace as `ipset save` prints it."""
    found: dict[str, tuple[str, list[str]]] = {}
    for line in xtables.run(["ipset", "save"]).splitlines():
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[1].startswith(ipset.PREFIX):
            continue
        if parts[0] == "create":
            found[parts[1]] = (line, [])
        elif parts[0] == "add" and parts[1] in found:
            found[parts[1]][1].append(line)
    return {name: (create, tuple(sorted(adds))) for name, (create, adds) in found.items()}


def _read(variant: Variant) -> IptSnapshot:
    tables = {f: xtables.read_filter(variant, f) for f in FAMILIES}
    jumps = {f: {c: tables[f].positions(h, f"-A {h} -j {c}") for c, h in HOOK.items()}
             for f in FAMILIES}
    return IptSnapshot(variant, {f: tables[f].ours() for f in FAMILIES}, jumps,
                       {f: tables[f].exists for f in FAMILIES}, saved_sets())


def take(variant: Variant) -> IptSnapshot:
    """nodewall's chains and sets now (under the apply lock, so no apply is half-way)."""
    with applylock.held():
        return _read(variant)


def holds(snapshot: IptSnapshot) -> bool:
    return _read(snapshot.variant).view() == snapshot.view()


def _renamed(line: str, old: str, new: str) -> str:
    kind, name, rest = [*line.split(" ", 2), ""][:3]
    assert name == old
    return " ".join(x for x in (kind, new, rest) if x)


def restore(snapshot: IptSnapshot) -> None:
    """Put nodewall's chains, jumps and sets back as the snapshot holds them."""
    with applylock.held():
        variant = snapshot.variant
        now = saved_sets()
        lines: list[str] = []
        spares: list[str] = []
        for name, (create, adds) in sorted(snapshot.sets.items()):
            if now.get(name) == (create, adds):
                continue
            if name not in now:
                lines += [create, *adds]
                continue
            spare = f"{_SPARE}{len(spares)}"
            if spare in now:
                lines.append(f"destroy {spare}")
            lines += [_renamed(create, name, spare), *(_renamed(a, name, spare) for a in adds),
                      f"swap {name} {spare}"]
            spares.append(spare)
        ipset.restore(lines)
        for family in FAMILIES:
            table = xtables.read_filter(variant, family)
            text = restore_text(snapshot.chains[family], table, snapshot.jumps[family])
            if text:
                xtables.restore(variant, family, text)
            if not snapshot.existed[family]:
                xtables.drop_empty_table(variant, family)
        unused = sorted((set(saved_sets()) - set(snapshot.sets)) | set(spares))
        ipset.restore([f"destroy {name}" for name in unused])
        if not holds(snapshot):
            raise BackendError("iptables rollback: NODEWALL- chains or nodewall- sets read "
                               "back differ from what they held before the apply")
