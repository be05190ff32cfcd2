"""Keep freed memory in the process while a network runs tile after tile.

A forward pass of the U-Net on a 96×184×184 tile allocates about 0.7 GB of activations in
blocks of 10–200 MB and frees them at the end. glibc's ``malloc`` serves every block above
32 MB with a fresh ``mmap`` and returns it with ``munmap`` when freed, so each pass asks the
kernel for new pages, which it must fault in and zero: 220 000 page faults and a third of
the time of a pass on two CPU cores. Tiles whose blocks stay below 32 MB (64³) reuse the
heap and do not pay this — which is why big tiles looked 30 % slower per voxel.

:func:`reuse_freed_memory` tells ``malloc`` to serve large blocks from its heap and not to
give freed memory back, for the duration of the tile loop only; on exit it restores the
defaults and hands the freed memory back with ``malloc_trim``. Elsewhere than glibc (macOS,
Windows, musl) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
from collections.abc import Iterator

# mallopt parameters and glibc's defaults (malloc.h, mallopt(3))
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
_NEVER_TRIM = 2**31 - 1  # the largest value mallopt's int takes


@functools.cache
def _glibc():
    """glibc's handle if this process runs on glibc, else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        return libc
    except (OSError, AttributeError, TypeError):
        return None


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[bool]:
    """Within the block, large freed blocks stay in the process to be reused.

    Yields True where this takes effect (glibc), False where it does nothing. The peak
    resident memory grows a little (0.1 GiB on a full-size tomogram): a freed block does not
    always fit the next one of the same size once alignment is added, and the heap then
    grows by one block instead of reusing it.
    """
    libc = _glibc()
    if libc is None:
        yield False
        return
    applied = libc.mallopt(_M_MMAP_MAX, 0) == 1
    applied = applied and libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM) == 1
    try:
        yield applied
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)  # the freed activations go back to the system now
