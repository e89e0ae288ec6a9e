"""A resident nodewall process, as the node agent holds one: started once in the node
namespace (untimed), it reads policy JSON file paths on stdin and for each decodes the policy
(the agent receives JSON) and applies it with one long-lived backend, printing the seconds
that took and its own peak RSS (VmHWM, kB) as one JSON line.

Run by `tools.nodewall_resident` as `ip netns exec NS python resident.py BACKEND`; it reads no
spec and compiles nothing (the control plane did that), as the agent never does.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from nodewall.backends.registry import get_backend
from nodewall.gcpause import collector_paused
from nodewall.policy.model import NodePolicy


def peak_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    backend = get_backend(sys.argv[1])
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        with collector_paused():
            policy = NodePolicy.from_json(Path(line.strip()).read_text(encoding="utf-8"))
            result = backend.apply(policy)
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "hwm_kb": peak_kb(),
                          "changed": result.changed}), flush=True)


if __name__ == "__main__":
    main()
