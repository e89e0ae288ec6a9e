"""nodewall beside the tools operators would otherwise use, on one pg node's policy.

One module per tool (`nodewall_cli`, `floors`, `iptables_script`, `ferm`, `ufw`, `firewalld`),
each turning the same `NodeFacts` into the files it reads and the shell script that applies
them; `sandbox` runs those scripts in per-run network namespaces (never the root one), inside
a private mount namespace where a tool keeps files under /etc, and times them with a cut-off;
`probes` checks each tool's verdicts against nodewall's and measures connect latency;
`runner` puts it together and `__main__` is the command line (`python -m peers` from bench/).
"""

import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parents[1]
for _path in (_BENCH, _BENCH.parent / "tests" / "kernel"):  # specgen; netns (test fixtures)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
