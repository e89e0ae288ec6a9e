"""Errors nodewall reports to people: every problem with its path in the input and its reason."""

from __future__ import annotations


class SpecError(ValueError):
    """Invalid input. `errors` holds every problem found, as (path, reason) pairs, e.g.
    ("services[0].user_config.ip_filter[3]", "'10.0.0.300/24' is not a valid CIDR")."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{path}: {reason}" if path else reason for path, reason in self.errors]


def format_path(loc: tuple[int | str, ...]) -> str:
    """('services', 0, 'user_config', 'ip_filter', 3) -> 'services[0].user_config.ip_filter[3]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
