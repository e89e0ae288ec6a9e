"""The lab's report: one self-contained HTML file (no script, no external asset) with every
reachability matrix as a coloured table (each cell's deciding rule in a tooltip and below the
outcome), the live changes' convergence times as an SVG bar chart with one dot per node, and
the policy versions each node's kernel held, in order.

Every text is HTML-escaped; reasons are nodewall's own text, and no customer description is in
the lab's state.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from nodewall.lab.check import cell_text, disagreements
from nodewall.lab.state import LabState

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.6em} h2{font-size:1.25em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3;font-weight:600}
td small,td em{display:block;color:#555;font-size:11px} td b{font-weight:600}
td.open{background:#d9f2d9} td.refused{background:#fdf0c8} td.timeout{background:#f2d9f2}
td.none{background:#fafafa;color:#999} td.bad{background:#e53935;color:#fff;font-weight:700}
td.bad small{color:#fff} .ok{color:#2e7d32;font-weight:600} .fail{color:#c62828;font-weight:700}
code{background:#f3f3f3;padding:0 3px} td.flipped{outline:3px solid #1565c0;outline-offset:-3px}
summary{cursor:pointer;font-weight:600;font-size:1.1em;margin:1em 0 .3em}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _class(cell: dict[str, Any]) -> str:
    if not cell["agrees"]:
        return "bad"
    return {"open": "open", "refused": "refused", "timeout": "timeout"}.get(cell["outcome"],
                                                                             "none")


def matrix_table(cells: list[dict[str, Any]], corner: str, flip: bool = False,
                 previous: list[dict[str, Any]] | None = None) -> str:
    """Rows: the cells' columns; columns: the cells' rows (flip: the other way round). A cell
    whose outcome differs from the same cell of `previous` is outlined."""
    was = {(c["row"], c["column"]): c["outcome"] for c in previous or []}
    def row_of(c: dict[str, Any]) -> str:
        return str(c["row"] if flip else c["column"])

    def col_of(c: dict[str, Any]) -> str:
        return str(c["column"] if flip else c["row"])

    cols = list(dict.fromkeys(col_of(c) for c in cells))
    rows = list(dict.fromkeys(row_of(c) for c in cells))
    by = {(row_of(c), col_of(c)): c for c in cells}
    out = [f'<table class="matrix"><tr><th>{_e(corner)}</th>',
           *(f"<th>{_e(c)}</th>" for c in cols), "</tr>"]
    for r in rows:
        out.append(f"<tr><th>{_e(r)}</th>")
        for col in cols:
            c = by.get((r, col))
            if c is None:
                out.append('<td class="none"></td>')
                continue
            tip = "; ".join(c["details"]) or c["reason"]
            before = was.get((c["row"], c["column"]))
            flipped = " flipped" if before is not None and before != c["outcome"] else ""
            mark = f"<em>was {_e(before)}</em>" if flipped else ""
            out.append(f'<td class="{_class(c)}{flipped}" title="{_e(tip)}">'
                       f"<b>{_e(cell_text(c))}</b>{mark}<small>{_e(c['reason'])}</small></td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def change_chart(changes: list[dict[str, Any]]) -> str:
    """Horizontal bars: each change's time until every changed node's kernel held it; a dot
    per node at its own arrival."""
    if not changes:
        return "<p>No live changes were made.</p>"
    longest = max(max(n["seconds"] for n in c["nodes"]) for c in changes) or 1.0
    left, width, bar = 330, 560, 26
    height = 30 + len(changes) * (bar + 14)
    scale = width / longest
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" '
             f'height="{height + 20}" role="img" aria-label="convergence time per change">']
    for i in range(5):
        x = left + width * i / 4
        parts.append(f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{height}" stroke="#ddd"/>'
                     f'<text x="{x:.1f}" y="{height + 14}" font-size="11" text-anchor="middle">'
                     f"{longest * i / 4:.2f} s</text>")
    for i, c in enumerate(changes):
        y = 20 + i * (bar + 14)
        w = c["converged_seconds"] * scale
        parts.append(f'<text x="{left - 8}" y="{y + bar / 2 + 4}" font-size="12" '
                     f'text-anchor="end">{_e(c["title"][:48])}</text>'
                     f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar}" fill="#42a5f5">'
                     f'<title>{_e(c["title"])}: {c["converged_seconds"]:.3f} s</title></rect>'
                     f'<text x="{left + w + 6:.1f}" y="{y + bar / 2 + 4}" font-size="12">'
                     f'{c["converged_seconds"]:.3f} s</text>')
        for n in c["nodes"]:
            parts.append(f'<circle cx="{left + n["seconds"] * scale:.1f}" cy="{y + bar / 2}" '
                         f'r="3.5" fill="#0d47a1"><title>{_e(n["node"])}: {n["seconds"]:.3f} s'
                         "</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


def change_table(changes: list[dict[str, Any]]) -> str:
    out = ["<table><tr><th>change</th><th>API answered</th><th>every kernel enforcing</th>"
           "<th>nodes changed</th><th>slowest node</th></tr>"]
    for c in changes:
        changed = c["nodes"]
        slowest = max(changed, key=lambda n: n["seconds"])
        out.append(f"<tr><td>{_e(c['title'])}</td><td>{c['api_seconds']:.3f} s</td>"
                   f"<td>{c['converged_seconds']:.3f} s</td><td>{len(changed)} of "
                   f"{len(changed) + len(c['unchanged'])}</td><td>{_e(slowest['node'])} "
                   f"({slowest['seconds']:.3f} s)</td></tr>")
    out.append("</table>")
    return "".join(out)


def versions_table(versions: dict[str, list[str]]) -> str:
    out = ["<table><tr><th>node</th><th>versions its kernel held, in order</th></tr>"]
    for node in sorted(versions):
        seq = " &rarr; ".join(f"<code>{_e(v)}</code>" for v in versions[node])
        out.append(f"<tr><td>{_e(node)}</td><td>{seq}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _flips(previous: dict[str, Any] | None, now: dict[str, Any]) -> int:
    if previous is None:
        return 0
    was = {(c["row"], c["column"]): c["outcome"] for c in (*previous["cells"],
                                                             *previous["egress"])}
    return sum(1 for c in (*now["cells"], *now["egress"])
               if was.get((c["row"], c["column"]), c["outcome"]) != c["outcome"])


def render(state: LabState) -> str:
    bad = sum(len(disagreements(m)) for m in state.matrices)
    verdict = ('<span class="ok">every cell agrees with the policy</span>' if not bad else
               f'<span class="fail">{bad} cell(s) disagree with the policy</span>')
    body = [f"<h1>nodewall lab report</h1><p>Backend <code>{_e(state.backend)}</code>, "
            f"namespace prefix <code>{_e(state.prefix)}</code>, written "
            f"{_e(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}. Up in {state.up_seconds:.1f} s. "
            f"{verdict}.</p>",
            "<p>Each cell is a real TCP connection to every node of the service: "
            "<b>open</b> (handshake completed), <b>refused</b> (reset or ICMP error at once) "
            "or <b>timeout</b>; it is red when any node's outcome differs from what its policy "
            "says. The small text is the deciding rule's reason.</p>"]
    body.append("<h2>Live changes: time until every node's kernel enforces them</h2>")
    body.append(change_chart(state.changes))
    body.append(change_table(state.changes))
    body.append("<h2>Reachability</h2><p>Rows: the service, component and port; columns: "
                "the client. A PostgreSQL port counts as open only when the real server "
                "answers <code>pg_isready</code>. After a change, the cells it flipped are "
                "outlined in blue.</p>")
    previous: dict[str, Any] | None = None
    for i, m in enumerate(state.matrices):
        flips = _flips(previous, m)
        note = "" if previous is None else f" ({flips} cell(s) changed)"
        body.append(f"<details{' open' if i in (0, len(state.matrices) - 1) else ''}>"
                    f"<summary>{_e(m['title'])}{_e(note)}</summary>")
        body.append(matrix_table(m["cells"], "to \\ from",
                                 previous=previous["cells"] if previous else None))
        body.append("<h3>Egress</h3>")
        body.append(matrix_table(m["egress"], "from \\ to", flip=True,
                                 previous=previous["egress"] if previous else None))
        body.append("</details>")
        previous = m
    body.append("<h2>Policy versions each node's kernel held</h2>")
    body.append(versions_table(state.versions))
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>nodewall lab report</title><style>{CSS}</style></head><body>"
            + "".join(body) + "</body></html>\n")


def write(state: LabState, path: Path | None = None) -> Path:
    target = path or Path(state.workdir) / "lab-report.html"
    target.write_text(render(state), encoding="utf-8")
    return target
