"""`nodewall validate SPEC` without the CLI framework: the spec model and its warnings only.

`validate` is what scripts and editors call most, so `nodewall.cli.main` runs it on a fast
path that loads neither typer, click nor rich, and a spec whose fields are all well-formed is
read without pydantic (`nodewall.spec.quick`; any other goes through the models, which word
its errors). Errors and warnings go to stderr, one per line,
each with its path; customer text never appears in them.
"""

from __future__ import annotations

import sys
from pathlib import Path


def run_validate(spec_path: Path) -> int:
    """Validate a spec file; print warnings and errors to stderr. Returns the exit status."""
    from nodewall.errors import SpecError
    from nodewall.spec.quick import load_spec

    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        for line in exc.lines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    from nodewall.spec.warnings import client_warnings

    for service in spec.services:
        for warning in client_warnings(spec, service):
            print(f"warning: {warning}", file=sys.stderr)
    print(f"{spec_path}: valid ({len(spec.services)} services, {len(spec.node_names)} nodes)")
    return 0
