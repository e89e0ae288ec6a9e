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


def format_path(loc: tuple[object, ...]) -> str:
    """('services', 0, 'user_config', 'ip_filter', 3) -> 'services[0].user_config.ip_filter[3]'.

    A mapping key that is not a plain name came from the input and may hold any text (an
    ip_filter description written as a key, say): it is never shown, only its length
    (`ip_filter[3][<key of 37 characters>]`). Keys that are numbers, booleans or null are
    shown as such."""
    out = ""
    for part in loc:
        if isinstance(part, bool) or part is None or isinstance(part, float):
            out += f"[{part!r}]"
        elif isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":  # pydantic's marker: the error is about the key itself
            out += " (key)"
        elif isinstance(part, str) and _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        elif isinstance(part, str):
            out += f"[<key of {len(part)} characters>]"
        else:
            out += f"[<{type(part).__name__} key>]"
    return out
