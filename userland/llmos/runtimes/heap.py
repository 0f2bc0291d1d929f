"""Give freed heap memory back to the operating system after a model load.

Loading a model allocates transient copies (ONNX Runtime builds its graph from the
weights before it switches to the caller's buffers); glibc keeps the freed pages in the
process unless asked, so the resident size would overstate what a model really holds.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except AttributeError:  # not glibc
        return None
    fn.argtypes = (ctypes.c_size_t,)
    fn.restype = ctypes.c_int
    return fn


def trim() -> None:
    """``malloc_trim(0)`` where the C library has it; a no-op elsewhere."""
    fn = _malloc_trim()
    if fn is not None:
        fn(0)
