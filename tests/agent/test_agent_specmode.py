"""The serverless mode: `nodewall agent --spec FILE --node N` applies the file's policy and
re-applies when the file changes (an editor's write-and-rename, an in-place rewrite); a file
that stops validating is logged and the kernel keeps what it holds."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml
from conftest import BACKENDS, Cluster
from lab import Agent, reach, wait_until

PORT = 14017


def spec(ip_filter: list[str]) -> dict[str, object]:
    return {
        "platform": {"management_networks": ["198.51.100.0/28"]},
        "project": {"name": "solo", "base_port": 14000},
        "services": [{"name": "pg", "type": "pg", "cloud": "aws-eu-west-1",
                      "user_config": {"ip_filter": ip_filter}, "ports": {"pg": PORT},
                      "nodes": [{"name": "solo-1", "addresses": ["10.20.0.11"]}]}],
    }


def replace(path: Path, text: str) -> None:
    """Write as editors do: a new file renamed over the old one."""
    temp = path.with_name(path.name + ".swp")
    temp.write_text(text)
    os.replace(temp, path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_spec_file_changes_are_applied(cluster: Cluster, backend: str, tmp_path: Path) -> None:
    lab = cluster.lab
    lab.listeners["n1"].ensure(tcp={PORT})
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec(["203.0.113.0/24"])))
    agent = Agent(lab.ns("n1"), "solo-1", backend, tmp_path, ["--spec", str(path)])
    lab.agents.append(agent)
    agent.start()
    agent.wait_event("applied", timeout=20)
    assert reach(lab, "client", "n1", PORT) == "open"
    assert reach(lab, "stranger", "n1", PORT) == "refused"

    replace(path, yaml.safe_dump(spec(["192.0.2.0/24"])))
    changed = time.monotonic()
    wait_until(lambda: reach(lab, "stranger", "n1", PORT, timeout=0.1) == "open", 3,
               "the renamed-in file applied")
    assert reach(lab, "client", "n1", PORT) == "refused"
    print(f"{backend}: file replaced -> enforced in {time.monotonic() - changed:.3f} s")

    seen = len(agent.events())
    path.write_text("services: [ {name: broken\n")  # rewritten in place, and invalid
    bad = agent.wait_event("spec_invalid", after=seen)
    assert bad["rules"] == "kept" and bad["errors"]
    assert reach(lab, "stranger", "n1", PORT) == "open", "an invalid file changes nothing"

    path.write_text(yaml.safe_dump(spec(["203.0.113.0/24", "192.0.2.0/24"])))
    wait_until(lambda: reach(lab, "client", "n1", PORT, timeout=0.1) == "open", 3,
               "the repaired file applied")
    applied = [e for e in agent.events() if e["event"] == "applied"]
    assert applied[-1]["change_to_kernel"] is not None and applied[-1]["change_to_kernel"] < 3
    assert applied[0]["change_to_kernel"] is None, "the file's age at start is no latency"
