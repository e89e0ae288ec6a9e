"""`nodewall lab` end to end, on both backends, as the README runs it: every cell of every
matrix agrees with the policy, every live change converges on every node, and nothing is left
behind (namespaces, processes, files outside the work directory). The report is opened in a
real headless browser (Debian's chromium): it renders, and its first matrix has the cells the
terminal printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import lab_processes, root_namespace, run_lab, snapshot

CHANGES = 4
MATRICES = 1 + CHANGES


#: one whole run per backend, whichever tests ask for it (the browser test asks for one)
_RUNS: dict[str, dict[str, object]] = {}


@pytest.fixture(scope="module", params=["nftables", "iptables"])
def whole_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, object]:
    backend = request.param
    if backend not in _RUNS:
        _RUNS[backend] = _run_whole(backend, tmp_path_factory)
    return _RUNS[backend]


def _run_whole(backend: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    workdir = Path(tempfile.mkdtemp(prefix="nwlab-test-", dir="/var/tmp"))
    workdir.chmod(0o755)
    before, root_before = snapshot(), root_namespace()
    try:
        proc = run_lab(workdir, "--backend", backend)
        after, root_after = snapshot(), root_namespace()
        leftovers = lab_processes(workdir)
        report = (workdir / "lab-report.html").read_text() \
            if (workdir / "lab-report.html").exists() else ""
        kept = tmp_path_factory.mktemp(f"lab-{backend}") / "lab-report.html"
        kept.write_text(report)
    finally:
        if (workdir / "lab.json").exists():
            run_lab(workdir, "down", timeout=60)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    return {"backend": backend, "proc": proc, "new": after - before - {str(workdir)},
            "root": (root_before, root_after),
            "gone": before - after, "leftovers": leftovers, "report": kept}


def test_every_cell_agrees_and_every_change_converges(whole_run: dict[str, object]) -> None:
    proc = whole_run["proc"]
    assert isinstance(proc, subprocess.CompletedProcess)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    out = proc.stdout
    agreed = re.findall(r"all (\d+) cells agree with the policy", out)
    assert len(agreed) == MATRICES, out[-3000:]
    assert all(int(n) > 150 for n in agreed)
    converged = re.findall(r"every kernel enforcing in (\d+) ms \((\d+) node\(s\) changed\)", out)
    assert len(converged) == CHANGES, out[-3000:]
    assert all(int(nodes) >= 3 for _, nodes in converged)
    assert "disagree" not in out and "lab failed" not in out
    assert "lab removed" in out


#: Outside CI, other suites or developers' runs may work beside this one and make files in
#: the watched places: then only what carries the lab's names counts. In CI nothing else runs
#: at the same time, and every new entry counts.
LAB_NAMES = re.compile(r"nwlab|nodewall-lab|/var/lib/nodewall")


def test_nothing_left_behind(whole_run: dict[str, object]) -> None:
    assert whole_run["leftovers"] == []
    new: set[str] = whole_run["new"]  # type: ignore[assignment]
    if not os.environ.get("CI"):
        new = {n for n in new if LAB_NAMES.search(n)}
    assert new == set(), "left outside the work directory"
    assert not [n for n in whole_run["gone"] if str(n).startswith("netns:")]  # type: ignore[attr-defined]


def test_root_namespace_untouched(whole_run: dict[str, object]) -> None:
    """The root namespace's firewall, links and addresses are as before (outside CI, other
    suites' transient veths, named nwn*, may come and go meanwhile)."""
    before, after = whole_run["root"]  # type: ignore[misc]
    for key in before:
        if key == "links" and not os.environ.get("CI"):
            drop = re.compile(r"nwn[0-9a-f]")
            assert [x for x in before[key].splitlines() if not drop.search(x)] == \
                [x for x in after[key].splitlines() if not drop.search(x)]
        else:
            assert before[key] == after[key], key


class Tables(HTMLParser):
    """The report's tables as rows of cell texts (a cell's outcome is its <b>)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self._in_b = False
        self._in_small = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "b":
            self._in_b = True
        elif tag in ("small", "em"):
            self._in_small = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "b":
            self._in_b = False
        elif tag in ("small", "em"):
            self._in_small = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._in_small:
            self._cell.append(data)


def terminal_rows(out: str) -> list[list[str]]:
    """The first matrix's rows as the terminal printed them (rich's box characters)."""
    rows: list[list[str]] = []
    started = False
    for line in out.splitlines():
        if line.startswith("Reachability: at start"):
            started = True
            continue
        if started:
            if line.startswith("└"):
                break
            if line.startswith(("┃", "│")):
                rows.append([c.strip() for c in re.split(r"[┃│]", line)[1:-1]])
    return rows


@pytest.mark.parametrize("whole_run", ["nftables"], indirect=True)
def test_report_renders_in_a_browser_with_the_terminal_cells(
        whole_run: dict[str, object], tmp_path: Path) -> None:
    report = whole_run["report"]
    assert isinstance(report, Path)
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "nodewall lab report" in dom.stdout
    parser = Tables()
    parser.feed(dom.stdout)
    # tables: the change table, then per matrix its reachability and egress tables
    matrix = next(t for t in parser.tables if t and t[0] and t[0][0] == "to \\ from")
    printed = terminal_rows(whole_run["proc"].stdout)  # type: ignore[attr-defined]
    assert printed, "the terminal printed no matrix"
    assert len(matrix) == len(printed) > 10
    for html_row, term_row in zip(matrix, printed, strict=True):
        assert html_row == term_row
    svg = re.search(r"<svg[^>]*aria-label=\"convergence time per change\"", dom.stdout)
    assert svg is not None
    assert dom.stdout.count("<circle") >= 4 * 3
