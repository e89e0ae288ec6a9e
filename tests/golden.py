"""The one way to compare with a checked-in golden file, and to regenerate it.

`check_golden(path, text)` fails with a diff when `text` differs from the file. With
`NODEWALL_REGEN_GOLDEN=1` it writes the file instead and *skips* the test, so a regeneration run
never counts as a pass; review `git diff tests/unit/golden/` before committing.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

REGEN = os.environ.get("NODEWALL_REGEN_GOLDEN") == "1"


def check_golden(path: Path, text: str, what: str) -> None:
    if REGEN:
        path.write_text(text)
        pytest.skip(f"regenerated {path.name}; review `git diff {path}`")
    assert path.exists(), f"{path} missing; create it with NODEWALL_REGEN_GOLDEN=1"
    expected = path.read_text()
    if text != expected:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), text.splitlines(keepends=True),
            fromfile=f"golden/{path.name}", tofile=what, n=2))
        pytest.fail(f"{what} differs from golden/{path.name} (if intended, regenerate with "
                    f"NODEWALL_REGEN_GOLDEN=1 and review):\n{diff[:6000]}")
