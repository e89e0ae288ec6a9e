"""API errors in the platform's shape: `{"errors": [{"message", "status"}], "message"}`.

Turns nodewall's `SpecError` (path, reason) pairs into messages naming the API field
(`Invalid 'user_config': Invalid input for ip_filter[3]: ...`). Messages are built from
nodewall's own words and the field paths; a customer's ip_filter description is never quoted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nodewall.errors import SpecError

#: Spec field names -> the API's names for them, per kind of object.
SERVICE_FIELDS = {"name": "service_name", "type": "service_type", "cloud": "cloud_name",
                  "vpc": "project_vpc_id"}
VPC_FIELDS = {"cloud": "cloud_name"}
INTEGRATION_FIELDS = {"type": "integration_type", "source": "source_service",
                      "dest": "dest_service"}
NODE_FIELDS = {"name": "node"}


class ApiError(Exception):
    """An error answer: HTTP status and one or more messages."""

    def __init__(self, status: int, *messages: str) -> None:
        super().__init__(messages[0] if messages else "")
        self.status = status
        self.messages = list(messages) or ["error"]

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.messages)


def error_body(status: int, messages: list[str]) -> dict[str, Any]:
    return {
        "errors": [{"message": m, "status": status} for m in messages],
        "message": messages[0] if len(messages) == 1 else "; ".join(messages),
    }


def field_message(path: str, reason: str) -> str:
    """('user_config.ip_filter[3]', why) -> "Invalid 'user_config': Invalid input for
    ip_filter[3]: why" (the platform's words); ('addresses[0]', why) -> "Invalid
    'addresses[0]': why"."""
    head, dot, rest = path.partition(".")
    if head == "user_config" and dot:
        return f"Invalid 'user_config': Invalid input for {rest}: {reason}"
    return f"Invalid '{path}': {reason}" if path else f"Invalid input: {reason}"


def spec_error(exc: SpecError, relocate: Callable[[str], str | None]) -> ApiError:
    """A 400 from a SpecError; `relocate` maps a spec path to the request's field path (None:
    keep the spec path, the problem lies outside the request, e.g. a clashing other service)."""
    messages = []
    for path, reason in exc.errors:
        local = relocate(path)
        if local is None:
            messages.append(f"Invalid input: {path}: {reason}" if path else reason)
        else:
            messages.append(field_message(local, reason))
    return ApiError(400, *messages)


def under(prefix: str, path: str, names: dict[str, str] | None = None) -> str | None:
    """The rest of `path` below `prefix` ('services[2]'), its first key renamed by `names`;
    None when the path lies outside `prefix`."""
    if path == prefix:
        return ""
    for sep in (".", "["):
        if path.startswith(prefix + sep):
            rest = path[len(prefix):].lstrip(".")
            head, dot, tail = rest.partition(".")
            bracket = head.find("[")
            name = head if bracket < 0 else head[:bracket]
            renamed = (names or {}).get(name, name) + ("" if bracket < 0 else head[bracket:])
            return renamed + (dot + tail if dot else "")
    return None
