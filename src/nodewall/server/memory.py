"""Giving memory back after a large request: a large body (tens of MB of JSON, its parsed
document, the spec model and the compiled policies) leaves the C heap fragmented once freed, so
the process would keep its peak size for ever (glibc keeps freed pages of its per-thread
arenas). `give_back` runs a garbage collection (cycles hold parsed documents too) and asks glibc
to return every free page to the kernel (`malloc_trim`). It is called when the last large
request in flight ends; on a C library without `malloc_trim` it only collects. It never touches
live objects.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _find_malloc_trim()


def give_back() -> None:
    """Collect garbage, then return the C heap's free pages to the kernel (blocking, a few
    milliseconds to a few tens)."""
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
