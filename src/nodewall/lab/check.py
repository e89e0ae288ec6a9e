"""`nodewall lab check`: measure the reachability matrix and the egress table once, record them
in the lab's state, and print them (rich tables: one row per (service, component, port), one
column per client; a disagreement with the policy in red)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nodewall.lab import matrix
from nodewall.lab.converge import desired
from nodewall.lab.matrix import Cell
from nodewall.lab.state import LabState
from nodewall.lab.up import connect, ns_of

STYLE = {"open": "green", "refused": "yellow", "timeout": "magenta", "-": "dim"}


def cell_text(cell: Cell | dict[str, Any]) -> str:
    """What a cell shows, in the terminal and in the report alike."""
    c = cell if isinstance(cell, dict) else cell.as_dict()
    if c["agrees"]:
        return str(c["outcome"])
    return f"{c['outcome']} (policy: {c['expected']})"


def measure(state: LabState, title: str) -> dict[str, Any]:
    """Measure both tables now; the record (appended to the state and saved)."""
    api = connect(state)
    try:
        policies = {service: desired(api, nodes) for service, nodes in state.nodes.items()}
    finally:
        api.close()
    pg_ports = {("pg", state.ports["pg"]["pg"])}
    cells = matrix.measure(policies, ns_of(state), pg_ports)
    egress = matrix.egress(policies, ns_of(state))
    record = {"title": title, "cells": [c.as_dict() for c in cells],
              "egress": [c.as_dict() for c in egress]}
    state.matrices.append(record)
    state.save()
    return record


def disagreements(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in (*record["cells"], *record["egress"]) if not c["agrees"]]


def table(title: str, cells: list[dict[str, Any]], row_label: str) -> Table:
    """Rows: the cells' columns (service component port); columns: the cells' rows (clients)."""
    clients = list(dict.fromkeys(c["row"] for c in cells))
    targets = list(dict.fromkeys(c["column"] for c in cells))
    by = {(c["row"], c["column"]): c for c in cells}
    out = Table(title=title, title_justify="left", show_lines=False, pad_edge=False)
    out.add_column(row_label, no_wrap=True)
    for client in clients:
        out.add_column(client, no_wrap=True)
    for target in targets:
        row = []
        for client in clients:
            c = by.get((client, target))
            if c is None:
                row.append("")
                continue
            style = STYLE.get(c["outcome"], "") if c["agrees"] else "bold white on red"
            row.append(f"[{style}]{escape(cell_text(c))}[/]")
        out.add_row(escape(target), *row)
    return out


def show(console: Console, record: dict[str, Any]) -> None:
    console.print(table(f"Reachability: {record['title']}", record["cells"], "to \\ from"))
    egress = record["egress"]
    flipped = [{**c, "row": c["column"], "column": c["row"]} for c in egress]
    console.print(table("Egress (new connections from each service's first node)", flipped,
                        "from \\ to"))
    bad = disagreements(record)
    if bad:
        console.print(f"[bold red]{len(bad)} cell(s) disagree with the policy:[/]")
        for c in bad:
            for line in c["details"]:
                console.print(f"  [red]{escape(c['row'])} -> {escape(c['column'])}: "
                              f"{escape(line)}[/]", highlight=False)
    else:
        total = len(record["cells"]) + len(egress)
        console.print(f"[green]all {total} cells agree with the policy[/]")
