"""nodewall itself, as an operator runs it: `nodewall apply SPEC --node N --backend B`, for
the nftables and the iptables backend; the change is the same command on the changed spec
(the command reads the kernel and applies in place what it can)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from .base import Case, Script, Tool

NODEWALL = str(Path(sys.executable).with_name("nodewall"))


class Nodewall(Tool):
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.name = f"nodewall-{backend}"

    def _apply(self, spec: Path) -> Script:
        return Script(f"exec {shlex.quote(NODEWALL)} apply {shlex.quote(str(spec))} "
                      f"--node big-0 --backend {self.backend}\n")

    def apply(self, case: Case, work: Path) -> Script:
        return self._apply(case.spec)

    def change(self, case: Case, work: Path) -> Script:
        return self._apply(case.spec_changed)
