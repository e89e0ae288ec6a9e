"""The nftables backend: a `NodePolicy` held in one `inet nodewall` table, applied atomically.

Design note
-----------
Goals (cited in the code as "goal N"):
1. The kernel of the current network namespace holds exactly the policy's table, or what it
   held before: never a moment with the table half-built or absent.
2. Re-applying the same policy sends nothing.
3. A change of set contents only (an ip_filter entry, a peer) is sent as element deltas, not a
   rebuild, and is verified without reading the whole table back.
4. Other tools' tables (Docker's, iptables-nft's `ip filter`, firewalld's) are never read as
   nodewall's, written, flushed or reordered: every message names table `inet nodewall`, and
   every dump is filtered to it (`nodewall.backends.nftables.dump`).
5. After a narrowing change, the flows the new policy refuses are ended for both ends
   (`nodewall.backends.conntrack`, `nodewall.backends.sockets`).

Model. `render` gives the text (`nftrender`), what `nft -f` would load; `apply` sends the same
table as nf_tables netlink messages (`nftwire`, over `nfnetlink`), the bytecode `nft` itself
would send for that text, so that `nft list` prints the rendered text back (a kernel test holds
them to that). Why not libnftables: its parser and evaluator take ~70 ms for 8000 interval
elements, and with an 8000-entry interval set in the table every later command, even adding one
element, refetches the set (~35 ms); sending messages directly takes a fraction of that
(docs/benchmarks.md). Comparison is on `nftwire.Image`s: set headers and element attributes,
chain headers, rule bytecode as the kernel dumps it (counter values left out). The applied
version and digests of the image live in the comment of the one rule of chain `version` (the
table comment cannot be updated in place); `status` checks the kernel against them, so it needs
no state file.

Apply. Build the plan and image. Know what the kernel holds: the image this object last
verified, when the ruleset generation (which every commit by anyone moves) is still the one it
verified at; else a read of the table. Equal: no-op. Table present with the same comment and
base-chain hooks: one transaction that updates it in place (`nftwire.update_batch`): element
deltas for sets that stay, changed chains flushed and refilled, the version rule replaced.
Otherwise (no table, or its hooks edited) one transaction `add table; delete table; table
inet nodewall {...}` (`nftwire.full_batch`). The kernel validates every message of a batch
before it commits any (all or nothing); a refused message is reported by its sequence number,
so the error names the object and the rule line. An in-place change from the image this
object verified is sent for that image's generation (`NFNL_BATCH_GENID`): the kernel commits it
only if nobody committed meanwhile, the check and the commit being one step, so afterwards the
kernel holds that image plus this batch, and reading the version chain back confirms it; if
somebody did commit (another tool in its own table, most likely), the kernel refuses the batch
and the change is worked out again from a fresh read and sent without a generation, so the redo
cannot be refused the same way. Any other commit (a full replacement, a change worked out from
a read) is followed by a read-back of the whole table, compared with the intended image. Any
difference raises `BackendError`. Every read sees table `inet nodewall` only: the kernel's
dumps are filtered client-side by family and table (`nodewall.backends.nftables.dump`; a chain dump
answers every table's chains). Then the conntrack cut (`nodewall.backends.conntrack`), skipped
when the change only added networks to sets that only accept rules use. The cyclic garbage
collector is held off during an apply (tens of thousands of element objects are made;
`nodewall.gcpause`).

Threads and namespaces. One netlink socket per backend object; it belongs to the network
namespace of the thread that opened it and is reopened when the calling thread is in another.
Not thread-safe: one backend object per thread.

Never: read customer text (a policy holds none; reasons are sanitised anyway), touch objects
outside `inet nodewall`, put timestamps or counters' values in what is compared.
"""

from __future__ import annotations

import os
import re

from nodewall.backends import netlink
from nodewall.backends.base import ApplyResult, BackendError, Status
from nodewall.backends.conntrack import NO_CUT, cut_refused_flows, only_accepts_use
from nodewall.backends.nftables import dump as nftdump
from nodewall.backends.nftables import nfnetlink as nl
from nodewall.backends.nftables import wire as nftwire
from nodewall.backends.nftables.render import CHAINS, VERSION_CHAIN, render_text
from nodewall.backends.nftables.steps import comment
from nodewall.backends.nftables.wire import Image, Plan
from nodewall.backends.rejects import count_key
from nodewall.gcpause import collector_paused
from nodewall.policy.model import NodePolicy, check_policy

__all__ = ["NftablesBackend", "comment", "render"]

