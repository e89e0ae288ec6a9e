"""nodewall as the agent runs it: a resident process (`peers/resident.py`) with one
long-lived backend, handed the compiled policy as JSON; timed inside that process from
reading the JSON to the verified kernel (decode, apply, read back, conntrack cut), its peak
RSS its own VmHWM. The change is the changed policy handed to the same process (in place
where the backend can)."""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from ..node import compiled
from ..sandbox import Run
from .base import Case, Script, Tool

WORKER = Path(__file__).resolve().parents[1] / "resident.py"


class NodewallResident(Tool):
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.name = f"nodewall-{backend}-resident"
        self.proc: subprocess.Popen[str] | None = None

    @contextlib.contextmanager
    def session(self, ns: str, work: Path) -> Iterator[None]:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(WORKER),
                                      self.backend], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        try:
            self._answer(60.0)
            yield
        finally:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def _answer(self, timeout: float) -> dict[str, object] | None:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the resident process exited")
        answer: dict[str, object] = json.loads(line)
        return answer

    def measure(self, spec: Path, work: Path, cutoff: float) -> Run:
        path = work / f"{spec.stem}.policy.json"
        path.write_text(compiled(spec).to_json(), encoding="utf-8")
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{path}\n")
        self.proc.stdin.flush()
        answer = self._answer(cutoff)
        if answer is None:
            self.proc.kill()
            return Run(None, 0, cutoff, -9, "")
        seconds, hwm = answer["seconds"], answer["hwm_kb"]
        assert isinstance(seconds, float) and isinstance(hwm, int)
        return Run(seconds, hwm, cutoff, 0, "")

    def apply(self, case: Case, work: Path) -> Script:
        raise TypeError(f"{self.name} is measured in its own process: see measure")

    change = apply
