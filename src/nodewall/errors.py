"""Errors nodewall reports to people: every problem with its path in the input and its reason."""

from __future__ import annotations

import re


class SpecError(ValueError):
    """Invalid input. `errors` holds every problem found, as (path, reason) pairs, e.g.
    ("services[0].user_config.ip_filter[3]", "'10.0.0.300/24' is not a valid CIDR")."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{path}: {reason}" if path else reason for path, reason in self.errors]


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


def format_path(loc: tuple[int | str, ...]) -> str:
    """('services', 0, 'user_config', 'ip_filter', 3) -> 'services[0].user_config.ip_filter[3]'.

    A mapping key that is not a plain identifier (it came from the input and may hold any
    text) is quoted and escaped: `public_access['a\\nb']`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":  # pydantic's marker: the error is about the key itself
            out += " (key)"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part[:64]!r}]"
    return out
