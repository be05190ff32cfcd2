"""Memory-mapped arrays for volumes larger than memory.

A memory-mapped tomogram counts towards the resident memory of the process for every page
that has been touched, until the mapping is closed. Streaming code calls
:func:`release_pages` after each slab so that resident memory stays bounded by the slab, not
by the file: the operating system keeps the data in its page cache (and writes dirty pages
back), the process just stops holding them.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def release_pages(array) -> None:
    """Let the OS drop resident pages of a memory-mapped array (no-op for other arrays).

    Data are not lost: for a file mapping, clean pages are re-read and dirty ones are written
    back by the kernel. Works on Linux and macOS; elsewhere it does nothing.
    """
    handle = getattr(array, "_mmap", None)
    if not isinstance(array, np.memmap) or handle is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    with contextlib.suppress(OSError, ValueError):
        handle.madvise(mmap.MADV_DONTNEED)


def slabs(array, planes: int = 16) -> Iterator[np.ndarray]:
    """Yield ``array[k : k + planes]`` along z, releasing memory-mapped pages after each."""
    for k in range(0, array.shape[0], planes):
        yield array[k : k + planes]
        release_pages(array)


@contextlib.contextmanager
def scratch_array(
    shape: tuple[int, ...], *, memory_limit_bytes: int, folder: str | os.PathLike | None = None
) -> Iterator[np.ndarray]:
    """A float32 work array: in memory when small, else a temporary memory-mapped file.

    Parameters
    ----------
    shape : tuple of int
    memory_limit_bytes : int
        Arrays larger than this are put in a temporary file in ``folder`` (the system's
        temporary folder by default), deleted when the block ends.
    """
    nbytes = int(np.prod(shape)) * 4
    if nbytes <= memory_limit_bytes:
        yield np.empty(shape, np.float32)
        return
    with tempfile.TemporaryDirectory(
        prefix="sv-analysis-", dir=folder, ignore_cleanup_errors=True
    ) as tmp:
        # Unlinking a mapped file is safe on POSIX: the data live until the last view is gone.
        yield np.memmap(Path(tmp) / "scratch.f32", np.float32, "w+", shape=shape)