_VERSION_RE = re.compile(r"^nodewall v=(?P<version>[0-9a-f]+) (?P<digests>.*)$")


def render(policy: NodePolicy) -> str:
    """The full ruleset text, in the form `nft list table inet nodewall` prints it back."""
    check_policy(policy)
    with collector_paused():
        image = nftwire.build(policy).image
    return render_text(policy, nftwire.version_text(policy.version, image))


def _netns_id() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


class NftablesBackend:
    """The `Backend` for nftables (see the design note)."""

    name = "nftables"

    def __init__(self) -> None:
        self._sock: nl.NfSocket | None = None
        self._netns = -1
        self._last: Image | None = None  # what the last apply verified in the kernel ...
        self._last_generation = -1  # ... at this ruleset generation

    def _socket(self) -> nl.NfSocket:
        netns = _netns_id()
        if self._sock is None or self._netns != netns:
            if self._sock is not None:
                self._sock.close()
            try:
                self._sock = nl.NfSocket()
            except OSError as exc:
                raise BackendError(f"nf_tables netlink is not available: {exc}") from exc
            self._netns, self._last = netns, None
        return self._sock

    def _read(self, sock: nl.NfSocket) -> Image | None:
        try:
            return nftwire.read_image(sock)
        except OSError as exc:
            raise BackendError(f"reading table inet nodewall failed: {exc}") from exc

    # -- Backend protocol -------------------------------------------------------------------
    def render(self, policy: NodePolicy) -> str:
        return render(policy)

    def apply(self, policy: NodePolicy) -> ApplyResult:
        with collector_paused():  # elements by the ten thousand (see `nodewall.gcpause`)
            return self._apply(policy)

    def _apply(self, policy: NodePolicy, fresh: bool = False) -> ApplyResult:
        """`fresh`: work from a read of the kernel, whatever this object remembers."""
        check_policy(policy)
        sock = self._socket()
        generation = sock.generation()
        last = self._last if generation == self._last_generation and not fresh else None
        self._last = None  # from here on `last` may be taken over by the new plan
        have = last if last is not None else self._read(sock)
        plan = nftwire.build(policy, last)
        want = plan.image
        if have is not None and _unchanged(have, plan):  # goal 2
            self._remember(want, generation)
            return ApplyResult(self.name, policy.version, changed=False, incremental=False)
        incremental = have is not None and have.skeleton() == want.skeleton()
        batch = (nftwire.update_batch(have, plan) if have is not None and _updatable(have, want)
                 else nftwire.full_batch(plan))
        # An increment from the state this object verified is committed only if the kernel is
        # still at that state's generation; the result is then known without a full read-back.
        vouched = incremental and last is not None  # goal 3
        try:
            sock.transaction(batch, generation if vouched else None)
        except nl.GenerationChanged:
            # Somebody committed (most likely in another table) between the look at the
            # generation and the batch. Redo from a fresh read: that batch carries no
            # generation, so it cannot meet this again, and it is verified by a full read-back.
            return self._apply(policy, fresh=True)
        except netlink.NetlinkError as exc:
            what = batch[exc.index].what if 0 <= exc.index < len(batch) else "the batch"
            raise BackendError(f"nftables apply failed; the kernel keeps its previous ruleset:"
                               f"\n{what}: {exc.strerror}") from exc
        self._verify(sock, plan, generation + 1 if vouched else None)
        widens = incremental and _only_widens(have, plan, policy)  # goal 5
        cut = NO_CUT if widens else cut_refused_flows(policy)
        return ApplyResult(self.name, policy.version, True, incremental, *cut)

    def _verify(self, sock: nl.NfSocket, plan: Plan, generation: int | None) -> None:
        """Confirm the kernel holds `plan`. After an increment committed at the generation of
        the state this object verified, the kernel holds that state plus the batch, at the
        next `generation`: the version chain is read back to confirm. Otherwise (None): the
        whole table is read back and compared."""
        if generation is not None and _version_rules(sock) == plan.image.rules[VERSION_CHAIN]:
            self._remember(plan.image, generation)
            return
        before = sock.generation()  # taken first: a commit during the read moves it on
        got = self._read(sock)
        if got != plan.image:
            drift = nftwire.describe_drift(plan.image, got) if got else ["table missing"]
            raise BackendError("nftables read-back differs from the rendered policy:\n"
                               + "\n".join(drift))
        self._remember(plan.image, before)

    def _remember(self, image: Image, generation: int) -> None:
        self._last, self._last_generation = image, generation

    def status(self) -> Status:
        with collector_paused():
            have = self._read(self._socket())
        if have is None:
            return Status(self.name, False, None, ("table inet nodewall is missing",))
        marker = nftwire.version_comment_of(have)
        match = _VERSION_RE.match(marker or "")
        if match is None:
            return Status(self.name, True, None, ("version marker missing or edited",))
        drift = _digest_drift(match.group("digests"), have.digests())
        return Status(self.name, True, match.group("version"), tuple(drift))

    def rejected_packets(self) -> dict[tuple[str, str], int]:
        """Packets the ingress reject rules refused, by (protocol, port) of the node and
        `("any", "other")` for the rest (`nodewall.backends.rejects`), from the rules' counters."""
        counts: dict[tuple[str, str], int] = {}
        try:
            rules = nftdump.ours(self._socket(), nl.GETRULE, netlink.string(2, "input"))
        except OSError as exc:
            raise BackendError(f"reading the reject counters failed: {exc}") from exc
        for rule in rules:
            udata = rule.get(7, b"")
            key = count_key(udata[2:2 + udata[1] - 1].decode(errors="replace")
                            if len(udata) > 2 else "")
            if key is None:
                continue
            for _, item in netlink.iter_attrs(rule.get(4, b"")):
                e = netlink.parse_attrs(item)
                if netlink.text(e[1]) == "counter":
                    packets = netlink.parse_attrs(e.get(2, b"")).get(2, bytes(8))
                    counts[key] = counts.get(key, 0) + int.from_bytes(packets, "big")
        return counts

    def remove(self) -> bool:
        sock = self._socket()
        self._last = None
        if self._read(sock) is None:
            return False
        delete = nl.Message(nl.DELTABLE, nftwire.NFPROTO_INET, netlink.string(1, "nodewall"),
                            "delete table inet nodewall", flags=0)
        try:
            sock.transaction([delete])
        except netlink.NetlinkError as exc:
            raise BackendError(f"removing table inet nodewall failed: {exc.strerror}") from exc
        return True


