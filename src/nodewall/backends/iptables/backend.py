"""The iptables + ipset backend: the nftables backend's firewall and guarantees, for xtables hosts.

Design note
-----------
Goals (cited in the code as "goal N"), the nftables backend's, for xtables hosts:
1. The kernel holds the rendered ruleset or what it held before (per family, with rollback).
2. Re-applying the same policy sends nothing.
3. A set-only change swaps sets and rewrites no chain.
4. Other tools' chains, rules and sets are never flushed or reordered.
5. After a narrowing change, the flows the new policy refuses are ended for both ends.

Model. nodewall owns, in table `filter` of each family, the chains `NODEWALL-INPUT` and
`NODEWALL-OUTPUT` (the policy's rules, first match wins, the last rule matches everything),
`NODEWALL-REJECT` (the protocol-aware reject a protocol-less reject rule jumps to) and
`NODEWALL-META` (never jumped to: one `RETURN` rule whose comment holds the policy version and a
digest of the other chains, one per set with the digest of its contents), one jump from `INPUT`
and one from `OUTPUT`, each the first rule of its chain, and ipsets named `nodewall-*` (see
`backends.ipset`). Rules are rendered in the canonical form `iptables-save` prints, so checking
a read-back is a comparison; `status` recomputes the digests from the kernel, so it needs no
state file. The host's variant (iptables-legacy or iptables-nft) is detected (`xtables`) and
used for every command; the `iptables` alternatives link is never used.

Apply. Read both families' filter tables and nodewall's sets. If the chains the policy needs
are already loaded (with the sets in their current slots) only set contents can differ: each
changed set is filled under its other slot name and swapped in (`ipset swap`, atomic per set),
`NODEWALL-META` is updated, then the temporary sets (now holding the old contents) are
destroyed. Otherwise each set whose contents or type change is created and filled in the slot
the running rules do not use (an unchanged set is kept and the new rules name it again), then
each family's chains and jumps are replaced by one `*-restore --noflush` transaction (user chains
declared in a `--noflush` restore are flushed and refilled; built-in chains are never declared,
so their policies and other rules stay), then the sets no rule uses any more are destroyed. So
a full apply never changes what the running rules match: rules and the sets they name switch
together, per family. Read-back, verification and the conntrack cut follow, as in nftables.
Sets get a hash seed fixed by their name, so a re-created set reads back byte-identical.

Verdicts. nodewall's "accept" is `RETURN` to the built-in chain, not `ACCEPT`: the packet goes
on through the rest of INPUT/OUTPUT (a cloud agent's rules, the chain policy), exactly as an
nftables accept goes on to every other base chain of the hook. A drop or reject is final. So, as
with nftables, other tools' rules can narrow what nodewall allows, never widen it, and nodewall
never switches another tool's deny off (Azure's agent drops non-root traffic to its wire server
in OUTPUT; an `ACCEPT` placed first would bypass that).

IPv4 and IPv6 order. The families are two kernel transactions: IPv6 first, IPv4 last. The
IPv6 load is the one likelier to fail (hosts with IPv6 disabled or without ip6tables modules);
done first, its failure costs no rollback and leaves IPv4 untouched. IPv4 carries the management
path and the agent's connection to its control plane, so it is written exactly once, as the
commit point, after everything else succeeded. When the second transaction (or the read-back)
fails, the first family is restored from the snapshot taken before apply (its old chains and
jump positions, its old sets still in place because new contents went to the other slot), and
the new sets are destroyed: both families stay on their previous rules.

Concurrency and crashes. Apply and remove hold the per-namespace apply lock
(`nodewall.backends.applylock`) from the first read to the last write, so two runs take turns.
The steps that move the kernel from one whole policy to the next (both families' restores, or
the set swaps and `NODEWALL-META`, each with its verification and rollback; and the steps of
`remove`) run in a detached child (`nodewall.backends.detached`): a SIGKILL of `nodewall
apply` between them cannot leave IPv6 on the new policy and IPv4 on the old. Killed before
them, the kernel keeps the old policy plus unreferenced spare sets (status names them; the
next apply destroys them); killed after them, the new policy is whole but its flows were not
cut and old sets may be left over.

Caveats (documented, accepted): between the two transactions (milliseconds) the families run
different versions; in a set-only update each set switches atomically but sets switch one after
another, in one `ipset restore` run; a policy rule split into several iptables rules (several
ICMP types, more than 15 ports) gets one rate-limit bucket per split rule.

Never: run a shell, write customer text (a policy has none; reasons are still sanitised for
comments), declare a built-in chain, or flush, delete or reorder anything not named NODEWALL-*
or nodewall-*.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nodewall.backends import applylock
from nodewall.backends.base import ApplyResult, BackendError, Status
from nodewall.backends.conntrack import NO_CUT, cut_refused_flows, only_accepts_use
from nodewall.backends.detached import run_detached
from nodewall.backends.iptables import ipset, xtables
from nodewall.backends.iptables.render import (
    CHAIN,
    FAMILIES,
    FIRST,
    HOOK,
    META_CHAIN,
    Chains,
    chains_digest,
    family_chains,
    render,
    restore_text,
)
from nodewall.backends.iptables.xtables import FamilyNum, FilterTable, Variant
from nodewall.backends.rejects import count_key
from nodewall.policy.model import NodePolicy, check_policy

_VERSION_RE = re.compile(r'--comment "nodewall version ([0-9a-f]+) rules ([0-9a-f]+)"')
_COUNTED = re.compile(r'^\[(\d+):\d+\] -A ' + CHAIN["in"] + r' .*--comment "([^"]*)"', re.M)
_SET_RE = re.compile(r'--comment "set (nodewall-[A-Za-z0-9_-]+) ([0-9a-f]+)"')


# ------------------------------------------------------------------------------------- kernel


@dataclass(frozen=True)
class KernelState:
    tables: dict[FamilyNum, FilterTable]
    sets: dict[str, ipset.KernelSet]

    def referenced(self) -> set[str]:
        found: set[str] = set()
        for table in self.tables.values():
            for lines in table.ours().values():
                for line in lines:
                    found.update(re.findall(r"--match-set (nodewall-\S+) ", line))
        return found

    def jumps(self, family: FamilyNum) -> dict[str, list[int]]:
        table = self.tables[family]
        return {c: table.positions(h, f"-A {h} -j {c}") for c, h in HOOK.items()}


def _read(variant: Variant) -> KernelState:
    return KernelState({f: xtables.read_filter(variant, f) for f in FAMILIES}, ipset.read_sets())


class IptablesBackend:
    """The `Backend` for iptables + ipset (see the design note)."""

    name = "iptables"

    def __init__(self, variant: Variant | None = None) -> None:
        self._fixed = variant

    def variant(self) -> Variant:
        return self._fixed or xtables.detect_variant()

    def render(self, policy: NodePolicy) -> str:
        return render(policy)

    # -- apply ------------------------------------------------------------------------------
    def apply(self, policy: NodePolicy) -> ApplyResult:
        check_policy(policy)
        with applylock.held():  # one apply at a time in this network namespace
            return self._apply(policy)

    def _apply(self, policy: NodePolicy) -> ApplyResult:
        version = policy.version
        variant = self.variant()
        state = _read(variant)
        referenced = state.referenced()
        slots: dict[str, str | None] = {}
        for s in policy.sets:
            held = [x for x in "ab" if ipset.kernel_name(s.name, x) in referenced]
            slots[s.name] = held[0] if len(held) == 1 else None
        if all(slots.values()):
            names = {n: ipset.kernel_name(n, str(x)) for n, x in slots.items()}
            want = {f: family_chains(policy, f, names, version) for f in FAMILIES}
            same_chains = all(
                {**state.tables[f].ours(), META_CHAIN: []} == {**want[f], META_CHAIN: []}
                and state.jumps(f) == FIRST for f in FAMILIES)
            same_types = all(
                (k := state.sets.get(names[s.name])) is not None
                and (k.type, k.family) == (ipset.set_type(s), ipset.set_family(s))
                for s in policy.sets)
            if same_chains and same_types:
                widening = _only_widens(policy, state, names)  # goal 5
                changed = self._update_sets(variant, policy, state, names, want)
                if not changed:  # goal 2
                    return ApplyResult(self.name, version, False, False)
                return ApplyResult(self.name, version, True, True,
                                   *(NO_CUT if widening else cut_refused_flows(policy)))
        self._full_apply(variant, policy, state, slots, version)
        return ApplyResult(self.name, version, True, False, *cut_refused_flows(policy))

    def _full_apply(self, variant: Variant, policy: NodePolicy, state: KernelState,
                    slots: Mapping[str, str | None], version: str) -> None:
        names: dict[str, str] = {}
        lines: list[str] = []
        new_sets: list[str] = []
        for s in policy.sets:
            slot = slots[s.name]
            if slot is not None:
                held = state.sets.get(ipset.kernel_name(s.name, slot))
                if held is not None and (held.type, held.family, held.members) == (
                        ipset.set_type(s), ipset.set_family(s), ipset.members(s)):
                    names[s.name] = held.name  # unchanged: the new rules keep using it
                    continue
            names[s.name] = ipset.kernel_name(s.name, ipset.other_slot(slot) if slot else "a")
            if names[s.name] in state.sets:  # a leftover no running rule uses
                lines.append(f"destroy {names[s.name]}")
            lines += ipset.create_lines(names[s.name], s)
            new_sets.append(names[s.name])
        try:
            ipset.restore(lines)
        except BackendError:
            _destroy_quietly(new_sets)
            raise
        want = {f: family_chains(policy, f, names, version) for f in FAMILIES}

        def commit() -> None:  # both families or neither, even if this process is killed
            done: list[FamilyNum] = []
            try:
                for family in FAMILIES:
                    text = restore_text(want[family], state.tables[family], FIRST)
                    if text:
                        xtables.restore(variant, family, text)
                    done.append(family)
                problems = _verify(variant, want, policy, names, new_sets)
                if problems:
                    raise BackendError("iptables read-back differs from the rendered policy:\n"
                                       + "\n".join(problems))
            except BackendError as exc:
                rolled = self._rollback(variant, state, done)  # goal 1
                _destroy_quietly(new_sets)
                raise BackendError(f"{exc}\n{rolled}") from exc

        run_detached(commit)
        _destroy_quietly(sorted(set(state.sets) - set(names.values())))

    def _rollback(self, variant: Variant, old: KernelState, families: list[FamilyNum]) -> str:
        failed = []
        for family in families:
            try:
                now = xtables.read_filter(variant, family)
                text = restore_text(old.tables[family].ours(), now, old.jumps(family))
                if text:
                    xtables.restore(variant, family, text)
                if not old.tables[family].exists:
                    xtables.drop_empty_table(variant, family)
            except BackendError as exc:
                failed.append(f"IPv{family} rollback failed: {exc}")
        done = ", ".join(f"IPv{f}" for f in families) or "nothing"
        return "\n".join(failed) or f"rolled back: {done}; both families hold their previous rules"

    def _update_sets(self, variant: Variant, policy: NodePolicy, state: KernelState,
                     names: Mapping[str, str], want: Mapping[FamilyNum, Chains]) -> bool:
        """Swap in changed set contents and update NODEWALL-META; False when nothing differs."""
        changed = [s for s in policy.sets if state.sets[names[s.name]].members != ipset.members(s)]
        stray = sorted(set(state.sets) - set(names.values()))
        metas = [f for f in FAMILIES
                 if state.tables[f].chains.get(META_CHAIN) != want[f][META_CHAIN]]
        if not changed and not metas:
            _destroy_quietly(stray)
            return bool(stray)
        temps = {s.name: ipset.other_name(names[s.name]) for s in changed}
        fill: list[str] = []
        for s in changed:
            if temps[s.name] in state.sets:
                fill.append(f"destroy {temps[s.name]}")
            fill += ipset.create_lines(temps[s.name], s)
        swaps = [f"swap {names[s.name]} {temps[s.name]}" for s in changed]
        try:
            ipset.restore(fill)  # every temporary is full before the first swap
        except BackendError:
            _destroy_quietly(list(temps.values()))
            raise

        def commit() -> None:  # the swaps and META together, even if this process is killed
            done: list[FamilyNum] = []
            try:
                ipset.restore(swaps)
                for family in metas:
                    body = "\n".join([f":{META_CHAIN} - [0:0]", *want[family][META_CHAIN]])
                    xtables.restore(variant, family, f"*filter\n{body}\nCOMMIT\n")
                    done.append(family)
                problems = _verify(variant, want, policy, names,
                                   [names[s.name] for s in changed])
                if problems:
                    raise BackendError("iptables read-back differs from the rendered policy:\n"
                                       + "\n".join(problems))
            except BackendError as exc:
                now = ipset.read_sets()
                back = [f"swap {names[s.name]} {temps[s.name]}" for s in changed
                        if (live := now.get(names[s.name])) is not None
                        and live.members == ipset.members(s) and temps[s.name] in now]
                try:
                    ipset.restore(back)
                finally:
                    self._rollback(variant, state, done)
                    _destroy_quietly(list(temps.values()))
                raise BackendError(f"{exc}\nrolled back: sets and {META_CHAIN} hold their "
                                   "previous contents") from exc

        run_detached(commit)
        _destroy_quietly([*temps.values(), *stray])
        return True

    # -- status and remove ------------------------------------------------------------------
    def _reading_variant(self) -> Variant | None:
        """The variant to read for status/remove: on a host where both hold rules, the one
        holding nodewall's chains (None: neither does)."""
        try:
            return self.variant()
        except BackendError:
            variants: tuple[Variant, ...] = ("legacy", "nft")
            held = [v for v in variants
                    if any(xtables.read_filter(v, f).ours() for f in FAMILIES)]
            if len(held) > 1:
                raise
            return held[0] if held else None

    def rejected_packets(self) -> dict[tuple[str, str], int]:
        """Packets the ingress reject rules refused, both families summed, by (protocol, port)
        of the node and `("any", "other")` for the rest (`nodewall.backends.rejects`), from
        the rule counters `iptables-save -c` prints."""
        counts: dict[tuple[str, str], int] = {}
        variant = self._reading_variant()
        if variant is None:
            return counts
        for family in FAMILIES:
            text = xtables.run([xtables.tool(variant, family, "save"), "-c", "-t", "filter"])
            for match in _COUNTED.finditer(text):
                key = count_key(match.group(2))
                if key is not None:
                    counts[key] = counts.get(key, 0) + int(match.group(1))
        return counts

    def status(self) -> Status:
        variant = self._reading_variant()
        if variant is None:
            return Status(self.name, False, None, ("no NODEWALL- chains",))
        state = _read(variant)
        present = any(state.tables[f].ours() for f in FAMILIES) or bool(state.sets)
        if not present:
            return Status(self.name, False, None, ("no NODEWALL- chains or nodewall- sets",))
        drift: list[str] = []
        versions: set[str] = set()
        expected_sets: dict[str, str] = {}
        for family in FAMILIES:
            ours = state.tables[family].ours()
            meta = "\n".join(ours.get(META_CHAIN, []))
            found = _VERSION_RE.search(meta)
            if found is None:
                drift.append(f"IPv{family}: {META_CHAIN} (version marker) missing or edited")
                continue
            versions.add(found.group(1))
            if chains_digest(ours) != found.group(2):
                drift.append(f"IPv{family}: NODEWALL- chains differ from what was applied")
            expected_sets.update(_SET_RE.findall(meta))
            for chain, positions in state.jumps(family).items():
                if positions != [1]:
                    where = "missing" if not positions else f"at {positions}, not only first"
                    drift.append(f"IPv{family}: jump to {chain} from {HOOK[chain]} {where}")
        if len(versions) > 1:
            drift.append(f"IPv4 and IPv6 hold different versions: {sorted(versions)}")
        for name, digest in sorted(expected_sets.items()):
            held = state.sets.get(name)
            if held is None:
                drift.append(f"set {name}: missing")
            elif held.digest != digest:
                drift.append(f"set {name}: contents differ ({len(held.members)} members held)")
        drift += [f"set {n}: not made by the applied policy" for n in
                  sorted(set(state.sets) - set(expected_sets))]
        version = sorted(versions)[0] if len(versions) == 1 else None
        return Status(self.name, True, version, tuple(drift))

    def remove(self) -> bool:
        with applylock.held():
            return self._remove()

    def _remove(self) -> bool:
        variant = self._reading_variant()
        if variant is None:
            return False
        state = _read(variant)

        def commit() -> bool:  # both families and the sets, even if this process is killed
            removed = False
            for family in FAMILIES:
                text = restore_text({}, state.tables[family], {})
                if text:
                    xtables.restore(variant, family, text)
                    removed = True
            if state.sets:
                ipset.restore([f"destroy {name}" for name in sorted(state.sets)])
                removed = True
            return removed

        return run_detached(commit)


