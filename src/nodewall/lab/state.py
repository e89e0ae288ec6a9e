"""The lab's record of what it made (`<workdir>/lab.json`): its prefix and backend, the
namespaces and processes it started, the nodes each service has now, the server's address and
its CA file, and the measurements so far. Written after every step, so that `nodewall lab down`
can remove what a killed run left, and `lab check` / `lab change` can find a running lab.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "lab.json"


@dataclass
class LabState:
    workdir: str
    prefix: str
    backend: str
    namespaces: list[str] = field(default_factory=list)
    #: process name -> pid (each started in a session of its own)
    pids: dict[str, int] = field(default_factory=dict)
    #: service -> its nodes now (a replaced node leaves, its replacement joins)
    nodes: dict[str, list[str]] = field(default_factory=dict)
    #: service -> component -> port, as the control plane allocated them
    ports: dict[str, dict[str, int]] = field(default_factory=dict)
    server_url: str = ""
    #: the reachability matrices measured, in order ({"title", "cells": [...]})
    matrices: list[dict[str, Any]] = field(default_factory=list)
    #: the live changes made, with their timings
    changes: list[dict[str, Any]] = field(default_factory=list)
    #: node -> the policy versions its kernel was seen holding, in order
    versions: dict[str, list[str]] = field(default_factory=dict)
    up_seconds: float = 0.0

    @property
    def run_dir(self) -> Path:
        return Path(self.workdir) / "run"

    @property
    def ca_file(self) -> Path:
        return self.run_dir / "server.crt"

    @property
    def admin_token_file(self) -> Path:
        return self.run_dir / "admin.token"

    def save(self) -> None:
        path = Path(self.workdir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, path)

    def saw_version(self, node: str, version: str) -> None:
        seen = self.versions.setdefault(node, [])
        if not seen or seen[-1] != version:
            seen.append(version)

    @classmethod
    def load(cls, workdir: Path) -> LabState | None:
        path = workdir / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        return cls(**data)