def _version_rules(sock: nl.NfSocket) -> list[nftwire.RuleImage] | None:
    try:
        return [rule for _, rule in nftwire.read_rules(sock, chain=VERSION_CHAIN)]
    except OSError:
        return None


def _digest_drift(recorded: str, actual: str) -> list[str]:
    want = dict(p.split("=", 1) for p in recorded.split())
    have = dict(p.split("=", 1) for p in actual.split())
    drift = []
    for chain in CHAINS:
        w, h = want.get(chain, "?:?"), have.get(chain, "?:?")
        if w != h:
            wn, hn = w.split(":")[0], h.split(":")[0]
            if hn == "-1":
                drift.append(f"chain {chain}: missing")
            elif wn != hn:
                drift.append(f"chain {chain}: {hn} rules held, {wn} applied "
                             f"({'extra' if int(hn) > int(wn) else 'missing'} rules)")
            else:
                drift.append(f"chain {chain}: rules changed")
    if want.get("sets") != have.get("sets"):
        drift.append("sets, set elements, extra chains or objects changed")
    return drift


def _unchanged(have: Image, plan: Plan) -> bool:
    """True when the kernel's table already is the plan's (nothing to send)."""
    if plan.deltas is not None:  # built from `have`: its sets may have been taken over
        return not plan.deltas and have.skeleton() == plan.image.skeleton() and \
            have.rules.get(VERSION_CHAIN) == plan.image.rules[VERSION_CHAIN] and all(
                have.elements.get(n) is e for n, e in plan.image.elements.items())
    return have == plan.image


def _only_widens(have: Image | None, plan: Plan, policy: NodePolicy) -> bool:
    """True when the change only added networks to sets that only accept rules use: the new
    policy then admits every flow the old one did, and there is nothing to cut."""
    if have is None:
        return False
    want = plan.image
    if plan.deltas is not None:
        if any(d.networks_removed for d in plan.deltas.values()):
            return False
        grown = set(plan.deltas)
    else:
        grown = {n for n in want.elements if have.elements.get(n) != want.elements[n]}
        if any(n not in have.elements or not have.elements[n].issubset(want.elements[n])
               for n in grown):
            return False
    return only_accepts_use(policy, grown)


def _updatable(have: Image, want: Image) -> bool:
    """True when the table can be brought to `want` in place: same comment, same base chain
    hooks, no objects or flowtables nodewall did not make (a replacement removes those).
    Then sets that stay are never recreated (see `nftwire.update_batch`)."""
    return have.comment == want.comment and have.extras == want.extras and all(
        have.chains.get(c) == want.chains[c] for c in CHAINS)
