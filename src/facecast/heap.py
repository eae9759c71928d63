"""The C heap: give memory that was freed back to the system.

Why: glibc keeps freed pages of its heaps for reuse, so a burst of large
temporary allocations (a portrait analysis, a window of Whisper's encoder)
leaves the process's RSS at its high-water mark for good; `malloc_trim`
returns them.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # glibc; ctypes releases the GIL during the call
    except (OSError, AttributeError):  # another C library (musl): nothing to trim
        return None


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Give the C heap's freed pages back to the system (glibc's malloc_trim; a no-op elsewhere)."""
    if _TRIM is not None:
        _TRIM(0)
