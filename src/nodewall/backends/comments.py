"""Rule comments, the one sanitiser: a nodewall-made text (a reason) as a kernel rule comment.

Reasons are made by nodewall from its own names (`nodewall.policy.reasons`), never from customer
text; they are sanitised anyway, so that no text can break out of a comment in a ruleset or a
restore file: only a safe character set is kept (anything else becomes `_`), white space is
folded, and the result is cut to the backend's limit (nftables keeps 128 bytes of a comment;
the iptables backend keeps 200 characters, under the comment match's 256).
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9 ._:/@+=,()\[\]#-]")


def safe_comment(text: str, limit: int) -> str:
    """`text` in the safe character set, white space folded, at most `limit` characters."""
    return " ".join(_UNSAFE.sub("_", text).split())[:limit].strip()
