"""Giving memory back after a large request: a large body (tens of MB of JSON, its parsed
document, the spec model and the compiled policies) leaves the C heap fragmented once freed, so
the process would keep its peak size for ever (glibc keeps freed pages of its per-thread
arenas). `give_back` runs a garbage collection (cycles hold parsed documents too) and asks glibc
to return every free page to the kernel (`malloc_trim`). It is called when the last large
request in flight ends; on a C library without `malloc_trim` it only collects. `tune_malloc`
(at server start) keeps large blocks out of glibc's heap. Neither ever touches live objects.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable

#: mallopt parameters (glibc's malloc.h).
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _find_malloc_trim() -> Callable[[int], int] | None:
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim  # type: ignore[no-any-return]


_MALLOC_TRIM = _find_malloc_trim()


def tune_malloc() -> None:
    """At server start: blocks of 256 KiB and more always mapped on their own (returned to the
    kernel when freed, instead of glibc raising that threshold after the first large free and
    keeping later large bodies in its heap), and at most two arenas (fewer heaps to fragment
    across the worker threads)."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is not None:
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        mallopt(_M_MMAP_THRESHOLD, 256 * 1024)
        mallopt(_M_ARENA_MAX, 2)


def give_back(release: Callable[[], None] | None = None) -> None:
    """Run `release` (whatever holds buffers sized by the largest request: the store's idle
    connections), collect garbage, then return the C heap's free pages to the kernel
    (blocking, a few milliseconds to a few tens)."""
    if release is not None:
        release()
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
