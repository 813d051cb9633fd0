"""How a serving process asks the C allocator to keep its memory together.

glibc's malloc gives threads that allocate at once their own arenas, up to eight per core,
and each keeps the pages it once used. A worker's threads (the thread pool that writes
export files and reads sqlite) then hold memory the process no longer uses, and its
resident size creeps up long after every cache has reached its limit. Two arenas are what
the busiest thread and the rest need. ``serve`` sets this for itself (``mallopt``) and,
through ``MALLOC_ARENA_MAX``, for the workers it starts; an operator's own
``MALLOC_ARENA_MAX`` is left as it is. Elsewhere than glibc nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["ARENAS", "limit_arenas"]

ARENAS = 2
_M_ARENA_MAX = -8  # <malloc.h>


def limit_arenas(count: int = ARENAS) -> bool:
    """Hold this process, and those it starts from now on, to ``count`` malloc arenas
    unless ``MALLOC_ARENA_MAX`` already says; whether this process's allocator took it."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    os.environ["MALLOC_ARENA_MAX"] = str(count)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    return bool(mallopt(_M_ARENA_MAX, count))