def _only_widens(policy: NodePolicy, state: KernelState, names: Mapping[str, str]) -> bool:
    """True when a set-only update refuses no flow admitted now (so no conntrack cut): sets
    only gain members, and only accept rules name them."""
    grown = {s.name for s in policy.sets
             if state.sets[names[s.name]].members != ipset.members(s)}
    if not all(state.sets[names[n]].members <= ipset.members(policy.set(n)) for n in grown):
        return False
    return only_accepts_use(policy, grown)


def _verify(variant: Variant, want: Mapping[FamilyNum, Chains], policy: NodePolicy,
            names: Mapping[str, str], written: Sequence[str]) -> list[str]:
    """What the kernel holds that differs from the intended chains, jumps and the sets this
    apply wrote (`written`; the others were read, found right and left alone)."""
    problems: list[str] = []
    for family in FAMILIES:
        table = xtables.read_filter(variant, family)
        ours = table.ours()
        for chain in sorted(set(ours) | set(want[family])):
            if ours.get(chain) != want[family].get(chain):
                problems.append(f"IPv{family} chain {chain}: read back differs")
        for chain, hook in HOOK.items():
            if table.positions(hook, f"-A {hook} -j {chain}") != [1]:
                problems.append(f"IPv{family}: jump to {chain} is not the one first rule")
    held = ipset.read_sets(written)
    for s in policy.sets:
        if names[s.name] not in written:
            continue
        got = held.get(names[s.name])
        if got is None or got.members != ipset.members(s):
            problems.append(f"set {names[s.name]}: read back differs")
    return problems


def _destroy_quietly(names: list[str]) -> None:
    """Destroy sets; one still referenced (or gone) is left, and status shows it."""
    try:
        ipset.restore([f"destroy {name}" for name in names])
    except BackendError:
        for name in names:  # one by one, so that one failure does not keep the others
            with contextlib.suppress(BackendError):
                ipset.restore([f"destroy {name}"])
